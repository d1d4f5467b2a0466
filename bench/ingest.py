"""Ingest throughput of one camera, stage by stage, with the ingestor's own code.

Stages, in the order a frame meets them in ``services/ingestor/camera.py``:

* raw decode: bare ``cv2.VideoCapture`` reads, the reference every other stage is divided by;
* decode: ``open_capture`` (FFmpeg backend with timeouts) + ``read`` + the media timestamp;
* pace: ``Pacer`` on media time, which keeps ``fps`` of the source's frames;
* scale: ``fit_width`` of the frames the pacer kept, to the ingest's ``max_width``;
* encode: ``encode_jpeg`` of the scaled frames;
* publish: ``FrameMeta`` headers + ``publish`` + ``flush`` per frame, on each bus;
* chain: a real ``CameraReader`` (watchdog, metrics and all) run over the file as fast as it can.

Every pass reads the file from disk, so decode figures include the (cached) file read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from bench.timing import Limits, Timed, median_pass, timed
from services.ingestor.camera import CameraReader
from services.ingestor.pacer import Pacer
from services.ingestor.source import Source, open_capture
from shared.bus.base import BusError, Publisher
from shared.bus.memory import MemoryBus
from shared.cameras import CameraSpec
from shared.images import encode_jpeg, fit_width
from shared.schemas import FrameMeta, Topics
from shared.settings import IngestSettings

CAMERA_ID = "bench"
RAW_DECODE = "raw decode (cv2.VideoCapture)"
MAX_KAFKA_FAILURES = 2


@dataclass
class StageResult:
    """The median pass of one stage, and how it compares with raw decoding."""

    stage: str
    frames: int
    fps: float
    ms_per_frame: float
    cpu_ms_per_frame: float
    vs_raw_decode: float
    """Stage frames/s divided by raw-decode frames/s: 0.5 means the stage costs two decodes."""
    runs_fps: list[float]
    published: int | None = None
    published_fps: float | None = None
    published_per_cpu_s: float | None = None


@dataclass
class VideoResult:
    """Everything measured on one video."""

    video: str
    width: int = 0
    height: int = 0
    published_width: int = 0
    published_height: int = 0
    """The frames' size once scaled to the ingest's ``max_width``."""
    source_fps: float = 0.0
    frames_read: int = 0
    frames_admitted: int = 0
    mean_jpeg_bytes: float = 0.0
    stages: list[StageResult] = field(default_factory=list)
    cameras_per_core: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per bus: cameras at the target fps by wall time of one reader thread, and by CPU time."""
    errors: list[str] = field(default_factory=list)


@dataclass
class Prepared:
    """An untimed first pass: media timestamps, which frames the pacer keeps, and those frames."""

    stamps: list[float]
    admitted: list[int]
    frames: list[np.ndarray]
    scaled: list[np.ndarray]
    """The kept frames scaled to ``max_width``: what the reader encodes."""
    source_fps: float


def _read_frames(
    capture: cv2.VideoCapture, limits: Limits, on_frame: Callable[[np.ndarray], None] | None
) -> int:
    """Read until the end of the file or a limit; the count of frames read."""
    count, started = 0, time.perf_counter()
    while not limits.done(count, started):
        ok, frame = capture.read()
        if not ok or frame is None:
            break
        count += 1
        if on_frame is not None:
            on_frame(frame)
    return count


def raw_decode(path: Path, limits: Limits) -> Timed:
    """Reference pass: OpenCV's default open and read, nothing else (opening is not timed)."""
    capture = cv2.VideoCapture(str(path))
    try:
        return timed(lambda: _read_frames(capture, limits, None))
    finally:
        capture.release()


def project_decode(path: Path, limits: Limits, settings: IngestSettings) -> Timed:
    """The reader's decode: ``open_capture`` + ``read`` + the media timestamp pacing needs."""
    capture = open_capture(Source(str(path)), settings.open_timeout_s, settings.read_timeout_s)
    try:
        return timed(
            lambda: _read_frames(capture, limits, lambda _: capture.get(cv2.CAP_PROP_POS_MSEC))
        )
    finally:
        capture.release()


def prepare(path: Path, limits: Limits, settings: IngestSettings, fps: float) -> Prepared:
    """Decode once untimed (it also warms the file cache and codec) and keep the paced frames."""
    capture = open_capture(Source(str(path)), settings.open_timeout_s, settings.read_timeout_s)
    stamps: list[float] = []
    admitted: list[int] = []
    frames: list[np.ndarray] = []
    pacer = Pacer(fps)

    def keep(frame: np.ndarray) -> None:
        stamps.append(capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0)
        if pacer.admit(stamps[-1]):
            admitted.append(len(stamps) - 1)
            frames.append(frame)

    try:
        _read_frames(capture, limits, keep)
        source_fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
    finally:
        capture.release()
    scaled = [fit_width(frame, settings.max_width) for frame in frames]
    return Prepared(stamps, admitted, frames, scaled, source_fps)


