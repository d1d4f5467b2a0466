"""Chaos run: faults during one stream, and what reaches the events topic (issue 13).

Over the real stack (local Kafka and Redis, the RTSP test server, the services as OS processes,
as the e2e tests run them) one camera streams the looping sample clip while, one after another,
each service is killed with SIGKILL and restarted, the Kafka broker is restarted and Redis is
restarted. Then the camera is removed and every open track must end. Run from the repository root
with the local servers up::

    bash deploy/local/infra.sh start kafka redis rtsp && source deploy/local/env.sh
    .venv/bin/python -m bench.chaos [--seconds 100] [--json bench/out/chaos.json]

What it counts, from the topics themselves (the ground truth, not the services' metrics):

* **frames lost**: frames on ``facestream.frames`` that never came out of the detector (neither
  as ``faces/1`` nor as a dead letter);
* **tracks lost**: tracks of the faces the recognizer had to process (the first copy of each
  frame, by ``(seq, capture_ts)``; a detector restarted after SIGKILL replays its uncommitted
  frames under new track ids, and the recognizer rightly skips those copies) that have no
  ``started`` event;
* **tracks without ended**: tracks with ``started`` but no ``ended`` (target 0);
* **duplicates**: events of a track repeating a type it already had (at-least-once delivery:
  a killed service replays its uncommitted batch), and ``identified`` events without a name.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition

from shared.bus.kafka import connection_options
from shared.cameras import CameraSpec
from shared.schemas import FacesMessage, RecognitionEvent, Topics, parse_event
from shared.settings import KafkaSettings, Settings
from tests.conftest import RTSP_URL, infra
from tests.stack import Stack, skip_group_to_end

SERVICES = ("recognizer", "liveness", "detector", "ingestor")
GROUPS = {
    "facestream-detector": [Topics.FRAMES],
    "facestream-liveness": [Topics.FACES],
    "facestream-recognizer": [Topics.FACES, Topics.LIVENESS],
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chaos", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=100.0, help="length of the stream")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return parser.parse_args(argv)


class TopicSpan:
    """A topic's messages of one camera from the end it had at creation, read afresh each time.

    A consumer kept open across a broker restart can lose its place (and silently skip what was
    published meanwhile); reading the span again from saved offsets cannot.
    """

    def __init__(self, settings: KafkaSettings, topic: str, camera_id: str) -> None:
        self.settings, self.topic, self.key = settings, topic, camera_id.encode()
        consumer = KafkaConsumer(**connection_options(settings), enable_auto_commit=False)
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        self.start = consumer.end_offsets(parts)
        consumer.close()
        self.records: list = []

    def read(self) -> list:
        consumer = KafkaConsumer(**connection_options(self.settings), enable_auto_commit=False)
        try:
            ends = consumer.end_offsets(list(self.start))
            consumer.assign(list(self.start))
            for tp, offset in self.start.items():
                consumer.seek(tp, offset)
            records = []
            remaining = {tp for tp in self.start if ends[tp] > self.start[tp]}
            deadline = time.monotonic() + 60
            while remaining and time.monotonic() < deadline:
                for tp, batch in consumer.poll(timeout_ms=1000, max_records=2000).items():
                    records += [r for r in batch if r.offset < ends[tp] and r.key == self.key]
                    if consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
            self.records = sorted(records, key=lambda r: (r.partition, r.offset))
        finally:
            consumer.close()
        return self.records


def rss_mb(process) -> float:
    try:
        status = Path(f"/proc/{process.process.pid}/status").read_text()
    except OSError:
        return 0.0
    line = next((x for x in status.splitlines() if x.startswith("VmRSS")), "VmRSS: 0 kB")
    return int(line.split()[1]) / 1024


def enroll(settings: Settings, prefix: str) -> None:
    """Lin-Manuel Miranda from one photo, into this run's own gallery prefix."""
    from shared.face.factory import build_pipeline
    from shared.face.identity import IdentityService
    from shared.face.verification import Calibration
    from shared.gallery.redis_store import RedisGallery
    from shared.redis_client import create_redis

    photo = settings.shared_data / "faces/people/enroll/lin_manuel_miranda/img1.png"
    gallery = RedisGallery(create_redis(settings.redis), prefix)
    IdentityService(build_pipeline(settings), gallery, Calibration.load()).enroll(
        "lin_manuel_miranda", photo.read_bytes()
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = Settings()
    run = uuid.uuid4().hex[:8]
    redis = settings.redis.model_copy(update={"key_prefix": f"chaos-{run}"})
    enroll(settings, redis.key_prefix)
    for group, topics in GROUPS.items():
        for topic in topics:
            skip_group_to_end(settings.kafka, group, topic)
    camera = f"chaos-{run}"
    log_dir = Path(tempfile.mkdtemp(prefix="facestream-chaos-"))
    stack = Stack(settings.kafka, redis, log_dir)
    stack.env["FACESTREAM_RECOGNIZER__CAMERA_SILENCE_S"] = "30"  # the default, not the tests' 5 s
    readers = {
        t: TopicSpan(settings.kafka, t, camera)
        for t in (Topics.FRAMES, Topics.FACES, Topics.EVENTS, Topics.DEAD_LETTERS)
    }
    processes = {name: stack.start(name) for name in SERVICES}
    peak_rss: Counter[str] = Counter()
    sampling = threading.Event()

    def sample_rss() -> None:
        while not sampling.wait(1.0):
            for name, process in processes.items():
                peak_rss[name] = max(peak_rss[name], rss_mb(process))

    threading.Thread(target=sample_rss, daemon=True).start()
    faults: list[tuple[float, str]] = []
    try:
        stack.registry.put(CameraSpec(id=camera, url=f"{RTSP_URL}/loop", fps=15))
        started = time.monotonic()
        while not readers[Topics.EVENTS].read():
            if time.monotonic() - started > 180:
                raise SystemExit("no event within 180 s: is the stack working?")
            time.sleep(1.0)
        t0 = time.monotonic()
        step = args.seconds / 7
        schedule = [*(f"kill -9 {name}" for name in SERVICES), "restart kafka", "restart redis"]
        for i, fault in enumerate(schedule, start=1):
            time.sleep(max(0.0, t0 + i * step - time.monotonic()))
            print(f"{time.monotonic() - t0:6.1f}s  {fault}", flush=True)
            faults.append((round(time.monotonic() - t0, 1), fault))
            if fault.startswith("kill -9"):
                name = fault.split()[-1]
                processes[name].kill(signal.SIGKILL)
                processes[name] = stack.start(name)
            else:
                infra("restart", fault.split()[-1])
        time.sleep(max(0.0, t0 + args.seconds - time.monotonic()))
        stack.registry.remove(camera)
        print(f"{time.monotonic() - t0:6.1f}s  camera removed; waiting for the backlog", flush=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and undetected(readers):
            time.sleep(5.0)
        print(f"{time.monotonic() - t0:6.1f}s  waiting for every track to end", flush=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            events = decoded(readers[Topics.EVENTS].read())
            open_tracks = {e.track_id for e in events if e.type == "started"} - {
                e.track_id for e in events if e.type == "ended"
            }
            if not open_tracks:
                break
            time.sleep(2.0)
        time.sleep(5.0)  # late duplicates, if any
        for reader in readers.values():
            reader.read()
        print(f"{time.monotonic() - t0:6.1f}s  done", flush=True)
    finally:
        sampling.set()
        stack.close()
    figures = tally(readers, faults, dict(peak_rss))
    report(figures)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


def undetected(readers: dict) -> int:
    """Frames on the frames topic not (yet) out of the detector, as faces or dead letters."""
    frames = {frame_key(_headers(r)) for r in readers[Topics.FRAMES].read()}
    faces = {frame_key(json.loads(r.value)) for r in readers[Topics.FACES].read()}
    dead = {
        frame_key(_headers(r)) for r in readers[Topics.DEAD_LETTERS].read() if "seq" in _headers(r)
    }
    return len(frames - faces - dead)


def _headers(record) -> dict:
    return {k: v.decode(errors="replace") for k, v in record.headers}


def decoded(records: list) -> list[RecognitionEvent]:
    return [parse_event(r.value) for r in records]


def frame_key(headers: dict) -> tuple[int, float]:
    return int(headers["seq"]), float(headers["capture_ts"])


def tally(readers: dict, faults: list, peak_rss: dict) -> dict:
    frames = {
        frame_key({k: v.decode() for k, v in r.headers}) for r in readers[Topics.FRAMES].records
    }
    dead = [
        {k: v.decode(errors="replace") for k, v in r.headers}
        for r in readers[Topics.DEAD_LETTERS].records
    ]
    dead_frames = {frame_key(h) for h in dead if h.get("dlq.source_topic") == Topics.FRAMES}
    first_copy: dict[tuple[int, float], FacesMessage] = {}
    copies = 0
    for record in readers[Topics.FACES].records:
        faces = FacesMessage.model_validate_json(record.value)
        copies += 1
        first_copy.setdefault((faces.seq, faces.capture_ts), faces)
    must_start = {
        f.track_id
        for faces in first_copy.values()
        for f in faces.faces
        if f.chip_jpeg_b64 and f.track_id is not None
    }
    events = decoded(readers[Topics.EVENTS].records)
    by_track: dict[int, Counter] = {}
    for event in events:  # a track continues several detector tracks, each once
        kind = (event.type, getattr(event, "continued_as", None))
        by_track.setdefault(event.track_id, Counter())[kind] += 1
    started = {t for t, c in by_track.items() if c["started", None]}
    ended = {t for t, c in by_track.items() if c["ended", None]}
    duplicates: Counter[str] = Counter()
    for (kind, _), n in (item for c in by_track.values() for item in c.items()):
        if n > 1:
            duplicates[kind] += n - 1
    return {
        "faults": faults,
        "frames_published": len(frames),
        "frames_lost": len(frames - set(first_copy) - dead_frames),
        "frames_dead_lettered": len(dead_frames),
        "faces_messages": copies,
        "faces_duplicate_copies": copies - len(first_copy),
        "tracks_to_start": len(must_start),
        "tracks_lost": len(must_start - started),
        "tracks_started": len(started),
        "tracks_without_ended": len(started - ended),
        "events": dict(Counter(e.type for e in events)),
        "duplicate_events": dict(duplicates),
        "identified_without_name": sum(
            1 for e in events if e.type == "identified" and not e.person_name
        ),
        "dead_letters": dict(
            Counter((h.get("dlq.service", "?") + ":" + h.get("dlq.reason", "?")) for h in dead)
        ),
        "peak_rss_mb": {k: round(v) for k, v in peak_rss.items()},
    }


def report(figures: dict) -> None:
    print("\nchaos run")
    for at, fault in figures["faults"]:
        print(f"  {at:6.1f}s  {fault}")
    for key, value in figures.items():
        if key != "faults":
            print(f"  {key}: {value}")


if __name__ == "__main__":
    sys.exit(main())
