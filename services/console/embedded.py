"""The console inside ``facestream run``: the API app and the console on the in-memory bus."""

from __future__ import annotations

import threading
from typing import Any

from services.console.server import (
    ConsoleRefusedError,
    build_console,
    console_token,
    serve_in_thread,
)
from shared.cameras import CameraRegistry
from shared.settings import Settings


def start_embedded_console(
    settings: Settings, bus, registry: CameraRegistry, stop: threading.Event, services: dict
) -> Any:
    """Serve the console for this run and print its URL; None (and why) when refused."""
    try:
        token, generated = console_token(settings)
    except ConsoleRefusedError as error:
        print(f"console off: {error}", flush=True)
        return None
    from services.api.app import create_app
    from shared.face.factory import build_identity
    from shared.snapshots import create_snapshot_store

    console = build_console(
        settings, bus, token, health=lambda: {n: bool(s.healthy()) for n, s in services.items()}
    )
    ingestor = services.get("ingestor")
    if ingestor is not None:
        console.hub.camera_status = lambda camera_id: _reader_status(ingestor, camera_id)
    app = create_app(
        build_identity(settings),
        registry,
        token,
        settings.api.max_upload_bytes,
        settings.style.networks_dir,
        settings.face.models_dir,
        max_request_bytes=settings.api.max_request_bytes,
        model_workers=settings.api.model_workers,
        model_queue=settings.api.model_queue,
        snapshots=create_snapshot_store(settings),
        console=console,
        painting_side=settings.style.painting_side,
        style_precision=settings.style.precision,
    )
    console.start(stop)
    server, _thread, port = serve_in_thread(app, settings.api.host, settings.console.port)
    host = f"[{settings.api.host}]" if ":" in settings.api.host else settings.api.host
    login = "#login=" + token if generated else "  (log in with FACESTREAM_API__TOKEN)"
    print(f"console: http://{host}:{port}/{login}", flush=True)
    return server


def _reader_status(ingestor, camera_id: str) -> dict:
    reader = ingestor.readers.get(camera_id)
    if reader is None:
        return {}
    return {"state": reader.state, "last_error": reader.last_error}