def pace(stamps: list[float], fps: float) -> Timed:
    """The pacer over every frame's media timestamp."""

    def run() -> int:
        pacer = Pacer(fps)
        for ts in stamps:
            pacer.admit(ts)
        return len(stamps)

    return timed(run)


def scale(frames: list[np.ndarray], max_width: int | None) -> Timed:
    """Scale the paced frames down to ``max_width``, as the reader does before encoding."""
    return timed(lambda: len([fit_width(frame, max_width) for frame in frames]))


def encode(frames: list[np.ndarray], quality: int) -> tuple[Timed, list[bytes]]:
    """JPEG-encode the scaled frames; the JPEGs feed the publish stages."""
    jpegs: list[bytes] = []

    def run() -> int:
        jpegs.clear()
        jpegs.extend(encode_jpeg(frame, quality) for frame in frames)
        return len(jpegs)

    return timed(run), jpegs


def publish(
    publisher: Publisher, topic: str, jpegs: list[bytes], size: tuple[int, int], timeout_s: float
) -> Timed:
    """Publish each JPEG with its ``FrameMeta`` headers and flush, exactly as the reader does."""
    width, height = size

    def run() -> int:
        for seq, jpeg in enumerate(jpegs):
            meta = FrameMeta(
                camera_id=CAMERA_ID, seq=seq, capture_ts=time.time(), width=width, height=height
            )
            publisher.publish(topic, jpeg, key=CAMERA_ID, headers=meta.to_headers())
            publisher.flush(timeout_s=timeout_s)
        return len(jpegs)

    return timed(run)


