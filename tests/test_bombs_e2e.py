"""Decompression bombs sent to a real detector process on the real Kafka (issue 13: as frames they
grew the detector by 5.3 GB, and under the k8s 2 GiB limit it was OOM-killed on every restart).

The detector dead-letters each bomb with ``image_too_large``, processes the good frame sent after
them, and its peak RSS (``VmHWM`` of the process) does not move.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import pytest

from shared.bus.kafka import KafkaBus
from shared.images import encode_jpeg
from shared.schemas import FrameMeta, Topics
from tests.bombs import jpeg_bomb, png_bomb
from tests.helpers import wait_for
from tests.stack import Stack, TopicReader, skip_group_to_end

pytestmark = pytest.mark.data
K8S_LIMIT_MB = 2048


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM")


def test_bomb_frames_are_dead_lettered_by_the_detector_process_without_memory(
    kafka_settings, redis_settings, people_data: Path, tmp_path: Path, unique: str
) -> None:
    bus = KafkaBus(kafka_settings)
    bus.ensure_topics(Topics.ALL)
    skip_group_to_end(kafka_settings, "facestream-detector", Topics.FRAMES)
    camera = f"bombs-{unique}"
    faces = TopicReader(kafka_settings, Topics.FACES, camera)
    dead = TopicReader(kafka_settings, Topics.DEAD_LETTERS, camera)
    stack = Stack(kafka_settings, redis_settings, tmp_path)
    publisher = bus.publisher()
    try:
        detector = stack.start("detector")
        photo = cv2.imread(str(people_data / "probe" / "obama1.jpg"))
        height, width = photo.shape[:2]

        def send(seq: int, value: bytes, w: int, h: int) -> None:
            meta = FrameMeta(camera_id=camera, seq=seq, capture_ts=time.time(), width=w, height=h)
            publisher.publish(Topics.FRAMES, value, camera, meta.to_headers())
            publisher.flush(30)

        send(0, encode_jpeg(photo), width, height)  # warm up: models, TensorFlow's allocations
        wait_for(lambda: len(faces.read()) == 1, 120, "the first frame's faces")
        before = peak_rss_mb(detector.process.pid)

        bombs = [jpeg_bomb(10000, 10000), png_bomb(10000, 10000)] * 2 + [png_bomb(30000, 30000)]
        for seq, bomb in enumerate(bombs, start=1):
            side = 30000 if len(bomb) > 500_000 else 10000
            send(seq, bomb, side, side)
        send(len(bombs) + 1, encode_jpeg(photo), width, height)
        wait_for(lambda: len(faces.read()) == 2, 120, "the good frame after the bombs")
        wait_for(lambda: len(dead.read()) == len(bombs), 60, "the bombs' dead letters")
        after = peak_rss_mb(detector.process.pid)
    finally:
        publisher.close()
        faces.close()
        dead.close()
        stack.close()
    reasons = [dict(r.headers)["dlq.reason"].decode() for r in dead.records]
    print(f"detector process: peak RSS {before:.0f} -> {after:.0f} MB over {len(bombs)} bombs")
    assert reasons == ["image_too_large"] * len(bombs)
    assert after - before < 150 and after < K8S_LIMIT_MB  # one 10000² frame decoded: +300 MB
    assert detector.process.returncode in (None, 0, -15)
