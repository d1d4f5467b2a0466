"""Hostile messages against the real stack (issue 13, cases 1-3), then a clean clip.

The sample clip (a file, paced by media time, so every run gets the same frames) -> ingestor -> Kafka -> detector -> liveness -> recognizer -> events, as OS processes on the
local Kafka and Redis. A clean run of the clip on one camera gives the reference events; then a
camera clock jump (``faces/1`` and a frame an hour in the future), a frame just under the 16 MiB
limit and a chip of the wrong size in the middle of a poll are sent for a second camera, and the
same clip on it must give the same decisions, with every bad message in the dead-letter topic with
its reason and every service under its Kubernetes memory limit. A first play on a third camera
warms the services up: a cold pipeline lags and drops frames while TensorFlow builds its
graphs, and the tracks of a play that lost frames join and split differently.
"""

from __future__ import annotations

import base64
import json
import os
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from shared.bus.kafka import KafkaBus
from shared.cameras import CameraSpec
from shared.face.identity import IdentityService
from shared.gallery.redis_store import RedisGallery
from shared.images import encode_jpeg
from shared.redis_client import create_redis
from shared.schemas import Box, DetectedFace, FacesMessage, FrameMeta, RecognitionEvent, Topics
from tests.helpers import wait_for
from tests.stack import Stack, TopicReader, skip_group_to_end

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.rtsp, pytest.mark.data]

GROUPS = {
    "facestream-detector": [Topics.FRAMES],
    "facestream-liveness": [Topics.FACES],
    "facestream-recognizer": [Topics.FACES, Topics.LIVENESS],
}
MEMORY_LIMIT = 2 * 1024**3
"""The largest ``limits.memory`` in deploy/k8s (detector, liveness: 2Gi)."""


def rss(process) -> int:
    status = Path(f"/proc/{process.process.pid}/status").read_text()
    return (
        int(next(line for line in status.splitlines() if line.startswith("VmRSS")).split()[1])
        * 1024
    )


def stream_clip(
    stack: Stack, camera: str, clip: Path, ingestor, during=None
) -> list[RecognitionEvent]:
    """Stream the clip file once on ``camera`` (paced by media time: the same frames every run);
    every event of that run once all its tracks ended."""
    events = TopicReader(stack.kafka, Topics.EVENTS, camera)
    published = lambda: ingestor.metric("facestream_camera_frames_published_total", camera=camera)  # noqa: E731
    before = published()
    stack.registry.put(CameraSpec(id=camera, url=str(clip), fps=15))

    def decoded() -> list[RecognitionEvent]:
        records = [r for r in events.read() if ("schema", b"event/1") in r.headers]
        return [RecognitionEvent.model_validate_json(r.value) for r in records]  # no snapshots

    wait_for(lambda: published() > before, 60, "the clip's first frames")
    if during is not None:
        wait_for(lambda: len(decoded()) >= 1, 120, "the clip's first event")
        during()
    wait_for(
        lambda: ingestor.metric("facestream_camera_up", camera=camera) == 0, 180, "the clip's end"
    )
    stack.registry.remove(camera)
    wait_for(
        lambda: (
            (started := {e.track_id for e in decoded() if e.type == "started"})
            and started <= {e.track_id for e in decoded() if e.type == "ended"}
        ),
        180,
        "every track to end",
    )
    time.sleep(2)
    received = decoded()
    events.close()
    return received


def faces_message(camera: str, ts: float, chip: np.ndarray | None = None) -> tuple:
    faces = []
    if chip is not None:
        faces = [
            DetectedFace(
                box=Box(x=10, y=10, w=100, h=100),
                score=0.99,
                landmarks=[],
                track_id=1,
                chip_jpeg_b64=base64.b64encode(encode_jpeg(chip)).decode(),
            )
        ]
    message = FacesMessage(
        camera_id=camera,
        seq=10**6,
        capture_ts=ts,
        frame_width=640,
        frame_height=360,
        detector="mtcnn",
        faces=faces,
    )
    return message.to_bytes(), message.headers()


