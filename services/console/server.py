"""Building the console and serving it: by ``facestream api`` and inside ``facestream run``.

The console refuses to start without an API token (``FACESTREAM_API__TOKEN``), unless told
explicitly that it is local-only (``FACESTREAM_CONSOLE__LOCAL_ONLY=1``) and it listens on the
loopback interface: then a random token is made for the run and the printed URL carries it in
its fragment (``#login=...``, which browsers never send to a server or in a Referer), so the
person at the machine is logged in by opening it and nobody else can be.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
from collections.abc import Callable

from services.console.hub import LiveHub
from services.console.routes import Console
from services.console.session import SessionStore
from shared.settings import Settings

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "localhost", "::1")


class ConsoleRefusedError(RuntimeError):
    """No token and not explicitly local-only: the console would serve biometric data openly."""


def console_token(settings: Settings) -> tuple[str, bool]:
    """(token, generated here). ``ConsoleRefusedError`` without a token unless local-only."""
    token = settings.api.token.get_secret_value() if settings.api.token else ""
    if token:
        return token, False
    if not settings.console.local_only:
        raise ConsoleRefusedError(
            "the console needs FACESTREAM_API__TOKEN (or FACESTREAM_CONSOLE__LOCAL_ONLY=1 to "
            "serve it on 127.0.0.1 only with a token made for this run)"
        )
    if settings.api.host not in LOOPBACK:
        raise ConsoleRefusedError(
            f"FACESTREAM_CONSOLE__LOCAL_ONLY serves on the loopback only, not {settings.api.host}"
        )
    return secrets.token_urlsafe(32), True


def build_console(
    settings: Settings, bus, token: str, health: Callable[[], dict] | None = None
) -> Console:
    return Console(
        LiveHub(bus, settings.snapshots.retention_h * 3600.0),
        SessionStore(token, settings.console.session_hours),
        secure_cookie=settings.console.secure_cookie,
        prometheus_url=settings.console.prometheus_url,
        grafana_url=settings.console.grafana_url,
        health=health,
        probe_timeout_s=settings.ingest.open_timeout_s,
    )


def serve_in_thread(app, host: str, port: int) -> tuple[object, threading.Thread, int]:
    """Serve ``app`` with uvicorn in a daemon thread; (server, thread, the port bound)."""
    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="console-http", daemon=True
    )
    thread.start()
    return server, thread, sock.getsockname()[1]
