"""The embedded default: every service in one process over the in-memory bus.

This is what ``facestream run`` starts on a machine with nothing else installed: the same service
classes as a Kafka deployment, wired to a ``MemoryBus`` and a camera registry in a temporary file,
with a small report of what flowed through the pipeline.
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from services.detector.detectors import HaarCascadeDetector
from services.detector.worker import DetectorWorker
from services.ingestor.service import IngestorService
from services.ingestor.source import Source, probe
from services.runtime import start_services, wait_and_stop
from shared.bus.memory import MemoryBus
from shared.cameras import CameraSpec, FileCameraRegistry
from shared.schemas import FacesMessage, Topics
from shared.settings import Settings
from shared.worker import WorkerRunner, stop_on_signals

log = logging.getLogger(__name__)


def camera_id_for(source: str, index: int) -> str:
    stem = Path(source).stem if Source(source).is_file else f"camera{index}"
    return re.sub(r"[^A-Za-z0-9_.-]", "-", stem)[:64] or f"camera{index}"


def run_embedded(
    settings: Settings,
    sources: list[str],
    fps: float | None = None,
    max_seconds: float | None = None,
) -> dict[str, Counter]:
    """Run the pipeline on ``sources`` until the files end (or ``max_seconds``); return the tallies."""
    for source in sources:
        probe(
            Source(source), settings.ingest.open_timeout_s
        )  # a clear error before anything starts
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        stop_on_signals(stop)
    bus = MemoryBus()
    with tempfile.TemporaryDirectory(prefix="facestream-") as tmp:
        registry = FileCameraRegistry(Path(tmp) / "cameras.json")
        for index, source in enumerate(sources):
            registry.put(CameraSpec(id=camera_id_for(source, index), url=source, fps=fps))
        ingestor = IngestorService(bus, registry, settings.ingest, stop)
        detector = WorkerRunner(DetectorWorker(HaarCascadeDetector()), bus, stop)
        report = bus.subscriber([Topics.FACES, Topics.DEAD_LETTERS], "facestream-embedded-report")
        health, threads = start_services(
            {"ingestor": ingestor, "detector": detector}, settings, stop
        )
        tallies = _report_until_done(report, ingestor, stop, max_seconds)
        stop.set()
        wait_and_stop(health, threads, stop)
    _print_summary(tallies)
    return tallies


def _report_until_done(
    report, ingestor: IngestorService, stop: threading.Event, max_seconds
) -> dict:
    tallies: dict[str, Counter] = {
        "frames": Counter(),
        "faces": Counter(),
        "dead_letters": Counter(),
    }
    started = next_print = time.monotonic()
    while not stop.is_set():
        for message in report.poll(0.2, 256):
            if message.topic == Topics.DEAD_LETTERS:
                tallies["dead_letters"][message.headers.get("dlq.reason", "?")] += 1
                continue
            faces = FacesMessage.from_message(message)
            tallies["frames"][faces.camera_id] += 1
            tallies["faces"][faces.camera_id] += len(faces.faces)
        report.commit()
        now = time.monotonic()
        if now >= next_print:
            next_print = now + 1.0
            print(_progress_line(now - started, tallies, ingestor), flush=True)
        files_done = ingestor.readers and all(r.state == "ended" for r in ingestor.readers.values())
        if files_done and not any(report.lag().values()) and _drained(ingestor, tallies):
            break
        if max_seconds is not None and now - started >= max_seconds:
            break
    return tallies


def _drained(ingestor: IngestorService, tallies: dict[str, Counter]) -> bool:
    """Every published frame has come out of the detector (or was dead-lettered)."""
    published = sum(reader.published for reader in ingestor.readers.values())
    return sum(tallies["frames"].values()) + sum(tallies["dead_letters"].values()) >= published


def _progress_line(elapsed: float, tallies: dict[str, Counter], ingestor: IngestorService) -> str:
    cameras = ", ".join(
        f"{cid} [{reader.state}] {tallies['frames'][cid]} frames, {tallies['faces'][cid]} faces"
        for cid, reader in ingestor.readers.items()
    )
    return f"{elapsed:6.1f}s  {cameras or 'starting'}"


def _print_summary(tallies: dict[str, Counter]) -> None:
    print("summary:")
    for camera, frames in sorted(tallies["frames"].items()):
        faces = tallies["faces"][camera]
        print(f"  {camera}: {frames} frames through the detector, {faces} faces")
    for reason, count in sorted(tallies["dead_letters"].items()):
        print(f"  dead letters ({reason}): {count}")
