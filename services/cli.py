"""The ``facestream`` command: run services, the embedded pipeline, and manage cameras and topics."""

from __future__ import annotations

import argparse
import logging
import sys
import threading
from collections.abc import Sequence

from pydantic import ValidationError

from services.detector.detectors import HaarCascadeDetector
from services.detector.worker import DetectorWorker
from services.ingestor.service import IngestorService
from services.ingestor.source import Source, SourceError, probe
from services.runtime import Service, start_services, wait_and_stop
from shared.bus.base import BusError
from shared.bus.factory import create_bus
from shared.cameras import CameraSpec, RegistryError, create_camera_registry
from shared.schemas import Topics
from shared.settings import Settings, get_settings
from shared.worker import WorkerRunner, stop_on_signals


class CliError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""


def build_services(names: Sequence[str], settings: Settings, bus, stop) -> dict[str, Service]:
    """The named services wired to one bus; the order is the pipeline's."""
    services: dict[str, Service] = {}
    for name in names:
        if name == "ingestor":
            registry = create_camera_registry(settings)
            services[name] = IngestorService(bus, registry, settings.ingest, stop)
        elif name == "detector":
            services[name] = WorkerRunner(DetectorWorker(HaarCascadeDetector()), bus, stop)
        else:
            raise CliError(f"unknown service {name!r}")
    return services


def cmd_service(args: argparse.Namespace, settings: Settings) -> None:
    """Run one service until SIGTERM."""
    stop = threading.Event()
    stop_on_signals(stop)
    bus = create_bus(settings)
    health, threads = start_services(
        build_services([args.command], settings, bus, stop), settings, stop
    )
    wait_and_stop(health, threads, stop)
    bus.close()


def cmd_run(args: argparse.Namespace, settings: Settings) -> None:
    from services.embedded import run_embedded

    sources = args.sources or [str(settings.shared_data / "video" / "hamilton_clip_640x360.mp4")]
    if not args.sources and not Source(sources[0]).is_file:
        raise CliError("no sample video; pass a video file, an rtsp:// URL or a device index")
    if not args.realtime:
        settings.ingest.file_realtime = False
    try:
        run_embedded(settings, sources, fps=args.fps, max_seconds=args.seconds)
    except SourceError as error:
        raise CliError(str(error)) from None


def cmd_topics(args: argparse.Namespace, settings: Settings) -> None:
    try:
        create_bus(settings).ensure_topics(Topics.ALL)
    except BusError as error:
        raise CliError(str(error)) from None
    print(f"topics ready: {', '.join(Topics.ALL)}")


def cmd_cameras(args: argparse.Namespace, settings: Settings) -> None:
    registry = create_camera_registry(settings)
    try:
        if args.action == "add":
            camera = _camera_spec(args)
            if not args.no_check:
                width, height, fps = probe(Source(camera.url), settings.ingest.open_timeout_s)
                print(f"{camera.id}: {width}x{height} at {fps:.2f} fps")
            registry.put(camera)
            print(f"camera {camera.id} added")
        elif args.action == "remove":
            if not registry.remove(args.id):
                raise CliError(f"no camera {args.id!r}")
            print(f"camera {args.id} removed")
        else:
            for camera in registry.list():
                print(f"{camera.id}\t{Source(camera.url).display()}\tfps={camera.fps or 'default'}")
    except (SourceError, RegistryError) as error:
        raise CliError(str(error)) from None


def _camera_spec(args: argparse.Namespace) -> CameraSpec:
    try:
        return CameraSpec(id=args.id, url=args.url, fps=args.fps, loop=args.loop)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise CliError(
            f"invalid camera ({problems}); a camera id is 1-64 letters, digits, _.-"
        ) from None


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="facestream", description=__doc__)
    commands = root.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="all services in one process on the in-memory bus")
    run.add_argument("sources", nargs="*", help="video files, stream URLs or device indexes")
    run.add_argument("--fps", type=float, default=None, help="target fps per camera")
    run.add_argument("--seconds", type=float, default=None, help="stop after this long")
    run.add_argument(
        "--fast", dest="realtime", action="store_false", help="read files as fast as possible"
    )
    run.set_defaults(handler=cmd_run)

    for name in ("ingestor", "detector"):
        commands.add_parser(name, help=f"run the {name} service").set_defaults(handler=cmd_service)

    topics = commands.add_parser("topics", help="Kafka topics")
    topics.add_argument("action", choices=["create"])
    topics.set_defaults(handler=cmd_topics)

    cameras = commands.add_parser("cameras", help="the camera registry")
    actions = cameras.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add or replace a camera")
    add.add_argument("id")
    add.add_argument("url", help="rtsp:// URL, video file or device index")
    add.add_argument("--fps", type=float, default=None)
    add.add_argument("--loop", action="store_true", help="video files: play in a loop")
    add.add_argument("--no-check", action="store_true", help="do not open the source first")
    actions.add_parser("remove").add_argument("id")
    actions.add_parser("list")
    cameras.set_defaults(handler=cmd_cameras)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    settings = get_settings()
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        args.handler(args, settings)
    except CliError as error:
        print(f"facestream: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