def test_hostile_messages_do_not_change_the_events_of_the_next_clip(
    calibration,
    stack: Stack,
    face_pipeline,
    people_data: Path,
    hamilton: Path,
    redis_settings,
    unique: str,
) -> None:
    gallery = RedisGallery(create_redis(redis_settings), redis_settings.key_prefix)
    identity = IdentityService(face_pipeline, gallery, calibration)
    photo = people_data / "enroll" / "lin_manuel_miranda" / "img1.png"
    identity.enroll("lin_manuel_miranda", photo.read_bytes())
    for group, topics in GROUPS.items():
        for topic in topics:
            skip_group_to_end(stack.kafka, group, topic)
    stack.env["FACESTREAM_RECOGNIZER__CAMERA_SILENCE_S"] = "5"  # the clip's end: tracks end soon
    reference, camera = f"clean-{unique}", f"hostile-{unique}"
    dead = TopicReader(stack.kafka, Topics.DEAD_LETTERS, camera)
    services = {
        name: stack.start(name) for name in ("recognizer", "liveness", "detector", "ingestor")
    }
    ingestor = services["ingestor"]

    stream_clip(stack, f"warm-{unique}", hamilton, ingestor)
    clean = stream_clip(stack, reference, hamilton, ingestor)

    publisher = KafkaBus(stack.kafka).publisher()
    future = time.time() + 3600  # the camera's clock jumped an hour ahead
    publisher.publish(
        Topics.FACES, *faces_message(camera, future)[:1], camera, faces_message(camera, future)[1]
    )
    meta = FrameMeta(camera_id=camera, seq=10**6, capture_ts=future, width=64, height=48)
    jpeg = encode_jpeg(np.zeros((48, 64, 3), np.uint8))
    publisher.publish(Topics.FRAMES, jpeg, camera, meta.to_headers())
    huge = FrameMeta(camera_id=camera, seq=10**6 + 1, capture_ts=time.time(), width=640, height=360)
    limit = stack.kafka.max_message_bytes
    publisher.publish(Topics.FRAMES, os.urandom(limit - 50_000), camera, huge.to_headers())
    publisher.flush()

    def bad_chip() -> None:  # in the middle of the clip: it shares a poll with good frames
        value, headers = faces_message(camera, time.time(), np.zeros((100, 100, 3), np.uint8))
        publisher.publish(Topics.FACES, value, camera, headers)
        publisher.flush()

    attacked = stream_clip(stack, camera, hamilton, ingestor, during=bad_chip)
    publisher.close()

    by_type = lambda events: Counter(e.type for e in events)  # noqa: E731
    names = lambda events: {e.person_name for e in events if e.type == "identified"}  # noqa: E731
    print(f"clean: {by_type(clean)}; after the attacks: {by_type(attacked)}")
    print("clean tracks:", sorted(e.frames for e in clean if e.type == "ended"))
    print("attacked tracks:", sorted(e.frames for e in attacked if e.type == "ended"))
    assert names(clean) == names(attacked) == {"lin_manuel_miranda"}
    # The same decisions; the number of tracks may differ by two: whether a track split at a shot
    # cut is re-associated depends on which frames were encoded, which on a loaded machine
    # varies between two clean plays as well (6 or 7 tracks on a quiet machine, 6 and 8 once
    # beside a benchmark). A silenced pipeline gives none, and every track must still end.
    clean_types, attacked_types = by_type(clean), by_type(attacked)
    assert attacked_types["identified"] == clean_types["identified"]
    assert attacked_types["spoof"] == clean_types["spoof"]
    assert abs(attacked_types["started"] - clean_types["started"]) <= 2
    assert attacked_types["started"] == attacked_types["ended"]
    wait_for(lambda: len(dead.read()) >= 5, 60, "the dead letters")
    letters = [(dict(r.headers), r.value) for r in dead.read()]
    reasons = Counter(
        tuple(h[k].decode() for k in ("dlq.service", "dlq.source_topic", "dlq.reason"))
        for h, _ in letters
    )
    print("dead letters:", reasons)
    assert reasons["recognizer", Topics.FACES, "clock_skew"] == 1
    assert reasons["liveness", Topics.FACES, "clock_skew"] == 1
    assert reasons["detector", Topics.FRAMES, "clock_skew"] == 1
    # of faces: the future message and the bad chip (it also reads frames, for snapshots)
    assert sum(n for (s, t, _), n in reasons.items() if (s, t) == ("recognizer", Topics.FACES)) == 2
    [(headers, body)] = [
        (h, v)
        for h, v in letters
        if h.get("dlq.truncated") == b"true" and h["dlq.service"] == b"detector"
    ]  # the frame just under the limit: referenced, not copied
    assert headers["dlq.service"] == b"detector"
    assert json.loads(body)["size"] == limit - 50_000

    print("RSS MB:", {name: rss(p) // 2**20 for name, p in services.items()})
    for name, process in services.items():
        assert process.alive(), name
        assert rss(process) < MEMORY_LIMIT, (name, rss(process))
