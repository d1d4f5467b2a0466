"""Recognition over Kafka end to end: RTSP -> ingestor -> detector -> liveness -> recognizer -> events."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from shared.cameras import CameraSpec
from shared.face.identity import IdentityService
from shared.gallery.redis_store import RedisGallery
from shared.redis_client import create_redis
from shared.schemas import RecognitionEvent, Topics, parse_event
from tests.conftest import RTSP_URL
from tests.helpers import wait_for
from tests.stack import Stack, TopicReader, skip_group_to_end

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.rtsp, pytest.mark.data]


def test_lin_manuel_miranda_is_identified_on_his_track(
    stack: Stack, face_pipeline, calibration, people_data: Path, redis_settings, unique: str
) -> None:
    gallery = RedisGallery(create_redis(redis_settings), redis_settings.key_prefix)
    identity = IdentityService(face_pipeline, gallery, calibration)
    photo = people_data / "enroll" / "lin_manuel_miranda" / "img1.png"
    identity.enroll("lin_manuel_miranda", photo.read_bytes())  # one photo: one-shot

    camera = f"hamilton-{unique}"
    for group, topic in (
        ("facestream-detector", Topics.FRAMES),
        ("facestream-liveness", Topics.FACES),
        ("facestream-recognizer", Topics.FACES),
        ("facestream-recognizer", Topics.LIVENESS),
    ):
        skip_group_to_end(stack.kafka, group, topic)
    events = TopicReader(stack.kafka, Topics.EVENTS, camera)
    stack.registry.put(CameraSpec(id=camera, url=f"{RTSP_URL}/cam", fps=15))
    recognizer = stack.start("recognizer")
    stack.start("liveness")  # the gate is on by default: he is named once judged live
    stack.start("detector")
    ingestor = stack.start("ingestor")

    def decoded() -> list[RecognitionEvent]:
        return [parse_event(r.value) for r in events.read()]

    wait_for(lambda: any(e.type == "identified" for e in decoded()), 180, "an identified event")
    wait_for(lambda: ingestor.metric("facestream_camera_reconnects_total", camera=camera) >= 1, 60)
    stack.registry.remove(camera)
    started = {(e.track_id) for e in decoded() if e.type == "started"}
    wait_for(
        lambda: started <= {e.track_id for e in decoded() if e.type == "ended"},
        120,
        "every track to end",
    )

    received = decoded()
    identified = [e for e in received if e.type == "identified"]
    assert {e.person_name for e in identified} == {"lin_manuel_miranda"}
    best = identified[0]
    assert best.distance <= best.threshold and best.confidence > 0.5 and best.box.w > 40
    per_track = Counter(e.track_id for e in received if e.type != "continued")
    assert max(per_track.values()) <= 4, per_track  # started, decision(s), ended: not per frame
    continued_as = [e.continued_as for e in received if e.type == "continued"]
    assert len(continued_as) == len(set(continued_as))  # one per re-associated detector track
    assert recognizer.metric("facestream_events_total", type="identified") >= len(identified)
    frames = ingestor.metric("facestream_camera_frames_published_total", camera=camera)
    decisions = [e for e in received if e.type != "snapshot"]  # a snapshot follows a decision
    assert len(decisions) < frames / 5
    print(f"{len(received)} events for {len(per_track)} tracks over {frames:.0f} frames")
