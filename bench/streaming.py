"""Streaming benchmark: ingest throughput per camera, and Kafka publish-to-consume latency.

Run from the repository root with the local servers up (``deploy/local/infra.sh start``)::

    source deploy/local/env.sh && .venv/bin/python -m bench.streaming [--json bench/out/streaming.json]

Prints a plain-text report; every ratio is against a reference measured in the same process
(raw ``cv2.VideoCapture`` decode for ingest, the in-memory bus for latency), so the report can be
read on its own, whatever the machine. Without a reachable Kafka it says so and still runs the
in-memory parts.
"""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from bench import ingest, latency
from bench.machine import machine_info, shared_data_dir
from bench.timing import Limits
from shared.bus.base import BusError, Publisher
from shared.bus.kafka import KafkaBus, connection_options
from shared.bus.memory import MemoryBus
from shared.settings import Settings, get_settings

VIDEOS = ("hamilton_clip_640x360.mp4", "street_crowd_1080p.mp4")
PAYLOAD_SIZES = (50_000, 500_000)
WIDTH = 100


@dataclass
class KafkaTarget:
    """The bench's own topics on the configured broker, or why there is no broker to use."""

    bootstrap: str
    frames_topic: str
    latency_topic: str
    group: str
    bus: KafkaBus | None = None
    error: str | None = None
    created: list[str] = field(default_factory=list)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.streaming", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--frames", type=int, default=None, help="frames read per video per pass (default: all)"
    )
    parser.add_argument(
        "--seconds", type=float, default=20.0, help="cap on one timed pass (default 20)"
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed passes per stage; the median is reported"
    )
    parser.add_argument(
        "--messages", type=int, default=300, help="latency messages per payload size (300)"
    )
    parser.add_argument("--fps", type=float, default=15.0, help="pacing target (15)")
    parser.add_argument("--jpeg-quality", type=int, default=85, help="JPEG quality (85)")
    parser.add_argument(
        "--max-width",
        type=int,
        default=None,
        help="scale frames down to this width (default: FACESTREAM_INGEST__MAX_WIDTH); 0: never",
    )
    parser.add_argument("--no-kafka", action="store_true", help="skip every Kafka measurement")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.messages < 1 or args.seconds <= 0:
        parser.error("--repeats and --messages must be >= 1 and --seconds > 0")
    if args.frames is not None and args.frames < 1:
        parser.error("--frames must be >= 1")
    return args


def out(line: str = "") -> None:
    """Print a report line at once: the report is read while the slow parts still run."""
    print(line, flush=True)


def heading(title: str) -> None:
    out()
    out(title)
    out("=" * min(len(title), WIDTH))


# --- Kafka topics ------------------------------------------------------------------------------


def connect_kafka(settings: Settings, skip: bool) -> KafkaTarget:
    """Create the bench's uniquely named topics; the first failure marks Kafka unreachable."""
    suffix = uuid.uuid4().hex[:12]
    target = KafkaTarget(
        bootstrap=settings.kafka.bootstrap_servers,
        frames_topic=f"facestream.bench.frames-{suffix}",
        latency_topic=f"facestream.bench.latency-{suffix}",
        group=f"facestream-bench-{suffix}",
    )
    if skip:
        target.error = "skipped (--no-kafka)"
        return target
    bus = KafkaBus(settings.kafka)
    try:
        bus.ensure_topics([target.frames_topic, target.latency_topic])
    except BusError as error:
        target.error = str(error)
        return target
    target.bus = bus
    target.created = [target.frames_topic, target.latency_topic]
    return target


def delete_topics(settings: Settings, target: KafkaTarget) -> None:
    """Remove the bench's topics so repeated runs leave nothing behind on the broker."""
    if not target.created:
        return
    try:
        admin = KafkaAdminClient(**connection_options(settings.kafka))
        try:
            admin.delete_topics(target.created)
        finally:
            admin.close()
    except KafkaError as error:
        out(f"(could not delete the bench topics {target.created}: {error})")


@contextmanager
def kafka_publisher(target: KafkaTarget) -> Iterator[Publisher | None]:
    """A connected, warmed-up Kafka publisher, or None (with ``target.error`` set) if there is none."""
    if target.bus is None:
        yield None
        return
    try:
        publisher = target.bus.publisher()
        publisher.publish(target.frames_topic, b"warm-up", key=ingest.CAMERA_ID)
        publisher.flush(timeout_s=30)
    except BusError as error:
        target.error = str(error)
        yield None
        return
    try:
        yield publisher
    finally:
        publisher.close()


