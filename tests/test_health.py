"""Liveness and readiness are separate: a dependency outage makes a process unready, not dead.

Issue 13: with one ``/healthz`` for both, a Kafka or Redis outage of a minute made Kubernetes
restart healthy pods. Here an ingestor runs as a real process on a Redis of the test's own, which
is killed and restarted.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.health import HealthServer
from tests.helpers import ServiceProcess, wait_for
from tests.private_redis import PrivateRedis, running


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    yield from running(tmp_path)


def probe(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_livez_and_readyz_answer_different_questions() -> None:
    health = HealthServer(port=0).start()
    try:
        bus_ok = threading.Event()
        bus_ok.set()
        worker = threading.Thread(target=threading.Event().wait, args=(30,), daemon=True)
        worker.start()
        health.add_check("detector", bus_ok.is_set)
        health.add_liveness("detector", worker.is_alive)
        assert probe(health.port, "/livez") == (200, {"detector": True})
        assert probe(health.port, "/readyz") == (200, {"detector": True, "detector.alive": True})

        bus_ok.clear()  # Kafka is down: not ready, but restarting would not help
        assert probe(health.port, "/livez")[0] == 200
        assert probe(health.port, "/readyz") == (503, {"detector": False, "detector.alive": True})
        assert probe(health.port, "/healthz")[0] == 503  # the old name: readiness

        health.add_liveness("crashed", lambda: False)  # a dead service thread: restart
        assert probe(health.port, "/livez") == (503, {"detector": True, "crashed": False})
    finally:
        health.stop()


def test_a_redis_outage_makes_a_service_unready_not_dead(private_redis, tmp_path: Path) -> None:
    env = {
        "FACESTREAM_BUS": "memory",
        "FACESTREAM_STORE": "redis",
        "FACESTREAM_REDIS__URL": private_redis.url,
        "FACESTREAM_REDIS__PASSWORD": "",
        "FACESTREAM_REDIS__SOCKET_TIMEOUT_S": "1",
        "FACESTREAM_INGEST__REGISTRY_POLL_S": "0.2",
    }
    ingestor = ServiceProcess("ingestor", env, tmp_path).start()
    try:
        assert probe(ingestor.port, "/readyz")[0] == 200
        private_redis.kill()
        wait_for(lambda: probe(ingestor.port, "/readyz")[0] == 503, 20, "unready without Redis")
        status, checks = probe(ingestor.port, "/readyz")
        assert checks["redis"] is False and checks["ingestor.alive"] is True
        assert probe(ingestor.port, "/livez") == (200, {"ingestor": True})
        private_redis.start()
        wait_for(lambda: probe(ingestor.port, "/readyz")[0] == 200, 20, "ready again")
        assert ingestor.alive()
    finally:
        ingestor.stop()
