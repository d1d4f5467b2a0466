"""The recognizer under faults (issue 13, case 6): a crash between a track's frames and its end,
and a Redis outage while a track is being identified. Real encoder, real Redis."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import pytest

from services.recognizer.journal import RedisJournal
from services.recognizer.worker import RecognizerWorker
from shared.bus.base import Message
from shared.face.chips import chip_to_b64
from shared.face.factory import build_verifier, chip_kind_for
from shared.gallery.redis_store import RedisGallery
from shared.redis_client import create_redis
from shared.schemas import Box, DetectedFace, FacesMessage, RecognitionEvent, Topics, parse_event
from shared.settings import RecognizerSettings, Settings
from tests.conftest import infra, require_server
from tests.helpers import wait_for

pytestmark = [pytest.mark.redis, pytest.mark.data]

SETTINGS = RecognizerSettings(min_frames=3, track_timeout_s=2.0, camera_silence_s=10.0)


@pytest.fixture
def world(face_pipeline, people_data: Path, redis_settings):
    """A Redis gallery with Lin-Manuel Miranda enrolled, and a chip of him."""
    client = create_redis(redis_settings)
    gallery = RedisGallery(client, redis_settings.key_prefix)
    image = cv2.imread(str(people_data / "enroll" / "lin_manuel_miranda" / "img1.png"))
    face = face_pipeline.analyze_main(image)
    person = gallery.add_person("lin_manuel_miranda")
    gallery.add_encoding(person.id, face.embedding, b"", encoder=face_pipeline.encoder.name)
    return face_pipeline.encoder, gallery, client, redis_settings, chip_to_b64(face.chip)


def recognizer(world, journal=None) -> RecognizerWorker:
    encoder, gallery, *_ = world
    worker = RecognizerWorker(
        encoder, gallery, build_verifier(Settings()), SETTINGS, journal=journal
    )
    worker.tick(time.time())  # syncs the gallery index (and caches the names)
    return worker


def frames(chip: str, track: int, start: float, n: int, camera: str = "cam") -> list[Message]:
    messages = []
    for i in range(n):
        faces = FacesMessage(
            camera_id=camera,
            seq=i,
            capture_ts=start + i / 15,
            frame_width=640,
            frame_height=360,
            detector="mtcnn",
            faces=[
                DetectedFace(
                    box=Box(x=10, y=10, w=150, h=150),
                    score=0.99,
                    track_id=track,
                    chip_jpeg_b64=chip,
                    chip_kind=chip_kind_for(Settings().face.encoder),
                )
            ],
        )
        messages.append(Message(Topics.FACES, faces.to_bytes(), camera, faces.headers(), 0, i))
    return messages


def run_batch(worker: RecognizerWorker, messages: list[Message]) -> list[RecognitionEvent]:
    """What the runner does with a batch: process, publish (acknowledged), then ``published``."""
    outputs = [o for result in worker.process_batch(messages) for o in result]
    worker.published(outputs)
    return [parse_event(o.value) for o in outputs]


def test_a_recognizer_killed_before_a_track_ended_ends_it_after_the_restart(world) -> None:
    *_, client, settings, chip = world
    journal = RedisJournal(client, settings.key_prefix)
    first = recognizer(world, journal)
    now = time.time()
    events = run_batch(first, frames(chip, 7, now, 10))
    assert [e.type for e in events] == ["started", "identified"]
    del first  # kill -9: nothing more from this process, the journal is all that is left

    second = recognizer(world, RedisJournal(client, settings.key_prefix))
    assert ("cam", 7) in second.voter.tracks  # taken back
    more = run_batch(second, frames(chip, 7, now + 1.0, 5))
    assert more == []  # the track goes on: no second started, no second identified
    ended = [parse_event(o.value) for o in second.tick(now + 25.0)]
    assert [(e.type, e.track_id, e.person_name) for e in ended] == [
        ("ended", 7, "lin_manuel_miranda")
    ]
    third = recognizer(world, RedisJournal(client, settings.key_prefix))
    assert ("cam", 7) in third.voter.tracks  # ``ended`` not acknowledged yet: still open
    outputs = list(third.tick(now + 60.0))
    third.published(outputs)
    assert recognizer(world, RedisJournal(client, settings.key_prefix)).voter.tracks == {}


def test_a_redis_outage_never_gives_an_identification_without_a_name(world) -> None:
    require_server("Redis", world[3].url.split("//")[1].split("/")[0])
    *_, client, settings, chip = world
    worker = recognizer(world, RedisJournal(client, settings.key_prefix))
    worker._names.clear()  # as if the names had not been read yet ...
    worker._cache_names()  # ... the next gallery sync reads them while Redis is up
    try:
        infra("stop", "redis")
        events = run_batch(worker, frames(chip, 9, time.time(), 10))
        identified = [e for e in events if e.type == "identified"]
        assert [e.person_name for e in identified] == ["lin_manuel_miranda"]
        assert worker.journal._dirty  # the journal writes wait for Redis
    finally:
        infra("start", "redis")
    wait_for(lambda: worker.journal.flush(), 30, "the journal to reach Redis again")
    assert client.hlen(worker.journal.key) == 1


def test_without_a_cached_name_the_track_waits_instead_of_naming_nobody(world) -> None:
    *_, client, settings, chip = world
    worker = recognizer(world, RedisJournal(client, settings.key_prefix))
    worker._names.clear()
    try:
        infra("stop", "redis")
        events = run_batch(worker, frames(chip, 11, time.time(), 10))
        assert [e.type for e in events] == ["started"]  # no identified with person_name: null
    finally:
        infra("start", "redis")
    wait_for(lambda: worker._name(next(iter(worker.index.person_ids()))) is not None, 30)
    later = run_batch(worker, frames(chip, 11, time.time() + 1, 1))
    assert [(e.type, e.person_name) for e in later] == [("identified", "lin_manuel_miranda")]
