"""Liveness over Kafka end to end: the live person is named, their replay on a phone is a spoof.

RTSP (the two real evaluation videos, /live and /replay) -> ingestor -> detector -> liveness ->
recognizer -> events, with the person enrolled from one frame of the live video.
"""

from __future__ import annotations

from collections import Counter

import pytest

from shared.cameras import CameraSpec
from shared.face.identity import IdentityService
from shared.gallery.redis_store import RedisGallery
from shared.images import encode_jpeg
from shared.redis_client import create_redis
from shared.schemas import LivenessVerdict, RecognitionEvent, Topics, parse_event
from tests.conftest import RTSP_URL
from tests.helpers import wait_for
from tests.stack import Stack, TopicReader, skip_group_to_end
from training.liveness.training import read_video

pytestmark = [pytest.mark.kafka, pytest.mark.redis, pytest.mark.rtsp, pytest.mark.data]

GROUPS = {
    "facestream-detector": [Topics.FRAMES],
    "facestream-liveness": [Topics.FACES],
    "facestream-recognizer": [Topics.FACES, Topics.LIVENESS],
}


def stream(stack: Stack, camera: str, mount: str, ingestor) -> list[RecognitionEvent]:
    """Stream one clip once through the pipeline; every event of its camera once its tracks end."""
    events = TopicReader(stack.kafka, Topics.EVENTS, camera)

    def decoded() -> list[RecognitionEvent]:
        return [parse_event(r.value) for r in events.read()]

    stack.registry.put(CameraSpec(id=camera, url=f"{RTSP_URL}/{mount}", fps=15))
    wait_for(  # the clip ended and the camera reconnected: every frame has been published
        lambda: ingestor.metric("facestream_camera_reconnects_total", camera=camera) >= 1, 180
    )
    stack.registry.remove(camera)
    wait_for(
        lambda: (
            (started := {e.track_id for e in decoded() if e.type == "started"})
            and started <= {e.track_id for e in decoded() if e.type == "ended"}
        ),
        180,
        f"every track of {mount} to end",
    )
    received = decoded()
    events.close()
    return received


def test_the_live_person_is_identified_and_their_replay_is_a_spoof(
    stack: Stack, face_pipeline, calibration, shared_data, redis_settings, unique: str
) -> None:
    gallery = RedisGallery(create_redis(redis_settings), redis_settings.key_prefix)
    identity = IdentityService(face_pipeline, gallery, calibration)
    first_frame = read_video(shared_data / "liveness" / "live_person.mov", limit=1)[0]
    identity.enroll("live_person", encode_jpeg(first_frame))  # one frame: one-shot
    for group, topics in GROUPS.items():
        for topic in topics:
            skip_group_to_end(stack.kafka, group, topic)
    verdicts = TopicReader(stack.kafka, Topics.LIVENESS, f"replay-{unique}")
    recognizer = stack.start("recognizer")
    liveness = stack.start("liveness")
    stack.start("detector")
    ingestor = stack.start("ingestor")

    live = stream(stack, f"live-{unique}", "live", ingestor)
    named = [e for e in live if e.type == "identified"]
    assert {e.person_name for e in named} == {"live_person"}, Counter(e.type for e in live)
    assert not [e for e in live if e.type == "spoof"]

    replay = stream(stack, f"replay-{unique}", "replay", ingestor)
    spoofs = [e for e in replay if e.type == "spoof"]
    assert spoofs, Counter(e.type for e in replay)
    on_phone = {e.track_id for e in spoofs}
    withdrawn = {e.withdraws for e in replay if e.type == "withdrawn"}
    standing = [e for e in replay if e.type == "identified" and e.event_id not in withdrawn]
    assert not [e for e in standing if e.track_id in on_phone]
    judged = [LivenessVerdict.model_validate_json(r.value) for r in verdicts.read()]
    assert any(not v.live for v in judged)
    assert liveness.metric("facestream_liveness_windows_total", verdict="attack") >= 1
    assert recognizer.metric("facestream_events_total", type="spoof") >= len(spoofs)
    print(
        f"live: {Counter(e.type for e in live)}; replay: {Counter(e.type for e in replay)}; "
        f"replay verdicts: {[round(v.score, 2) for v in judged]}"
    )
