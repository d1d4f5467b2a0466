"""``facestream cameras add|style|remove|list``: the camera registry."""

from __future__ import annotations

import argparse

from pydantic import ValidationError

from services.cli.common import CliError
from services.ingestor.source import Source, SourceError, probe
from shared.cameras import CameraRegistry, CameraSpec, RegistryError, create_camera_registry
from shared.settings import Settings


def register(commands: argparse._SubParsersAction) -> None:
    cameras = commands.add_parser("cameras", help="the camera registry")
    actions = cameras.add_subparsers(dest="action", required=True)
    add = actions.add_parser("add", help="add or replace a camera")
    add.add_argument("id")
    add.add_argument("url", help="rtsp:// URL, video file or device index")
    add.add_argument("--fps", type=float, default=None)
    add.add_argument(
        "--max-width",
        type=int,
        default=None,
        help="scale wider frames down to this width (default: FACESTREAM_INGEST__MAX_WIDTH)",
    )
    add.add_argument("--loop", action="store_true", help="video files: play in a loop")
    add.add_argument("--no-check", action="store_true", help="do not open the source first")
    add.add_argument("--style", default=None, help="stylize with this trained network")
    style = actions.add_parser("style", help="switch a camera's style at run time")
    style.add_argument("id")
    style.add_argument("name", help="a trained network's name, painting:<id>, or 'none'")
    actions.add_parser("remove").add_argument("id")
    actions.add_parser("list")
    cameras.set_defaults(handler=cmd_cameras)


def cmd_cameras(args: argparse.Namespace, settings: Settings) -> None:
    registry = create_camera_registry(settings)
    try:
        if args.action == "add":
            _add(registry, args, settings)
        elif args.action == "style":
            _set_style(registry, args.id, None if args.name == "none" else args.name, settings)
        elif args.action == "remove":
            if not registry.remove(args.id):
                raise CliError(f"no camera {args.id!r}")
            print(f"camera {args.id} removed")
        else:
            for camera in registry.list():
                print(
                    f"{camera.id}\t{Source(camera.url).display()}\tfps={camera.fps or 'default'}"
                    f"\tmax_width={camera.max_width or 'default'}"
                    f"\tstyle={camera.style or 'none'}"
                )
    except (SourceError, RegistryError) as error:
        raise CliError(str(error)) from None


def _add(registry: CameraRegistry, args: argparse.Namespace, settings: Settings) -> None:
    camera = _camera_spec(args)
    check_style(camera.style, settings)
    if not args.no_check:
        width, height, fps = probe(Source(camera.url), settings.ingest.open_timeout_s)
        print(f"{camera.id}: {width}x{height} at {fps:.2f} fps")
    registry.put(camera)
    print(f"camera {camera.id} added")


def _set_style(
    registry: CameraRegistry, camera_id: str, style: str | None, settings: Settings
) -> None:
    """Switch a camera's style at run time: the stylizer follows, the camera keeps streaming."""
    check_style(style, settings)
    camera = registry.get(camera_id)
    if camera is None:
        raise CliError(f"no camera {camera_id!r}")
    registry.put(camera.model_copy(update={"style": style}))
    print(f"camera {camera_id}: style {style or 'off'}")


def check_style(style: str | None, settings: Settings) -> None:
    """A style must name a trained network (``NAME.json`` + ``NAME.npz`` in the networks dir)
    or an uploaded painting (``painting:<id>``, ``facestream paintings add``)."""
    from shared.style.catalog import available_networks
    from shared.style.paintings import create_painting_store, is_painting

    if is_painting(style):
        if not create_painting_store(settings).exists(style):
            raise CliError(
                f"no painting {style!r}; upload one with `facestream paintings add FILE`"
            )
        return

    folder = settings.style.networks_dir
    known = available_networks(folder)
    if style is not None and style not in known:
        raise CliError(f"no style network {style!r} in {folder} (available: {', '.join(known)})")


def _camera_spec(args: argparse.Namespace) -> CameraSpec:
    try:
        return CameraSpec(
            id=args.id,
            url=args.url,
            fps=args.fps,
            max_width=args.max_width,
            loop=args.loop,
            style=args.style,
        )
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise CliError(
            f"invalid camera ({problems}); a camera id is 1-64 letters, digits, _.-"
        ) from None