# --- report ------------------------------------------------------------------------------------


def report_machine(info: dict[str, str], args: argparse.Namespace, target: KafkaTarget) -> None:
    heading("facestream streaming benchmark")
    for label, value in info.items():
        out(f"  {label:<14}{value}")
    status = "reachable" if target.error is None else "NOT USED"
    out(f"  {'Kafka at':<14}{target.bootstrap} ({status})")
    frames = "all" if args.frames is None else str(args.frames)
    out(
        f"  {'Settings':<14}{args.repeats} timed passes per stage (median shown),"
        f" frames per video: {frames}, at most {args.seconds:g} s per pass"
    )
    out(
        f"  {'':<14}pacing {args.fps:g} fps, JPEG quality {args.jpeg_quality},"
        f" {args.messages} latency messages per payload size"
    )
    if target.error is not None:
        out()
        out(f"  KAFKA NOT REACHABLE at {target.bootstrap}: {target.error}")
        out("  Every KafkaBus figure is skipped; the in-memory figures follow. To include Kafka:")
        out("  bash deploy/local/infra.sh start && source deploy/local/env.sh, then rerun.")


def report_video(video: ingest.VideoResult, fps: float, kafka_error: str | None) -> None:
    heading(f"Ingest, one camera: {video.video}")
    if not video.stages:
        out(f"  not measured: {'; '.join(video.errors)}")
        return
    out(
        f"  {video.width}x{video.height} at {video.source_fps:.2f} fps; {video.frames_read} frames"
        f" read, {video.frames_admitted} kept by the pacer at {fps:g} fps, published at"
        f" {video.published_width}x{video.published_height};"
        f" mean JPEG {video.mean_jpeg_bytes / 1000:.1f} KB"
    )
    out()
    out(
        f"  {'stage':<34}{'frames':>7}{'frames/s':>14}{'ms/frame':>11}{'CPU ms/fr':>11}"
        f"{'x raw':>10}"
    )
    for stage in video.stages:
        out(
            f"  {stage.stage:<34}{stage.frames:>7}{stage.fps:>14,.1f}{stage.ms_per_frame:>11.4g}"
            f"{stage.cpu_ms_per_frame:>11.4g}{stage.vs_raw_decode:>10,.2f}"
        )
    for stage in video.stages:
        if stage.published is not None:
            out(
                f"    {stage.stage}: {stage.published} frames published,"
                f" {stage.published_fps:.1f} published frames/s"
            )
    out()
    out(
        f"  Cameras at {fps:g} fps one core could carry (whole-chain published frames/s / {fps:g}):"
    )
    for bus, cameras in video.cameras_per_core.items():
        out(
            f"    {bus + ':':<11}{cameras['by_wall_time']:>6.1f} by wall time of one reader thread,"
            f" {cameras['by_cpu_time']:.1f} by process CPU time"
        )
    if kafka_error is not None:
        out(f"  KafkaBus rows: NOT MEASURED ({kafka_error})")
    for error in video.errors:
        out(f"  ERROR {error}")


def report_notes() -> None:
    out()
    out("  frames/s: frames through the stage per wall second (chain: source frames read).")
    out("  CPU ms/fr: process CPU time (all threads) per frame; FFmpeg decodes with >1 thread.")
    out("  x raw: stage frames/s / raw-decode frames/s of the same file in this run; below 1 the")
    out("  stage costs more per frame than decoding it, above 1 less.")
    out("  Whole chain = services.ingestor.camera.CameraReader (open, read, frozen-stream check,")
    out("  pacing, encode, publish + flush per frame, metrics), file read as fast as possible.")
    out("  Kafka rows wait on the broker's acks (acks=all); the broker's own CPU, on this same")
    out("  machine, is not in the process CPU time. A 30 fps source paced to 15 fps costs two")
    out("  decodes per published frame, so cameras per core depend on the source's frame rate.")


