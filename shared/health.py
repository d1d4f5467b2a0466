"""One small HTTP endpoint per process: ``/metrics`` for Prometheus, probes for orchestrators.

Two kinds of checks, because they ask for different remedies:

* ``/livez``: the process works (its HTTP thread answers and every service thread runs). When it
  fails, restarting the process helps: Kubernetes' livenessProbe.
* ``/readyz``: the process can do its job now: its dependencies answer (the bus polled recently,
  Redis replies). When it fails, restarting does not help (Kafka or Redis is down, not us):
  readinessProbe and docker-compose's healthcheck. A Kafka or Redis outage must never make a
  liveness probe restart healthy pods.
* ``/healthz``: the same as ``/readyz``, kept for existing probes, scripts and dashboards.

Each answers 200 when all its checks pass and 503 otherwise, with ``{name: bool}`` as JSON.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

log = logging.getLogger(__name__)

HealthCheck = Callable[[], bool]


class HealthServer:
    def __init__(self, host: str = "127.0.0.1", port: int = 9100) -> None:
        self.checks: dict[str, HealthCheck] = {}
        """Readiness: the dependencies a service needs answer."""
        self.liveness_checks: dict[str, HealthCheck] = {}
        """Liveness: the process itself works; failing ones ask for a restart."""
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def add_check(self, name: str, check: HealthCheck) -> None:
        """A readiness check (``/readyz``, ``/healthz``)."""
        self.checks[name] = check

    def add_liveness(self, name: str, check: HealthCheck) -> None:
        """A liveness check (``/livez``); also part of readiness: a dead service is not ready."""
        self.liveness_checks[name] = check

    def liveness(self) -> dict[str, bool]:
        return _run(self.liveness_checks)

    def status(self) -> dict[str, bool]:
        """Readiness: every readiness check, and the liveness ones under ``NAME.alive``."""
        alive = {f"{name}.alive": ok for name, ok in self.liveness().items()}
        return {**_run(self.checks), **alive}

    def start(self) -> HealthServer:
        self._thread.start()
        log.info("metrics and health on http://%s:%d", *self._server.server_address[:2])
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path == "/metrics":
                    self._send(200, CONTENT_TYPE_LATEST, generate_latest(REGISTRY))
                elif self.path in ("/readyz", "/healthz", "/livez"):
                    live = self.path == "/livez"
                    status = server.liveness() if live else server.status()
                    code = 200 if all(status.values()) else 503
                    self._send(code, "application/json", json.dumps(status).encode())
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _send(self, code: int, content_type: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                """Scrapes every few seconds would flood the logs."""

        return Handler


def _run(checks: dict[str, HealthCheck]) -> dict[str, bool]:
    results = {}
    for name, check in list(checks.items()):
        try:
            results[name] = bool(check())
        except Exception:  # noqa: BLE001 - a failing check is an unhealthy component
            results[name] = False
    return results
