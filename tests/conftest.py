"""Fixtures shared by the tests: the real local servers, the sample data, unique names.

Tests that need a server (Kafka, Redis, Prometheus, the RTSP server) skip with a message when it
is not reachable, unless ``FACESTREAM_REQUIRE_SERVERS=1`` (set by the README's test command and CI),
where a missing server is a failure: CI must never pass by skipping.
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.bus.base import Bus
from shared.bus.memory import MemoryBus
from shared.settings import KafkaSettings, RedisSettings

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "deploy" / "local" / "infra.sh"


def _env(name: str, default: str) -> str:
    return os.environ.get(name, default)


KAFKA_BOOTSTRAP = _env("FACESTREAM_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:39092")
REDIS_URL = _env("FACESTREAM_REDIS__URL", "redis://127.0.0.1:36379/0")
REDIS_PASSWORD = _env("FACESTREAM_REDIS__PASSWORD", "facestream-local")
PROMETHEUS_URL = _env("FACESTREAM_PROMETHEUS_URL", "http://127.0.0.1:39090")
RTSP_URL = _env("FACESTREAM_RTSP_URL", "rtsp://127.0.0.1:38554")
SHARED_DATA = Path(_env("FACESTREAM_SHARED_DATA", str(ROOT.parent / "shared" / "data")))


def reachable(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def require_server(name: str, address: str) -> None:
    if reachable(address):
        return
    message = f"{name} is not reachable at {address}; start it with deploy/local/infra.sh start"
    if os.environ.get("FACESTREAM_REQUIRE_SERVERS") == "1":
        pytest.fail(message)
    pytest.skip(message)


def infra(action: str, *names: str) -> None:
    """Start, stop or restart local servers through the project's own script."""
    subprocess.run(["bash", str(INFRA), action, *names], check=True, capture_output=True)


@pytest.fixture
def unique() -> str:
    """A short unique suffix for topics, groups, cameras and key prefixes of one test."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def kafka_settings() -> KafkaSettings:
    require_server("Kafka", KAFKA_BOOTSTRAP)
    return KafkaSettings(bootstrap_servers=KAFKA_BOOTSTRAP, partitions=3, request_timeout_ms=15_000)


@pytest.fixture
def redis_settings(unique: str) -> Iterator[RedisSettings]:
    require_server("Redis", REDIS_URL.split("//")[1].split("/")[0])
    settings = RedisSettings(url=REDIS_URL, password=REDIS_PASSWORD, key_prefix=f"test-{unique}")
    yield settings
    from shared.redis_client import create_redis

    client = create_redis(settings)
    for key in client.scan_iter(f"{settings.key_prefix}:*"):
        client.delete(key)


@pytest.fixture(params=["memory", "kafka"])
def bus(request: pytest.FixtureRequest) -> Iterator[Bus]:
    """Each bus implementation in turn: the contract tests must pass against both."""
    if request.param == "memory":
        yield MemoryBus()
        return
    from shared.bus.kafka import KafkaBus

    yield KafkaBus(request.getfixturevalue("kafka_settings"))


@pytest.fixture
def stack(kafka_settings, redis_settings, tmp_path: Path):
    """Service processes on the real servers (tests/stack.py), stopped after the test."""
    from shared.bus.kafka import KafkaBus
    from shared.schemas import Topics
    from tests.stack import Stack

    require_server("the RTSP test server", RTSP_URL.split("//")[1])
    KafkaBus(kafka_settings).ensure_topics(Topics.ALL)
    stack = Stack(kafka_settings, redis_settings, tmp_path)
    yield stack
    stack.close()


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"no shared data at {SHARED_DATA} (set FACESTREAM_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture
def hamilton(shared_data: Path) -> Path:
    return shared_data / "video" / "hamilton_clip_640x360.mp4"


@pytest.fixture(scope="session")
def face_pipeline():
    """The real detector and encoder, loaded once for the whole session (TensorFlow is slow to load)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from shared.face.factory import build_pipeline
    from shared.settings import Settings

    return build_pipeline(Settings())


@pytest.fixture(scope="session")
def calibration():
    """The l2 calibration of the configured encoder (face.encoder), as the services load it."""
    from shared.face.factory import load_calibration
    from shared.settings import Settings

    return load_calibration(Settings().face.encoder)


@pytest.fixture(scope="session")
def dlib_pipeline():
    """The configured detector with dlib's ResNet: what jittered photo verification uses."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from shared.face.factory import build_pipeline
    from shared.settings import Settings

    settings = Settings()
    settings.face.encoder = "dlib-resnet"
    return build_pipeline(settings)


@pytest.fixture(scope="session")
def people_data() -> Path:
    folder = SHARED_DATA / "faces" / "people"
    if not folder.is_dir():
        pytest.skip(f"no enrollment and probe photos at {folder} (set FACESTREAM_SHARED_DATA)")
    return folder


def expected_probes(people_data: Path) -> dict[str, set[str]]:
    """probe/EXPECTED.tsv: photo -> the enrolled people visible in it."""
    expected = {}
    for line in (people_data / "probe" / "EXPECTED.tsv").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            photo, names = line.split("\t")
            expected[photo] = set(names.split(","))
    return expected


def first_photo(folder: Path) -> Path:
    return sorted(p for p in folder.iterdir() if p.is_file())[0]