class BenchTopicPublisher(Publisher):
    """Sends what a ``CameraReader`` publishes to the bench's own topic, never the live one.

    It also stops the reader once ``stop_after`` frames are out, so ``--frames`` bounds the
    whole-chain pass the same way it bounds the stage passes.
    """

    def __init__(self, inner: Publisher, topic: str, stop_after: int | None) -> None:
        self.inner = inner
        self.topic = topic
        self.stop_after = stop_after
        self.on_limit: Callable[[], None] = lambda: None
        self.count = 0
        self.error: str | None = None

    def publish(
        self,
        topic: str,
        value: bytes,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if topic != Topics.FRAMES:
            raise BusError(f"unexpected topic {topic!r} from the reader")
        self.inner.publish(self.topic, value, key=key, headers=headers)
        self.count += 1

    def flush(self, timeout_s: float = 30.0) -> None:
        try:
            self.inner.flush(timeout_s)
        except BusError as error:
            # The reader would count the frame as dropped and carry on, paying the flush timeout
            # on every frame of a dead broker; one failure ends the pass instead.
            self.error = str(error)
            self.on_limit()
            raise
        if self.stop_after is not None and self.count >= self.stop_after:
            self.on_limit()


def chain(
    path: Path,
    publisher: Publisher,
    topic: str,
    fps: float,
    settings: IngestSettings,
    limits: Limits,
    stop_after: int | None,
) -> Timed:
    """One ``CameraReader`` over the file, run in this thread; frames read and published."""
    redirect = BenchTopicPublisher(publisher, topic, stop_after)
    reader = CameraReader(CameraSpec(id=CAMERA_ID, url=str(path), fps=fps), redirect, settings)
    redirect.on_limit = reader.stop
    timer = threading.Timer(limits.seconds, reader.stop)
    timer.daemon = True
    timer.start()
    try:
        result = timed(lambda: (reader.run(), reader.seq)[1])
    finally:
        timer.cancel()
    if redirect.error is not None:
        raise BusError(redirect.error)
    if reader.last_error:
        raise BusError(f"reader failed: {reader.last_error}")
    return Timed(result.frames, result.wall_s, result.cpu_s, published=reader.published)


def summarise(stage: str, passes: list[Timed], raw_fps: float) -> StageResult:
    """The median pass of a stage as a report row."""
    best = median_pass(passes)
    fps = best.fps
    result = StageResult(
        stage=stage,
        frames=best.frames,
        fps=fps,
        ms_per_frame=1000.0 / fps if fps else float("inf"),
        cpu_ms_per_frame=1000.0 * best.cpu_s / best.frames if best.frames else float("inf"),
        vs_raw_decode=fps / raw_fps if raw_fps else 0.0,
        runs_fps=[round(p.fps, 1) for p in passes],
    )
    if best.published is not None:
        result.published = best.published
        result.published_fps = best.published / best.wall_s if best.wall_s else 0.0
        result.published_per_cpu_s = best.published / best.cpu_s if best.cpu_s else 0.0
    return result


@dataclass
class IngestRun:
    """The fixed inputs of one video's measurement."""

    path: Path
    limits: Limits
    settings: IngestSettings
    fps: float
    repeats: int
    kafka: Publisher | None
    kafka_topic: str
    memory_topic: str = "facestream.bench.frames"


def _steps(
    run: IngestRun, prepared: Prepared, size: tuple[int, int], jpegs: list[bytes]
) -> dict[str, Callable[[], Timed]]:
    """One timed pass of each stage, by name (Kafka stages only when a Kafka publisher is given)."""
    settings, limits, fps = run.settings, run.limits, run.fps
    stop_after = len(prepared.admitted) if limits.frames is not None else None
    steps: dict[str, Callable[[], Timed]] = {
        RAW_DECODE: lambda: raw_decode(run.path, limits),
        "decode (open_capture + read)": lambda: project_decode(run.path, limits, settings),
        f"pace (Pacer {fps:g} fps)": lambda: pace(prepared.stamps, fps),
        f"scale (max width {settings.max_width})": lambda: scale(
            prepared.frames, settings.max_width
        ),
        f"JPEG encode (q{settings.jpeg_quality})": lambda: encode(
            prepared.scaled, settings.jpeg_quality
        )[0],
        "publish + flush, MemoryBus": lambda: publish(
            MemoryBus().publisher(), run.memory_topic, jpegs, size, settings.read_timeout_s
        ),
        "whole chain, MemoryBus": lambda: chain(
            run.path, MemoryBus().publisher(), run.memory_topic, fps, settings, limits, stop_after
        ),
    }
    if (kafka := run.kafka) is not None:
        steps["publish + flush, KafkaBus"] = lambda: publish(
            kafka, run.kafka_topic, jpegs, size, settings.read_timeout_s
        )
        steps["whole chain, KafkaBus"] = lambda: chain(
            run.path, kafka, run.kafka_topic, fps, settings, limits, stop_after
        )
    return steps


def _timed_stages(
    run: IngestRun, prepared: Prepared, result: VideoResult, jpegs: list[bytes]
) -> dict[str, list[Timed]]:
    """Every stage, ``repeats`` times, interleaved so slow drifts of the VM hit all stages alike.

    A failed pass (a broker restarting under the bench, say) is reported and left out of the
    median; after ``MAX_KAFKA_FAILURES`` the Kafka stages stop for this video, so a dead broker
    costs a couple of timeouts, not one per pass.
    """
    steps = _steps(run, prepared, (result.published_width, result.published_height), jpegs)
    passes: dict[str, list[Timed]] = {}
    kafka_failures = 0
    for attempt in range(1, run.repeats + 1):
        for name, step in steps.items():
            if kafka_failures >= MAX_KAFKA_FAILURES and "Kafka" in name:
                continue
            try:
                passes.setdefault(name, []).append(step())
            except BusError as error:
                result.errors.append(
                    f"{name}, pass {attempt} of {run.repeats} failed (left out): {error}"
                )
                kafka_failures += "Kafka" in name
    if kafka_failures >= MAX_KAFKA_FAILURES:
        result.errors.append(f"Kafka stages stopped after {kafka_failures} failed passes")
    return {name: runs for name, runs in passes.items() if runs}


STAGE_ORDER = (
    RAW_DECODE,
    "decode",
    "pace",
    "scale",
    "JPEG",
    "publish + flush, MemoryBus",
    "publish + flush, KafkaBus",
    "whole chain, MemoryBus",
    "whole chain, KafkaBus",
)


def _order(name: str) -> int:
    return next(i for i, prefix in enumerate(STAGE_ORDER) if name.startswith(prefix))


def measure_video(run: IngestRun) -> VideoResult:
    """All stages of one video, with cameras per core derived from the whole-chain passes."""
    result = VideoResult(video=run.path.name)
    prepared = prepare(run.path, run.limits, run.settings, run.fps)
    if not prepared.frames:
        result.errors.append("no frames decoded")
        return result
    result.height, result.width = prepared.frames[0].shape[:2]
    result.published_height, result.published_width = prepared.scaled[0].shape[:2]
    jpegs = encode(prepared.scaled, run.settings.jpeg_quality)[1]
    result.source_fps = prepared.source_fps
    result.frames_read, result.frames_admitted = len(prepared.stamps), len(prepared.admitted)
    result.mean_jpeg_bytes = float(np.mean([len(j) for j in jpegs]))
    passes = _timed_stages(run, prepared, result, jpegs)
    raw_fps = median_pass(passes[RAW_DECODE]).fps
    for name in sorted(passes, key=_order):
        stage = summarise(name, passes[name], raw_fps)
        result.stages.append(stage)
        if stage.published_fps is not None and stage.published_per_cpu_s is not None:
            result.cameras_per_core[name.rsplit(", ", 1)[1]] = {
                "by_wall_time": stage.published_fps / run.fps,
                "by_cpu_time": stage.published_per_cpu_s / run.fps,
            }
    return result
