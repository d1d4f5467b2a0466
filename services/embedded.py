"""The embedded default: every service in one process over the in-memory bus.

This is what ``facestream run`` starts on a machine with nothing else installed: the same service
classes as a Kafka deployment (ingestor, detector, liveness, recognizer), wired to a ``MemoryBus``, the
file-backed gallery under ``data_dir`` (enroll with ``facestream enroll``) and a camera registry
in a temporary file; it prints the recognition events as they happen and a summary at the end.
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import cast

from services.ingestor.service import IngestorService
from services.ingestor.source import Source, probe
from services.runtime import build_services, start_services, wait_and_stop
from shared.bus.base import Subscriber
from shared.bus.memory import MemoryBus
from shared.cameras import CameraSpec, FileCameraRegistry
from shared.schemas import FacesMessage, Topics, read_event
from shared.settings import Settings
from shared.worker import stop_on_signals

log = logging.getLogger(__name__)


def camera_id_for(source: str, index: int) -> str:
    stem = Path(source).stem if Source(source).is_file else f"camera{index}"
    return re.sub(r"[^A-Za-z0-9_.-]", "-", stem)[:64] or f"camera{index}"


def run_embedded(
    settings: Settings,
    sources: list[str],
    fps: float | None = None,
    max_seconds: float | None = None,
    enroll: Path | None = None,
    style: str | None = None,
    loop: bool = False,
) -> dict[str, Counter]:
    """Run the pipeline on ``sources`` until the files end (or ``max_seconds``); return the tallies.

    With ``enroll`` (a folder of NAME/photos) the run uses a gallery of its own, made from that
    folder and discarded afterwards; otherwise the file gallery under ``data_dir``. With ``style``
    (a trained network's name) every camera is also stylized; the latest styled frame of each is
    written to ``data_dir/styled/CAMERA.jpg``. With a token (or local-only) the web console is
    served too (services/console) and the run lasts until stopped (or ``max_seconds``);
    ``loop`` plays files in a loop.
    """
    for source in sources:  # a clear error before anything starts
        probe(Source(source), settings.ingest.open_timeout_s)
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        stop_on_signals(stop)
    bus = MemoryBus()
    with tempfile.TemporaryDirectory(prefix="facestream-") as tmp:
        settings = settings.model_copy(update={"store": "file"})
        # The in-memory bus never stalls: a camera whose frames stop has stopped, so its tracks
        # end after the usual timeout rather than the generous fallback meant for broker restarts.
        recognizer = settings.recognizer.model_copy(
            update={"camera_silence_s": settings.recognizer.track_timeout_s}
        )
        settings = settings.model_copy(update={"recognizer": recognizer})
        if enroll is not None:
            settings = settings.model_copy(update={"data_dir": Path(tmp) / "data"})
            _enroll_folder(settings, enroll)
        registry = FileCameraRegistry(Path(tmp) / "cameras.json")
        for index, source in enumerate(sources):
            camera_id = camera_id_for(source, index)
            registry.put(CameraSpec(id=camera_id, url=source, fps=fps, style=style, loop=loop))
        names = ["ingestor", "detector"] + (["liveness"] if settings.liveness.gate else [])
        names += ["recognizer"] + (["stylizer"] if style else [])
        services = build_services(names, settings, bus, stop, registry)
        ingestor = cast(IngestorService, services["ingestor"])
        topics = [Topics.FACES, Topics.EVENTS, Topics.DEAD_LETTERS, Topics.STYLED_FRAMES]
        report = bus.subscriber(topics, "facestream-embedded-report")
        from services.console.embedded import start_embedded_console

        # before the services: its models load while no other thread runs TensorFlow
        console = start_embedded_console(settings, bus, registry, stop, services)
        health, threads = start_services(services, settings, stop)
        tallies = _report_until_done(
            report,
            ingestor,
            stop,
            max_seconds,
            settings.data_dir,
            until_stopped=console is not None,
        )
        stop.set()
        if console is not None:
            console.should_exit = True
        wait_and_stop(health, threads, stop)
    _print_summary(tallies)
    return tallies


def _enroll_folder(settings: Settings, folder: Path) -> None:
    from shared.face.factory import build_identity

    enrolled, skipped = build_identity(settings).enroll_folder(folder)
    names = sorted({e.person.name for e in enrolled})
    print(f"enrolled {len(names)} people from {folder}: {', '.join(names)}", flush=True)
    for photo, why in skipped:
        print(f"  skipped {photo.name}: {why}", flush=True)


def _report_until_done(
    report: Subscriber,
    ingestor: IngestorService,
    stop: threading.Event,
    max_seconds: float | None,
    data_dir: Path,
    until_stopped: bool = False,
) -> dict[str, Counter]:
    tallies: dict[str, Counter] = {
        "frames": Counter(),
        "faces": Counter(),
        "events": Counter(),
        "dead_letters": Counter(),
        "styled": Counter(),
    }
    started = next_print = time.monotonic()
    idle_since = None
    while not stop.is_set():
        batch = report.poll(0.2, 256)
        for message in batch:
            if message.topic == Topics.STYLED_FRAMES:
                _keep_styled(message, tallies, data_dir / "styled")
            else:
                _tally(message, tallies)
        report.commit()
        now = time.monotonic()
        if now >= next_print:
            next_print = now + 2.0
            print(_progress_line(now - started, tallies, ingestor), flush=True)
        files_done = ingestor.readers and all(r.state == "ended" for r in ingestor.readers.values())
        published = sum(reader.published for reader in ingestor.readers.values())
        seen = sum(tallies["frames"].values())
        # Done when every frame went through detection and the recognizer has had time to end
        # its tracks (their timeout) after the last frame.
        if files_done and seen >= published and not until_stopped:
            idle_since = idle_since or now
            if now - idle_since > 3.0 and not batch:
                break
        if max_seconds is not None and now - started >= max_seconds:
            break
    return tallies


def _keep_styled(message, tallies: dict[str, Counter], folder: Path) -> None:
    """Count a styled frame and keep it as the camera's latest (overwritten frame by frame)."""
    tallies["styled"][message.key or "?"] += 1
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{message.key or 'camera'}.jpg").write_bytes(message.value)


def _tally(message, tallies: dict[str, Counter]) -> None:
    if message.topic == Topics.DEAD_LETTERS:
        tallies["dead_letters"][message.headers.get("dlq.reason", "?")] += 1
        if message.headers.get("dlq.source_topic") == Topics.FRAMES:
            tallies["frames"][message.key or "?"] += 1  # a frame the detector gave up on
    elif message.topic == Topics.FACES:
        faces = FacesMessage.from_message(message)
        tallies["frames"][faces.camera_id] += 1
        tallies["faces"][faces.camera_id] += len(faces.faces)
    else:
        event = read_event(message)
        tallies["events"][event.type] += 1
        if event.type in ("snapshot", "continued"):  # a picture, a new detector id: no news
            return
        who = f" {event.person_name} (distance {event.distance:.3f})" if event.person_name else ""
        print(
            f"  event: {event.type:<10} camera {event.camera_id} track {event.track_id}{who}",
            flush=True,
        )


def _progress_line(elapsed: float, tallies: dict[str, Counter], ingestor: IngestorService) -> str:
    cameras = ", ".join(
        f"{cid} [{reader.state}] {reader.published} frames in, {tallies['frames'][cid]} detected, "
        f"{tallies['faces'][cid]} faces"
        + (f", {tallies['styled'][cid]} styled" if tallies["styled"] else "")
        for cid, reader in list(ingestor.readers.items())
    )
    return f"{elapsed:6.1f}s  {cameras or 'starting'}"


def _print_summary(tallies: dict[str, Counter]) -> None:
    print("summary:")
    for camera, frames in sorted(tallies["frames"].items()):
        print(f"  {camera}: {frames} frames through the detector, {tallies['faces'][camera]} faces")
    for camera, styled in sorted(tallies["styled"].items()):
        print(f"  {camera}: {styled} styled frames")
    for kind, count in sorted(tallies["events"].items()):
        print(f"  events ({kind}): {count}")
    for reason, count in sorted(tallies["dead_letters"].items()):
        print(f"  dead letters ({reason}): {count}")
