"""Checks on the deployment files: docker-compose.yml, Prometheus, Grafana and Kubernetes manifests.

None of these need a running Docker engine, Prometheus or cluster. Tools that validate further
(docker-compose, promtool, kubectl) are used when they are on PATH and skipped with a message
otherwise.

Over 400 lines for a reason: one check per deployment file, all reading the same parsed
compose and Kubernetes manifests; split, each module would parse them again.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from shared.metrics import METRIC_NAMES

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DEPLOY = ROOT / "deploy"
PROMETHEUS_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "facestream.json"
K8S = DEPLOY / "k8s"

METRIC_RE = re.compile(r"facestream_[a-z_]+")

# Series the dashboard must show, each in at least one panel.
REQUIRED_SERIES = (
    "facestream_frames_in_total",
    "facestream_frames_out_total",
    "facestream_processing_seconds_bucket",
    "facestream_errors_total",
    "facestream_dead_letters_total",
    "facestream_consumer_lag",
    "facestream_camera_frames_captured_total",
    "facestream_camera_frames_published_total",
    "facestream_camera_frames_dropped_total",
    "facestream_camera_reconnects_total",
    "facestream_camera_fps",
    "facestream_camera_up",
    "facestream_stylizer_frames_total",
    "facestream_stylizer_latency_seconds_bucket",
    "facestream_liveness_windows_total",
    "facestream_liveness_model_seconds_bucket",
)
FACESTREAM_SERVICES = ("ingestor", "detector", "liveness", "recognizer", "stylizer")
SERVICE_ENV = {
    "FACESTREAM_BUS": "kafka",
    "FACESTREAM_STORE": "redis",
    "FACESTREAM_KAFKA__BOOTSTRAP_SERVERS": "kafka:9092",
    "FACESTREAM_REDIS__URL": "redis://redis:6379/0",
    "FACESTREAM_METRICS_PORT": "9100",
}


KAFKA = DEPLOY / "kafka"
COMPOSE_SECRETS = {
    "FACESTREAM_REDIS_PASSWORD": "r3dis-Pw-for-the-config-check",
    "GRAFANA_ADMIN_PASSWORD": "gr4fana-Pw-for-the-config-check",
    "FACESTREAM_API_TOKEN": "Zq3x-8Jk_fa0PnLw2Ry7TbVc-4hM",
    "KAFKA_ADMIN_PASSWORD": "k4fka-admin-for-the-config-check",
    **{
        f"FACESTREAM_KAFKA_{name.upper()}_PASSWORD": f"{name}-pw-for-the-config-check"
        for name in ("ingestor", "detector", "liveness", "recognizer", "stylizer")
    },
}
"""Every variable docker-compose.yml requires (``${VAR:?message}``): it has no default password."""


def run_tool(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    import os

    environment = {k: v for k, v in os.environ.items() if k not in COMPOSE_SECRETS}
    return subprocess.run(
        args,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**environment, **(env or {})},
    )


def read_acls() -> set[tuple[str, str, str, str]]:
    lines = (KAFKA / "acls.tsv").read_text().splitlines()
    return {tuple(line.split("\t")) for line in lines if line and not line.startswith("#")}


# --- docker-compose --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def test_compose_config_is_valid() -> None:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not on PATH (Debian package `docker-compose`)")
    result = run_tool(
        "docker-compose", "-f", str(COMPOSE_FILE), "config", "-q", env=COMPOSE_SECRETS
    )
    assert result.returncode == 0, f"docker-compose config failed:\n{result.stderr}"


@pytest.mark.parametrize("missing", sorted(COMPOSE_SECRETS))
def test_compose_refuses_to_start_without_each_password(missing: str) -> None:
    """No default passwords: without one of them, compose stops and names it."""
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not on PATH (Debian package `docker-compose`)")
    env = {k: v for k, v in COMPOSE_SECRETS.items() if k != missing}
    result = run_tool("docker-compose", "-f", str(COMPOSE_FILE), "config", "-q", env=env)
    assert result.returncode != 0 and missing in result.stderr, result.stderr


def test_compose_has_no_default_secrets() -> None:
    text = COMPOSE_FILE.read_text()
    secrets = re.findall(r"\$\{([A-Z_]*(?:PASSWORD|TOKEN)[A-Z_]*)(:?[-?])?", text)
    assert secrets
    optional = {"FACESTREAM_KAFKA_SUBSCRIBER_PASSWORD"}  # no user is created without it
    for name, operator in secrets:
        if name not in optional:
            assert operator == ":?", f"${{{name}}} must be required (${{{name}:?message}})"
    assert set(COMPOSE_SECRETS) <= {name for name, _ in secrets}


def test_compose_has_the_stack(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("kafka", "redis", "prometheus", "grafana", "topics", *FACESTREAM_SERVICES):
        assert name in services, f"docker-compose.yml lacks service {name!r}"


@pytest.mark.parametrize("name", [*FACESTREAM_SERVICES, "topics"])
def test_compose_services_build_from_deploy_dockerfile(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    build = service.get("build")
    assert isinstance(build, dict), f"{name}: build must be a mapping with context and dockerfile"
    assert (ROOT / build.get("context", ".")).resolve() == ROOT, f"{name}: build context is not ."
    assert build.get("dockerfile") == "deploy/Dockerfile", f"{name}: build.dockerfile is {build}"
    assert (ROOT / build["dockerfile"]).is_file()


@pytest.mark.parametrize("name", FACESTREAM_SERVICES)
def test_compose_services_environment(compose: dict[str, Any], name: str) -> None:
    env = compose["services"][name].get("environment") or {}
    for key, value in SERVICE_ENV.items():
        assert str(env.get(key)) == value, f"{name}: {key}={env.get(key)!r}, expected {value!r}"
    assert "FACESTREAM_REDIS__PASSWORD" in env, f"{name}: no Redis password"
    assert env["FACESTREAM_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["FACESTREAM_KAFKA__SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert env["FACESTREAM_KAFKA__SASL_USERNAME"] == f"facestream-{name}", "its own Kafka user"
    assert f"FACESTREAM_KAFKA_{name.upper()}_PASSWORD:?" in env["FACESTREAM_KAFKA__SASL_PASSWORD"]
    probe = " ".join(compose["services"][name]["healthcheck"]["test"])
    assert "/readyz" in probe, f"{name}: the healthcheck asks whether it is ready"


def test_compose_kafka_speaks_only_sasl_ssl(compose: dict[str, Any]) -> None:
    kafka = compose["services"]["kafka"]
    assert kafka["entrypoint"][-1] == "/opt/facestream-kafka/broker.sh"
    broker = (KAFKA / "broker.sh").read_text()
    listeners = re.search(r"^listeners=(.*)$", broker, re.MULTILINE).group(1).split(",")
    assert listeners[0].startswith("SASL_SSL://")
    assert all(x.startswith(("SASL_SSL://", "CONTROLLER://127.0.0.1:")) for x in listeners)
    assert "allow.everyone.if.no.acl.found=false" in broker
    assert "StandardAuthorizer" in broker
    assert compose["services"]["kafka-setup"]["entrypoint"][-1].endswith("setup.sh")


def test_compose_bind_mounts_exist(compose: dict[str, Any]) -> None:
    mounts = [
        volume.split(":")[0]
        for service in compose["services"].values()
        for volume in service.get("volumes", [])
        if isinstance(volume, str) and volume.startswith(".")
    ]
    assert mounts, "expected the Prometheus and Grafana config to be bind-mounted"
    for source in mounts:
        if source.startswith("./deploy/compose/certs"):
            # Generated per installation (deploy/kafka/make-certs.sh), never committed.
            assert (KAFKA / "make-certs.sh").is_file()
            continue
        assert (ROOT / source).exists(), f"bind-mount source {source} does not exist"


# --- Prometheus ------------------------------------------------------------------------------


def test_prometheus_scrapes_every_replica_of_each_service() -> None:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    assert config["global"]["scrape_interval"] == "5s"
    discovered = {
        (name, sd.get("type"), sd.get("port"))
        for job in config["scrape_configs"]
        for sd in job.get("dns_sd_configs", [])
        for name in sd["names"]
    }
    for service in FACESTREAM_SERVICES:
        assert (service, "A", 9100) in discovered, f"no DNS (type A) discovery of {service}:9100"


def test_prometheus_config_passes_promtool() -> None:
    if shutil.which("promtool") is None:
        pytest.skip("promtool is not on PATH (Debian package `prometheus`)")
    result = run_tool("promtool", "check", "config", str(PROMETHEUS_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr


# --- Grafana ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def iter_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside collapsed rows."""
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def panel_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expr) for every query target of every panel."""
    return [
        (panel.get("title", "?"), target["expr"])
        for panel in iter_panels(dashboard["panels"])
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def test_dashboard_identity(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "facestream-overview"
    assert dashboard["schemaVersion"] == 39
    ids = [panel["id"] for panel in iter_panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_dashboard_panels_have_queries(dashboard: dict[str, Any]) -> None:
    for panel in iter_panels(dashboard["panels"]):
        if panel["type"] == "row":
            continue
        exprs = [target.get("expr") for target in panel.get("targets", [])]
        assert exprs and all(exprs), f"panel {panel.get('title')!r} has a target without expr"


def test_dashboard_queries_only_exported_metrics(dashboard: dict[str, Any]) -> None:
    exprs = panel_exprs(dashboard)
    exprs += [
        (
            "variable " + var["name"],
            str(var.get("definition", "")) + " " + json.dumps(var.get("query")),
        )
        for var in dashboard.get("templating", {}).get("list", [])
    ]
    assert exprs, "dashboard has no queries"
    unknown = {
        (title, name)
        for title, expr in exprs
        for name in METRIC_RE.findall(expr)
        if name not in METRIC_NAMES
    }
    assert not unknown, f"dashboard queries series the services do not export: {sorted(unknown)}"


@pytest.mark.parametrize("series", REQUIRED_SERIES)
def test_dashboard_shows_metric(dashboard: dict[str, Any], series: str) -> None:
    assert series in METRIC_NAMES, f"{series} is not in shared.metrics.METRIC_NAMES"
    panels = {title for title, expr in panel_exprs(dashboard) if series in METRIC_RE.findall(expr)}
    assert panels, f"no dashboard panel queries {series}"


def test_grafana_provisioning_matches_compose_mounts(compose: dict[str, Any]) -> None:
    provider = yaml.safe_load(
        (GRAFANA / "provisioning" / "dashboards" / "facestream.yml").read_text()
    )
    datasources = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    mounts = dict(volume.split(":")[:2] for volume in compose["services"]["grafana"]["volumes"])
    assert mounts.get("./deploy/grafana/dashboards") == provider["providers"][0]["options"]["path"]
    assert mounts.get("./deploy/grafana/provisioning") == "/etc/grafana/provisioning"
    assert [ds["type"] for ds in datasources["datasources"]] == ["prometheus"]
    assert datasources["datasources"][0]["url"] == "http://prometheus:9090"


# --- Kubernetes ------------------------------------------------------------------------------


def k8s_files() -> list[Path]:
    return sorted(K8S.glob("*.yaml")) + sorted(K8S.glob("*.yml"))


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    return [
        (path.name, document)
        for path in k8s_files()
        for document in yaml.safe_load_all(path.read_text())
        if document is not None
    ]


def test_k8s_documents_are_objects() -> None:
    documents = k8s_documents()
    assert len(documents) >= 7, (
        f"expected the k8s manifests in {K8S}, found {len(documents)} documents"
    )
    for filename, document in documents:
        assert isinstance(document, dict), f"{filename}: a document is not a mapping"
        for key in ("apiVersion", "kind"):
            assert document.get(key), f"{filename}: a document lacks {key}"
        assert (document.get("metadata") or {}).get("name"), (
            f"{filename}: {document['kind']} lacks metadata.name"
        )


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    resources = set(kustomization.get("resources", []))
    files = {path.name for path in k8s_files()} - {"kustomization.yaml"}
    assert resources == files, (
        f"missing: {sorted(files - resources)}, extra: {sorted(resources - files)}"
    )


def test_k8s_scaling_is_consistent() -> None:
    """No HPA may add consumers that the partition count would leave idle."""
    by_kind = {(doc["kind"], doc["metadata"]["name"]): doc for _, doc in k8s_documents()}
    job = by_kind[("Job", "facestream-topics")]
    env = {
        e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    partitions = int(env["FACESTREAM_KAFKA__PARTITIONS"])
    assert partitions == 12
    hpas = {name: doc for (kind, name), doc in by_kind.items() if kind == "HorizontalPodAutoscaler"}
    assert "facestream-detector" in hpas
    for name, hpa in hpas.items():
        assert hpa["spec"]["maxReplicas"] <= partitions, f"{name}: maxReplicas > {partitions}"
    assert by_kind[("Deployment", "facestream-ingestor")]["spec"]["replicas"] == 1


@pytest.mark.parametrize("name", FACESTREAM_SERVICES)
def test_k8s_services_are_probed_and_scraped(name: str) -> None:
    by_kind = {(doc["kind"], doc["metadata"]["name"]): doc for _, doc in k8s_documents()}
    pod = by_kind[("Deployment", f"facestream-{name}")]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    # Liveness restarts the pod: only the process itself; a Kafka or Redis outage is readiness.
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        http = container[probe]["httpGet"]
        assert http["path"] == path, f"{name}: {probe} path"
        assert ports.get(http["port"], http["port"]) == 9100, f"{name}: {probe} port"
    assert container["resources"]["requests"] and container["resources"]["limits"]
    annotations = by_kind[("Service", f"facestream-{name}")]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == "9100"


def k8s_with_secrets(folder: Path) -> Path:
    """A copy of deploy/k8s with the secret files an operator provides."""
    shutil.copytree(K8S, folder / "k8s")
    (folder / "k8s" / "secrets.env").write_text("FACESTREAM_REDIS__PASSWORD=r3dis-Pw-test\n")
    (folder / "k8s" / "kafka-ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    return folder / "k8s"


def test_kustomize_builds(tmp_path: Path) -> None:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not on PATH; `kubectl kustomize deploy/k8s` not checked")
    result = run_tool("kubectl", "kustomize", str(k8s_with_secrets(tmp_path)))
    assert result.returncode == 0, result.stderr
    built = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert len(built) == len(k8s_documents()) - 1 + 2  # - the kustomization + 2 generated
    secrets = {doc["metadata"]["name"] for doc in built if doc["kind"] == "Secret"}
    assert secrets == {"facestream-secrets", "facestream-kafka-ca"}
    assert "example" not in result.stdout.lower().replace("registry.example.com", "")


def test_kustomize_refuses_to_build_without_the_operators_secrets() -> None:
    """The example is never applied as is: without secrets.env the build fails."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not on PATH")
    if (K8S / "secrets.env").exists():
        pytest.skip("this checkout has a deploy/k8s/secrets.env")
    result = run_tool("kubectl", "kustomize", str(K8S))
    assert result.returncode != 0 and "secrets.env" in result.stderr