def report_latency(results: list[latency.LatencyResult], target: KafkaTarget) -> None:
    heading("Publish-to-consume latency, one message at a time (publish + flush, wait, next)")
    if target.error is None:
        out(f"  Kafka topic {target.latency_topic} (new), consumer group {target.group} (new)")
    out("  payloads: random bytes; send time stamped in a header just before publish")
    out()
    out(
        f"  {'bus':<11}{'payload':>9}{'received':>10}{'mean ms':>10}{'p50 ms':>9}"
        f"{'p99 ms':>9}{'max ms':>9}"
    )
    for r in results:
        got = f"{r.received}/{r.sent}"
        if r.p50_ms is None:
            out(f"  {r.bus:<11}{r.payload_bytes // 1000:>6} KB{got:>10}   {r.error or 'none'}")
            continue
        out(
            f"  {r.bus:<11}{r.payload_bytes // 1000:>6} KB{got:>10}{r.mean_ms:>10.2f}"
            f"{r.p50_ms:>9.2f}{r.p99_ms:>9.2f}{r.max_ms:>9.2f}"
        )
    for size in PAYLOAD_SIZES:
        ratio = latency_ratio(results, size)
        if ratio:
            out(
                f"  KafkaBus / MemoryBus at {size // 1000} KB: p50 x{ratio['p50']:.1f},"
                f" p99 x{ratio['p99']:.1f}"
            )
    if target.error is not None:
        out(f"  KafkaBus: NOT MEASURED ({target.error})")


def latency_ratio(results: list[latency.LatencyResult], size: int) -> dict[str, float] | None:
    """Kafka over in-memory latency at one payload size, where both were measured."""
    by_bus = {r.bus: r for r in results if r.payload_bytes == size and r.p50_ms is not None}
    kafka, memory = by_bus.get("KafkaBus"), by_bus.get("MemoryBus")
    if kafka is None or memory is None or not memory.p50_ms or not memory.p99_ms:
        return None
    assert kafka.p50_ms is not None and kafka.p99_ms is not None
    return {"p50": kafka.p50_ms / memory.p50_ms, "p99": kafka.p99_ms / memory.p99_ms}


# --- measurements ------------------------------------------------------------------------------


def run_ingest(
    args: argparse.Namespace, settings: Settings, target: KafkaTarget
) -> list[ingest.VideoResult]:
    """Both videos, every stage; a missing video is reported, not fatal."""
    ingest_settings = settings.ingest.model_copy(
        update={"file_realtime": False, "jpeg_quality": args.jpeg_quality}
    )
    if args.max_width is not None:
        ingest_settings.max_width = args.max_width or None
    limits = Limits(frames=args.frames, seconds=args.seconds)
    data = shared_data_dir(settings)
    results = []
    with kafka_publisher(target) as kafka:
        for name in VIDEOS:
            path = data / "video" / name
            if not path.is_file():
                result = ingest.VideoResult(video=name, errors=[f"{path} not found"])
                result.errors.append("set FACESTREAM_SHARED_DATA to the shared data folder")
            else:
                run = ingest.IngestRun(
                    path,
                    limits,
                    ingest_settings,
                    args.fps,
                    args.repeats,
                    kafka,
                    target.frames_topic,
                )
                result = ingest.measure_video(run)
            report_video(result, args.fps, target.error)
            results.append(result)
    report_notes()
    return results


def run_latency(args: argparse.Namespace, target: KafkaTarget) -> list[latency.LatencyResult]:
    """The in-memory reference first, then Kafka on the bench's own topic and group."""
    sizes = list(PAYLOAD_SIZES)
    results = latency.measure(
        MemoryBus(retention_messages=64),
        "MemoryBus",
        "bench.latency",
        "bench",
        sizes,
        args.messages,
    )
    if target.bus is not None:
        try:
            results += latency.measure(
                target.bus, "KafkaBus", target.latency_topic, target.group, sizes, args.messages
            )
        except BusError as error:
            target.error = f"latency run failed: {error}"
    return results


def write_json(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    out()
    out(f"Figures written to {path}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = get_settings()
    info = machine_info()
    target = connect_kafka(settings, args.no_kafka)
    try:
        report_machine(info, args, target)
        videos = run_ingest(args, settings, target)
        lat = run_latency(args, target)
        report_latency(lat, target)
    finally:
        delete_topics(settings, target)
    if args.json:
        write_json(
            args.json,
            {
                "machine": info,
                "settings": {k: v for k, v in vars(args).items() if k != "json"},
                "kafka": {"bootstrap": target.bootstrap, "error": target.error},
                "ingest": [asdict(v) for v in videos],
                "latency": [asdict(r) for r in lat],
                "latency_kafka_over_memory": {
                    f"{size // 1000}KB": latency_ratio(lat, size) for size in PAYLOAD_SIZES
                },
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
