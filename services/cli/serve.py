"""Running: ``facestream run`` (embedded), one service per process, ``api``, ``topics create``."""

from __future__ import annotations

import argparse
import threading
from pathlib import Path

from services.cli.common import CliError, identity
from services.runtime import SERVICES, build_services, dependencies, start_services, wait_and_stop
from shared.settings import Settings


def register(commands: argparse._SubParsersAction) -> None:
    run = commands.add_parser("run", help="all services in one process on the in-memory bus")
    run.add_argument("sources", nargs="*", help="video files, stream URLs or device indexes")
    run.add_argument("--fps", type=float, default=None, help="target fps per camera")
    run.add_argument("--seconds", type=float, default=None, help="stop after this long")
    run.add_argument(
        "--enroll",
        type=Path,
        default=None,
        help="use a gallery made for this run from DIR/NAME/photos",
    )
    run.add_argument("--style", help="also stylize every camera with this trained network")
    run.add_argument(
        "--fast", dest="realtime", action="store_false", help="read files as fast as possible"
    )
    run.add_argument("--loop", action="store_true", help="play video files in a loop")
    run.set_defaults(handler=cmd_run)
    for name in SERVICES:
        commands.add_parser(name, help=f"run the {name} service").set_defaults(handler=cmd_service)
    commands.add_parser("api", help="serve the HTTP API").set_defaults(handler=cmd_api)
    topics = commands.add_parser("topics", help="Kafka topics")
    topics.add_argument("action", choices=["create"])
    topics.set_defaults(handler=cmd_topics)


def cmd_run(args: argparse.Namespace, settings: Settings) -> None:
    from services.embedded import run_embedded
    from services.ingestor.source import Source, SourceError

    sources = args.sources or [str(settings.shared_data / "video" / "hamilton_clip_640x360.mp4")]
    if not args.sources and not Source(sources[0]).is_file:
        raise CliError("no sample video; pass a video file, an rtsp:// URL or a device index")
    if not args.realtime:
        settings.ingest.file_realtime = False
    try:
        run_embedded(
            settings,
            sources,
            fps=args.fps,
            max_seconds=args.seconds,
            enroll=args.enroll,
            style=args.style,
            loop=args.loop,
        )
    except SourceError as error:
        raise CliError(str(error)) from None


def cmd_service(args: argparse.Namespace, settings: Settings) -> None:
    """Run one service until SIGTERM."""
    from shared.bus.factory import create_bus
    from shared.worker import stop_on_signals

    stop = threading.Event()
    stop_on_signals(stop)
    bus = create_bus(settings)
    health, threads = start_services(
        build_services([args.command], settings, bus, stop),
        settings,
        stop,
        dependencies(args.command, settings),
    )
    wait_and_stop(health, threads, stop)
    bus.close()


def cmd_api(args: argparse.Namespace, settings: Settings) -> None:
    import uvicorn

    from services.api.app import create_app
    from services.api.guard import WeakTokenError, check_token_strength
    from shared.cameras import create_camera_registry
    from shared.style.paintings import create_painting_store

    if settings.api.token is None or not settings.api.token.get_secret_value():
        raise CliError(
            "set FACESTREAM_API__TOKEN: the API does not serve biometric data without one"
        )
    try:
        check_token_strength(settings.api.token.get_secret_value())
    except WeakTokenError as error:
        raise CliError(f"{error} (FACESTREAM_API__TOKEN)") from None
    from services.console.server import build_console
    from shared.bus.factory import create_bus
    from shared.snapshots import create_snapshot_store

    token = settings.api.token.get_secret_value()
    console = build_console(settings, create_bus(settings), token).start(threading.Event())
    app = create_app(
        identity(settings),
        create_camera_registry(settings),
        settings.api.token.get_secret_value(),
        settings.api.max_upload_bytes,
        settings.style.networks_dir,
        settings.face.models_dir,
        readiness=dependencies("recognizer", settings),  # Redis, when the store is
        max_request_bytes=settings.api.max_request_bytes,
        model_workers=settings.api.model_workers,
        model_queue=settings.api.model_queue,
        snapshots=create_snapshot_store(settings),
        console=console,
        paintings=create_painting_store(settings),
        painting_side=settings.style.painting_side,
        style_precision=settings.style.precision,
    )
    print(f"console: http://{settings.api.host}:{settings.api.port}/", flush=True)
    uvicorn.run(app, host=settings.api.host, port=settings.api.port, log_level="warning")


def cmd_topics(args: argparse.Namespace, settings: Settings) -> None:
    from shared.bus.base import BusError
    from shared.bus.factory import create_bus
    from shared.schemas import Topics

    try:
        create_bus(settings).ensure_topics(Topics.ALL)
        if settings.bus == "kafka":
            from shared.retention import apply_retention

            for topic, configs in apply_retention(settings.kafka, settings.retention).items():
                hours = int(configs["retention.ms"]) / 3_600_000
                print(f"{topic}: records kept {hours:g} h")
    except BusError as error:
        raise CliError(str(error)) from None
    print(f"topics ready: {', '.join(Topics.ALL)}")
