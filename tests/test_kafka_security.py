"""The bus of a deployment: SASL_SSL with SCRAM and per-service ACLs (issue 13: in the k8s
manifests Kafka was plaintext without authentication, so anyone in the cluster could forge events
and liveness verdicts).

A broker is started from deploy/kafka/broker.sh (the docker-compose Kafka) on loopback with the
local Kafka jars and certificates from deploy/kafka/make-certs.sh; the ACLs of
deploy/kafka/acls.tsv are applied; then each attack is tried with facestream's own KafkaBus.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from kafka.admin import (
    ACL,
    ACLFilter,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourcePatternFilter,
    ResourceType,
)

from shared.bus.base import BusError
from shared.bus.kafka import KafkaBus, connection_options
from shared.schemas import Topics
from shared.settings import KafkaSettings
from tests.helpers import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]
KAFKA_DIR = ROOT / "deploy" / "kafka"
ADMIN_PASSWORD = "admin-Qw8-test-password"
SERVICES = ("ingestor", "detector", "liveness", "recognizer", "stylizer")


def password(service: str) -> str:
    return f"{service}-pw-7Hc2-test"


def read_acls() -> list[tuple[str, str, str, str]]:
    lines = (KAFKA_DIR / "acls.tsv").read_text().splitlines()
    return [tuple(line.split("\t")) for line in lines if line and not line.startswith("#")]


class SecuredKafka:
    def __init__(self, folder: Path) -> None:
        kafka_home = Path(
            os.environ.get("KAFKA_HOME", Path.home() / ".cache/facestream/kafka-3.9.1")
        )
        if not (kafka_home / "libs").is_dir():
            pytest.fail(f"no Kafka jars in {kafka_home} (deploy/local/install.sh servers)")
        self.certs = folder / "certs"
        subprocess.run(
            ["bash", str(KAFKA_DIR / "make-certs.sh"), str(self.certs), "127.0.0.1", "localhost"],
            check=True,
            capture_output=True,
        )
        self.port = free_port()
        log4j = ROOT / "deploy" / "local" / "kafka" / "log4j.properties"
        self.env = {
            **os.environ,
            "KAFKA_HOME": str(kafka_home),
            "KAFKA_DATA": str(folder / "data"),
            "KAFKA_CERTS": str(self.certs),
            "KAFKA_PORT": str(self.port),
            "KAFKA_CONTROLLER_PORT": str(free_port()),
            "KAFKA_ADVERTISED_HOST": "127.0.0.1",
            "KAFKA_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "KAFKA_HEAP_OPTS": "-Xmx384m -Xms384m",
            "KAFKA_LOG4J_OPTS": f"-Dlog4j.configuration=file:{log4j} -Dkafka.logs.dir={folder}",
            **{f"FACESTREAM_KAFKA_{s.upper()}_PASSWORD": password(s) for s in SERVICES},
        }
        self.log = folder / "broker.out"
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                ["bash", str(KAFKA_DIR / "broker.sh")], env=self.env, stdout=out, stderr=out
            )

    def settings(self, user: str | None, secret: str | None, **extra) -> KafkaSettings:
        options = {
            "bootstrap_servers": f"127.0.0.1:{self.port}",
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": user,
            "sasl_password": secret,
            "ssl_cafile": self.certs / "ca.pem",
            "request_timeout_ms": 15000,
            **extra,
        }
        return KafkaSettings(**options)

    def service(self, name: str) -> KafkaSettings:
        return self.settings(f"facestream-{name}", password(name))

    def admin(self) -> KafkaSettings:
        return self.settings("admin", ADMIN_PASSWORD)

    def wait_ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            try:
                KafkaBus(self.admin()).ensure_topics(Topics.ALL)
                return
            except BusError:
                time.sleep(1)
        pytest.fail(f"the SASL_SSL broker did not come up:\n{self.log.read_text()[-3000:]}")

    def apply_acls(self) -> None:
        """What deploy/kafka/setup.sh does with kafka-acls.sh, through the admin API (faster)."""
        kinds = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP}
        acls = [
            ACL(
                principal=f"User:{principal}",
                host="*",
                operation=ACLOperation[operation.upper()],
                permission_type=ACLPermissionType.ALLOW,
                resource_pattern=ResourcePattern(kinds[kind], name, ACLResourcePatternType.LITERAL),
            )
            for principal, operation, kind, name in read_acls()
        ]
        admin = KafkaAdminClient(**connection_options(self.admin()))
        try:
            result = admin.create_acls(acls)
            assert not result["failed"], result["failed"]
        finally:
            admin.close()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


@pytest.fixture(scope="module")
def secured(tmp_path_factory) -> Iterator[SecuredKafka]:
    broker = SecuredKafka(tmp_path_factory.mktemp("secured-kafka"))
    try:
        broker.wait_ready()
        broker.apply_acls()
        # KRaft brokers apply ACL changes from the metadata log asynchronously: wait for the last.
        last = read_acls()[-1]
        wait_for(lambda: _can_read(broker, last), 60, "the ACLs to reach the broker")
        yield broker
    finally:
        broker.stop()


def _can_read(broker: SecuredKafka, acl: tuple[str, str, str, str]) -> bool:
    admin = KafkaAdminClient(**connection_options(broker.admin()))
    try:
        found, _error = admin.describe_acls(
            ACLFilter(
                principal=f"User:{acl[0]}",
                host="*",
                operation=ACLOperation.ANY,
                permission_type=ACLPermissionType.ANY,
                resource_pattern=ResourcePatternFilter(
                    ResourceType.ANY, None, ACLResourcePatternType.ANY
                ),
            )
        )
        return len(found) == sum(1 for a in read_acls() if a[0] == acl[0])
    finally:
        admin.close()


def publish(settings: KafkaSettings, topic: str, value: bytes = b"x") -> None:
    publisher = KafkaBus(settings).publisher()
    try:
        publisher.publish(topic, value, "cam", {})
        publisher.flush(10)
    finally:
        publisher.close()


def test_plaintext_and_unauthenticated_clients_are_refused(secured: SecuredKafka) -> None:
    for settings in (
        secured.settings(None, None, security_protocol="PLAINTEXT", sasl_mechanism=None),
        secured.settings(None, None, security_protocol="SSL", sasl_mechanism=None),
        secured.settings("facestream-detector", "a-wrong-password-123"),
        secured.settings("nobody", "whatever-password-123"),
    ):
        with pytest.raises(BusError):
            publish(settings, Topics.FACES, b"forged")


def test_each_service_can_do_its_job(secured: SecuredKafka) -> None:
    publish(secured.service("ingestor"), Topics.FRAMES)
    publish(secured.service("detector"), Topics.FACES, b"faces")
    publish(secured.service("detector"), Topics.DEAD_LETTERS)
    publish(secured.service("liveness"), Topics.LIVENESS)
    publish(secured.service("recognizer"), Topics.EVENTS)
    publish(secured.service("stylizer"), Topics.STYLED_FRAMES)
    subscriber = KafkaBus(secured.service("recognizer")).subscriber(
        [Topics.FACES], "facestream-recognizer"
    )
    try:
        received = []
        deadline = time.monotonic() + 60
        while not received and time.monotonic() < deadline:
            received = subscriber.poll(1.0, 10)
        assert [m.value for m in received] == [b"faces"]
    finally:
        subscriber.close()


@pytest.mark.parametrize(
    ("service", "topic"),
    [
        ("detector", Topics.EVENTS),  # forged recognition events
        ("liveness", Topics.EVENTS),
        ("detector", Topics.LIVENESS),  # forged liveness verdicts
        ("ingestor", Topics.FACES),
        ("stylizer", Topics.FRAMES),
        ("recognizer", Topics.FRAMES),
    ],
)
def test_a_service_cannot_forge_another_services_messages(
    secured: SecuredKafka, service: str, topic: str
) -> None:
    with pytest.raises(BusError, match="TopicAuthorization|not acknowledged|failed"):
        publish(secured.service(service), topic, b"forged")


def test_a_service_cannot_read_outside_its_topics_and_group(secured: SecuredKafka) -> None:
    """It gets an authorization error or nothing, never the messages (which are there)."""
    publish(secured.service("recognizer"), Topics.EVENTS, b"event")
    publish(secured.service("detector"), Topics.FACES, b"face")
    for service, topic, group in [
        ("detector", Topics.EVENTS, "facestream-detector"),  # not its topic
        ("recognizer", Topics.FACES, "facestream-detector"),  # not its group
    ]:
        subscriber = KafkaBus(secured.service(service)).subscriber([topic], group)
        received = []
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                received += subscriber.poll(1.0, 10)
        except BusError as error:
            print(f"{service} reading {topic} as {group}: {error}")
        finally:
            subscriber.close()
        assert received == [], (service, topic, group)
