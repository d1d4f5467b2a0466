"""Capture-to-event latency of the whole pipeline over Kafka, on the Hamilton clip at 15 fps.

    bash deploy/local/infra.sh start && source deploy/local/env.sh
    .venv/bin/python -m bench.pipeline [--fps 15] [--seconds 60]

Starts the ingestor, detector, liveness (unless ``FACESTREAM_LIVENESS__GATE=false``) and
recognizer as separate processes on the local Kafka and Redis,
enrolls lin_manuel_miranda from his one photo, and streams the clip over RTSP (looped, so the
run lasts ``--seconds``). For every frame with a face it measures capture (the ingestor's
``capture_ts``) to the recognizer's result for that frame (its embeddings message, published
for this run), and for every event capture-to-event. The same-run reference is the ingest-only
latency: capture to the frame's arrival on Kafka. Targets: keeps up with 15 fps (consumer lag
stays bounded) and p50 capture-to-event <= 250 ms.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
from kafka import KafkaConsumer, TopicPartition

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.cameras import skip_groups_to_end  # noqa: E402
from shared.bus.kafka import KafkaBus, connection_options  # noqa: E402
from shared.cameras import CameraSpec, RedisCameraRegistry  # noqa: E402
from shared.redis_client import create_redis  # noqa: E402
from shared.schemas import EmbeddingsMessage, FrameMeta, Topics, parse_event  # noqa: E402
from shared.settings import Settings  # noqa: E402


def tail(settings: Settings, topics: list[str]) -> KafkaConsumer:
    """A consumer positioned at the current end of ``topics``."""
    consumer = KafkaConsumer(**connection_options(settings.kafka), enable_auto_commit=False)
    partitions = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t)]
    consumer.assign(partitions)
    consumer.seek_to_end(*partitions)
    for tp in partitions:
        consumer.position(tp)
    return consumer


def start(name: str, env: dict[str, str], log_dir: Path) -> subprocess.Popen:
    log = open(log_dir / f"{name}.log", "wb")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", name], env=env, stdout=log, stderr=log
    )


def percentiles(values: list[float]) -> str:
    if not values:
        return "no samples"
    p50, p99 = np.percentile(values, [50, 99])
    return f"p50 {p50:7.1f} ms   p99 {p99:7.1f} ms   n={len(values)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--seconds", type=float, default=60.0)
    args = parser.parse_args()

    run = uuid.uuid4().hex[:8]
    prefix = f"bench-{run}"
    env = {
        **os.environ,
        "FACESTREAM_BUS": "kafka",
        "FACESTREAM_STORE": "redis",
        "FACESTREAM_REDIS__KEY_PREFIX": prefix,
        "FACESTREAM_RECOGNIZER__PUBLISH_EMBEDDINGS": "true",
        # Two model services on two cores: one TensorFlow thread each, or they oversubscribe.
        "FACESTREAM_FACE__TF_THREADS": os.environ.get("FACESTREAM_FACE__TF_THREADS", "1"),
    }
    settings = Settings(
        store="redis", redis={**Settings().redis.model_dump(), "key_prefix": prefix}
    )
    KafkaBus(settings.kafka).ensure_topics(Topics.ALL)
    skip_groups_to_end(settings)  # a backlog left by an earlier run is not this run's latency
    from shared.face.factory import build_identity

    identity = build_identity(settings)
    photo = settings.shared_data / "faces" / "people" / "enroll" / "lin_manuel_miranda" / "img1.png"
    identity.enroll("lin_manuel_miranda", photo.read_bytes())
    consumer = tail(settings, [Topics.FRAMES, Topics.EMBEDDINGS, Topics.EVENTS])

    log_dir = Path(__file__).parent / "out" / f"pipeline-{run}"
    log_dir.mkdir(parents=True, exist_ok=True)
    processes = []
    gate = settings.liveness.gate  # FACESTREAM_LIVENESS__GATE=false measures without liveness
    for name in ("recognizer", *(["liveness"] if gate else []), "detector", "ingestor"):
        processes.append(start(name, {**env, "FACESTREAM_METRICS_PORT": "0"}, log_dir))
    registry = RedisCameraRegistry(create_redis(settings.redis), prefix)
    rtsp = os.environ.get("FACESTREAM_RTSP_URL", "rtsp://127.0.0.1:38554")
    camera = f"hamilton-{run}"
    time.sleep(8)  # let the services load their models before frames flow
    registry.put(CameraSpec(id=camera, url=f"{rtsp}/loop", fps=args.fps))

    ingest, recognised, events, kinds = [], [], [], []
    frames = 0
    started = time.time()
    try:
        while time.time() - started < args.seconds:
            for batch in consumer.poll(timeout_ms=200).values():
                now = time.time()
                for record in batch:
                    if record.key != camera.encode():
                        continue
                    if record.topic == Topics.FRAMES:
                        frames += 1
                        meta = FrameMeta.model_validate({k: v.decode() for k, v in record.headers})
                        ingest.append((now - meta.capture_ts) * 1000)
                    elif record.topic == Topics.EMBEDDINGS:
                        message = EmbeddingsMessage.model_validate_json(record.value)
                        recognised.append((now - message.capture_ts) * 1000)
                    else:
                        event = parse_event(record.value)
                        kinds.append(
                            f"{event.type}{':' + event.person_name if event.person_name else ''}"
                        )
                        if event.type != "ended":
                            events.append((now - event.last_seen_ts) * 1000)
    finally:
        registry.remove(camera)
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(30)
        identity.delete(identity.resolve("lin_manuel_miranda").id)
    elapsed = time.time() - started
    print(f"Hamilton clip over RTSP at {args.fps:g} fps for {elapsed:.0f} s; logs in {log_dir}")
    print(f"  frames published:                 {frames} ({frames / elapsed:.1f} fps)")
    print(
        f"  frames recognised (with a face):  {len(recognised)} ({len(recognised) / elapsed:.1f} fps)"
    )
    print(f"  capture -> on Kafka (reference):  {percentiles(ingest)}")
    print(f"  capture -> recognised:            {percentiles(recognised)}")
    print(f"  capture -> event:                 {percentiles(events)}")
    if ingest and recognised:
        print(
            f"  ratio p50 recognised / ingest:    {np.median(recognised) / np.median(ingest):.1f}"
        )
    print(f"  events: {', '.join(kinds)}")


if __name__ == "__main__":
    main()