def k8s_by_kind() -> dict[tuple[str, str], dict[str, Any]]:
    return {(doc["kind"], doc["metadata"]["name"]): doc for _, doc in k8s_documents()}


def test_k8s_kafka_is_sasl_ssl_with_a_user_per_service() -> None:
    by_kind = k8s_by_kind()
    config = by_kind[("ConfigMap", "facestream-config")]["data"]
    assert config["FACESTREAM_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"
    assert config["FACESTREAM_KAFKA__SASL_MECHANISM"] == "SCRAM-SHA-512"
    workloads = [
        (f"facestream-{n}", ("Deployment", f"facestream-{n}")) for n in FACESTREAM_SERVICES
    ]
    workloads.append(("facestream-admin", ("Job", "facestream-topics")))
    for user, key in workloads:
        container = by_kind[key]["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e for e in container["env"]}
        assert env["FACESTREAM_KAFKA__SASL_USERNAME"]["value"] == user
        secret = env["FACESTREAM_KAFKA__SASL_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert secret == {"name": user, "key": "password"}, key
        assert ("KafkaUser", user) in by_kind, f"no KafkaUser {user}"
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
        assert str(Path(config["FACESTREAM_KAFKA__SSL_CAFILE"]).parent) in mounts


def test_k8s_kafka_users_have_exactly_the_acls_of_the_table() -> None:
    granted = set()
    for (kind, name), doc in k8s_by_kind().items():
        if kind != "KafkaUser" or name == "facestream-admin":
            continue
        assert doc["spec"]["authentication"]["type"] == "scram-sha-512"
        for acl in doc["spec"]["authorization"]["acls"]:
            resource = acl["resource"]
            assert resource["patternType"] == "literal"
            for operation in acl["operations"]:
                granted.add((name, operation, resource["type"], resource["name"]))
    assert granted == read_acls()


def test_the_acls_let_each_service_consume_its_topics_in_its_group() -> None:
    """Read on every topic a worker subscribes to, and on its group (``facestream-NAME``)."""
    consumed = {
        "detector": ("facestream.frames",),
        "liveness": ("facestream.faces",),
        "recognizer": ("facestream.faces", "facestream.liveness"),
        "stylizer": ("facestream.frames",),
    }
    sources = {
        "detector": "services/detector/worker.py",
        "liveness": "services/liveness/worker.py",
        "recognizer": "services/recognizer/worker.py",
        "stylizer": "services/stylizer/worker.py",
    }
    from shared.schemas import Topics

    acls = read_acls()
    for service, topics in consumed.items():
        source = (ROOT / sources[service]).read_text()
        declared = re.search(r"topics = \(([^)]*)\)", source).group(1)
        names = {getattr(Topics, t.split(".")[1]) for t in re.findall(r"Topics\.[A-Z_]+", declared)}
        assert names == set(topics), f"{service} consumes {names}; update acls.tsv"
        user = f"facestream-{service}"
        assert (user, "Read", "group", user) in acls
        for topic in topics:
            assert (user, "Read", "topic", topic) in acls


def test_k8s_network_is_denied_by_default() -> None:
    by_kind = k8s_by_kind()
    deny = by_kind[("NetworkPolicy", "facestream-default-deny")]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    kafka = by_kind[("NetworkPolicy", "facestream-allow-kafka")]["spec"]["egress"][0]
    assert [p["port"] for p in kafka["ports"]] == [9093]  # the TLS listener only
