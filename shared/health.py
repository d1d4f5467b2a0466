"""One small HTTP endpoint per process: ``/metrics`` for Prometheus, ``/healthz`` for orchestrators.

Health checks are plain callables registered by the services running in the process; ``/healthz``
answers 200 when all pass and 503 with the failing names otherwise.
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
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def add_check(self, name: str, check: HealthCheck) -> None:
        self.checks[name] = check

    def status(self) -> dict[str, bool]:
        results = {}
        for name, check in list(self.checks.items()):
            try:
                results[name] = bool(check())
            except Exception:  # noqa: BLE001 - a failing check is an unhealthy component
                results[name] = False
        return results

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
                elif self.path == "/healthz":
                    status = server.status()
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
