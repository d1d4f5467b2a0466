"""End to end on the real servers: RTSP server -> ingestor -> Kafka -> detector, as OS processes.

Covers what the streaming backbone promises: ordered, fully accounted frames; at-least-once across
a kill -9; recovery from Kafka, Redis and RTSP server restarts; dead letters for bad input;
Prometheus scraping the services.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import numpy as np
import pytest

from shared.bus.kafka import KafkaBus
from shared.cameras import CameraSpec
from shared.images import encode_jpeg
from shared.schemas import FrameMeta, Topics
from tests.conftest import PROMETHEUS_URL, RTSP_URL, infra, require_server
from tests.helpers import wait_for
from tests.stack import RUN_DIR, Stack, TopicReader, faces_seq, frame_seqs, skip_group_to_end

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.rtsp]


def test_rtsp_frames_reach_kafka_in_order_and_every_seq_is_accounted(stack: Stack, unique) -> None:
    camera = f"rtsp-{unique}"
    frames = TopicReader(stack.kafka, Topics.FRAMES, camera)
    stack.registry.put(CameraSpec(id=camera, url=f"{RTSP_URL}/cam", fps=15))
    ingestor = stack.start("ingestor")

    # /cam plays the clip once and ends the stream; the ingestor then reconnects.
    wait_for(
        lambda: (
            ingestor.metric("facestream_camera_reconnects_total", camera=camera) >= 1
            and frames.read()
        ),
        60,
        "the end of the first pass",
    )
    stack.registry.remove(camera)
    wait_for(lambda: ingestor.metric("facestream_camera_up", camera=camera) == 0, 20)
    captured = ingestor.metric("facestream_camera_frames_captured_total", camera=camera)
    published = ingestor.metric("facestream_camera_frames_published_total", camera=camera)
    dropped = ingestor.metric("facestream_camera_frames_dropped_total", camera=camera)
    wait_for(lambda: len(frames.read()) >= published, 30, "every published frame")
    records = frames.read()
    frames.close()

    seqs = frame_seqs(records)
    assert captured >= 275  # the whole clip was read over RTSP
    assert len(seqs) == published
    assert seqs == sorted(set(seqs))  # in order, no duplicates, on the camera's one partition
    assert len({r.partition for r in records}) == 1
    assert published + dropped == captured  # every sequence number: delivered or counted
    assert max(seqs) < captured
    meta = FrameMeta.model_validate({k: v.decode() for k, v in records[0].headers})
    assert (meta.width, meta.height) == (640, 360)
    assert 0.4 < published / captured < 0.6  # 29.97 fps paced to 15 fps


def test_kill_9_of_the_detector_loses_no_frame(stack: Stack, unique) -> None:
    camera = f"kill-{unique}"
    skip_group_to_end(stack.kafka, "facestream-detector", Topics.FRAMES)
    frames = TopicReader(stack.kafka, Topics.FRAMES, camera)
    faces = TopicReader(stack.kafka, Topics.FACES, camera)
    stack.registry.put(CameraSpec(id=camera, url=f"{RTSP_URL}/cam", fps=15))
    ingestor = stack.start("ingestor")
    detector = stack.start("detector")

    wait_for(lambda: len(faces.read()) >= 20, 60, "the detector to get going")
    detector.kill(signal.SIGKILL)  # mid-stream, with a batch in hand
    assert len(frames.read()) < 130, "the stream should still be running"
    stack.start("detector")

    wait_for(lambda: ingestor.metric("facestream_camera_reconnects_total", camera=camera) >= 1, 60)
    stack.registry.remove(camera)
    wait_for(lambda: ingestor.metric("facestream_camera_up", camera=camera) == 0, 20)
    count = ingestor.metric("facestream_camera_frames_published_total", camera=camera)
    wait_for(lambda: len(frames.read()) >= count, 30, "every published frame")
    published = set(frame_seqs(frames.read()))
    wait_for(
        lambda: published <= {faces_seq(r) for r in faces.read()},
        90,
        "every frame to come out of the detector",
    )
    out = [faces_seq(r) for r in faces.read()]
    assert set(out) == published  # at-least-once: nothing lost ...
    print(f"{len(out) - len(set(out))} duplicate(s) after kill -9")  # ... duplicates allowed


def test_services_survive_kafka_and_redis_restarts(stack: Stack, unique) -> None:
    camera = f"restart-{unique}"
    skip_group_to_end(stack.kafka, "facestream-detector", Topics.FRAMES)
    faces = TopicReader(stack.kafka, Topics.FACES, camera)
    stack.registry.put(CameraSpec(id=camera, url=f"{RTSP_URL}/loop", fps=10))
    ingestor = stack.start("ingestor")
    detector = stack.start("detector")
    wait_for(lambda: len(faces.read()) >= 10, 60, "faces before the restarts")

    try:
        infra("restart", "kafka")
        before = len(faces.read())
        wait_for(lambda: len(faces.read()) > before + 10, 90, "faces after the Kafka restart")
        errors_before_redis = ingestor.metric("facestream_errors_total", reason="registry")
        infra("stop", "redis")
        wait_for(
            lambda: (
                ingestor.metric("facestream_errors_total", reason="registry") > errors_before_redis
            ),
            20,
            "the ingestor to notice Redis is gone",
        )
        assert ingestor.metric("facestream_camera_up", camera=camera) == 1  # cameras keep going
    finally:
        infra("start", "kafka", "redis")
    wait_for(lambda: ingestor.metric("facestream_errors_total", reason="registry") >= 1, 5)
    before = len(faces.read())
    wait_for(lambda: len(faces.read()) > before + 10, 60, "faces after the Redis restart")
    assert ingestor.alive() and detector.alive()
    assert stack.registry.get(camera) is not None  # the registry survived (append-only file)
    errors = ingestor.metric("facestream_errors_total") + detector.metric("facestream_errors_total")
    assert errors > 0  # the outage was counted, not hidden


def test_rtsp_server_restart_and_stall_are_detected_and_recovered(stack: Stack, unique) -> None:
    camera = f"rtsp-restart-{unique}"
    stack.registry.put(CameraSpec(id=camera, url=f"{RTSP_URL}/loop", fps=10))
    ingestor = stack.start("ingestor")
    published = lambda: ingestor.metric("facestream_camera_frames_published_total", camera=camera)  # noqa: E731
    wait_for(lambda: published() > 10, 30, "frames")

    try:
        infra("stop", "rtsp")
        wait_for(lambda: ingestor.metric("facestream_camera_up", camera=camera) == 0, 10, "down")
        infra("start", "rtsp")
        restarted = time.monotonic()
        count = published()
        wait_for(lambda: published() > count, 30, "frames after the RTSP server restart")
        # Bound: one full backoff (2 s max) + opening the stream (3 s timeout) + slack.
        assert time.monotonic() - restarted < 2 + 3 + 5

        pid = int((RUN_DIR / "rtsp.pid").read_text())
        timeouts = ingestor.metric("facestream_camera_reconnects_total", reason="read_timeout")
        os.kill(pid, signal.SIGSTOP)  # the server stays connected but sends nothing
        stalled = time.monotonic()
        wait_for(lambda: ingestor.metric("facestream_camera_up", camera=camera) == 0, 15, "stall")
        assert (
            ingestor.metric("facestream_camera_reconnects_total", reason="read_timeout") > timeouts
        )
        assert time.monotonic() - stalled < 3 + 5  # the 3 s read timeout, plus slack
        os.kill(pid, signal.SIGCONT)
        count = published()
        wait_for(lambda: published() > count, 30, "frames after the stall")
    finally:
        infra("start", "rtsp")
    assert ingestor.alive()


def test_bad_messages_on_kafka_are_dead_lettered_and_the_detector_keeps_going(
    stack, unique
) -> None:
    camera = f"bad-{unique}"
    skip_group_to_end(stack.kafka, "facestream-detector", Topics.FRAMES)
    dead = TopicReader(stack.kafka, Topics.DEAD_LETTERS, camera)
    faces = TopicReader(stack.kafka, Topics.FACES, camera)
    detector = stack.start("detector")
    publisher = KafkaBus(stack.kafka).publisher()
    good = FrameMeta(camera_id=camera, seq=9, capture_ts=time.time(), width=64, height=48)
    jpeg = encode_jpeg(np.zeros((48, 64, 3), np.uint8))
    publisher.publish(Topics.FRAMES, b"\xff\xd8garbage", camera, good.to_headers())
    publisher.publish(Topics.FRAMES, jpeg, camera, {"schema": "frame/7"})
    publisher.publish(Topics.FRAMES, jpeg, camera, {})
    publisher.publish(Topics.FRAMES, jpeg, camera, good.to_headers())
    publisher.flush()
    publisher.close()

    wait_for(lambda: len(dead.read()) >= 3 and faces.read(), 60, "dead letters and the good frame")
    reasons = [dict(r.headers)["dlq.reason"].decode() for r in dead.read()]
    assert reasons == ["corrupt_image", "unsupported_schema", "missing_header"]
    assert dead.read()[0].value == b"\xff\xd8garbage"
    assert detector.alive()
    assert detector.metric("facestream_dead_letters_total") >= 3


@pytest.mark.prometheus
def test_prometheus_scrapes_the_services(stack: Stack, unique) -> None:
    require_server("Prometheus", PROMETHEUS_URL.split("//")[1])
    camera = f"prom-{unique}"
    stack.registry.put(CameraSpec(id=camera, url=f"{RTSP_URL}/loop", fps=10))
    ingestor = stack.start("ingestor")
    detector = stack.start("detector")
    targets = RUN_DIR / "prometheus" / "targets.json"
    targets.write_text(
        json.dumps(
            [
                {"targets": [f"127.0.0.1:{p.port}"], "labels": {"process": p.name}}
                for p in (ingestor, detector)
            ]
        )
    )
    query = f'facestream_camera_frames_published_total{{camera="{camera}"}}'

    def scraped() -> float:
        url = f"{PROMETHEUS_URL}/api/v1/query?query={urllib.parse.quote(query)}"
        with urllib.request.urlopen(url, timeout=5) as reply:
            result = json.load(reply)["data"]["result"]
        return float(result[0]["value"][1]) if result else 0.0

    wait_for(lambda: scraped() > 0, 30, "Prometheus to scrape the ingestor")
    url = f"{PROMETHEUS_URL}/api/v1/query?query={urllib.parse.quote('facestream_frames_in_total')}"
    wait_for(lambda: json.load(urllib.request.urlopen(url, timeout=5))["data"]["result"], 30)
    targets.write_text("[]")


def test_cameras_are_added_and_removed_from_the_cli_while_the_ingestor_runs(stack, unique) -> None:
    camera = f"cli-{unique}"
    ingestor = stack.start("ingestor")

    def cli(*args: str) -> subprocess.CompletedProcess:
        env = {**os.environ, **stack.env}
        command = [sys.executable, "-m", "services.cli", "cameras", *args]
        return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)

    added = cli("add", camera, f"{RTSP_URL}/loop", "--fps", "10")
    assert added.returncode == 0, added.stderr
    published = lambda: ingestor.metric("facestream_camera_frames_published_total", camera=camera)  # noqa: E731
    wait_for(lambda: published() > 5, 30, "frames of the camera added from the CLI")
    assert camera in cli("list").stdout
    assert cli("remove", camera).returncode == 0
    wait_for(lambda: ingestor.metric("facestream_camera_up", camera=camera) == 0, 20, "camera stop")
    assert ingestor.alive()
