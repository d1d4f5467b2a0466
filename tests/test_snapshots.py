"""Event snapshots: the store contract (files and a real Redis), and the recognizer's keeper."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from services.recognizer.snapshots import SnapshotKeeper
from shared.bus.base import Message
from shared.errors import ProcessingError
from shared.schemas import (
    Box,
    DetectedFace,
    FacesMessage,
    FrameMeta,
    RecognitionEvent,
    RecognitionEventV3,
    Topics,
    read_event,
)
from shared.snapshots.base import SnapshotStore
from shared.snapshots.file_store import FileSnapshotStore
from shared.worker import Outgoing

JPEG = cv2.imencode(".jpg", np.full((40, 40, 3), 128, np.uint8))[1].tobytes()


def make_store(kind: str, retention_h: float, request, tmp_path: Path) -> SnapshotStore:
    if kind == "file":
        return FileSnapshotStore(tmp_path / "snapshots", retention_h)
    from shared.redis_client import create_redis
    from shared.snapshots.redis_store import RedisSnapshotStore

    settings = request.getfixturevalue("redis_settings")
    return RedisSnapshotStore(create_redis(settings), settings.key_prefix, retention_h)


@pytest.fixture(params=["file", "redis"])
def kind(request) -> str:
    return request.param


@pytest.fixture
def store(kind: str, request, tmp_path: Path) -> Iterator[SnapshotStore]:
    yield make_store(kind, 24, request, tmp_path)


def leftovers(store: SnapshotStore) -> list[str]:
    """Every file or key the store holds."""
    if isinstance(store, FileSnapshotStore):
        return sorted(p.name for p in store.directory.iterdir())
    return sorted(store.keys())


def test_a_snapshot_is_stored_and_read_back(store: SnapshotStore) -> None:
    record = store.new("door", 7, 1000.0, "p1")
    store.put(record, JPEG, JPEG + b"frame")
    assert store.get(record.id) == record
    assert store.image(record.id, "face") == JPEG
    assert store.image(record.id, "frame") == JPEG + b"frame"
    assert store.of_person("p1") == [record.id]
    assert store.count() == 1


def test_ids_that_are_not_snapshot_ids_are_refused(store: SnapshotStore) -> None:
    for bad in ("../../etc/passwd", "", "ABC", "0" * 31):
        assert store.get(bad) is None
        assert store.image(bad, "face") is None


def test_deleting_a_person_deletes_every_snapshot_named_as_them(store: SnapshotStore) -> None:
    theirs = [store.new("door", i, 1000.0 + i, "p1") for i in range(3)]
    other = store.new("door", 9, 1000.0, "p2")
    unknown = store.new("door", 10, 1000.0, None)
    for record in (*theirs, other, unknown):
        store.put(record, JPEG, JPEG)
    assert store.delete_person("p1") == 3
    assert all(store.get(r.id) is None and store.image(r.id, "face") is None for r in theirs)
    assert store.of_person("p1") == []
    assert store.get(other.id) == other and store.get(unknown.id) == unknown
    assert not [name for name in leftovers(store) if any(r.id in name for r in theirs)]
    assert not [name for name in leftovers(store) if name.endswith(":person:p1")]


def test_renaming_moves_a_snapshot_between_people(store: SnapshotStore) -> None:
    record = store.new("door", 1, 1000.0, "p1")
    store.put(record, JPEG, None)
    assert store.image(record.id, "frame") is None
    assert store.name(record.id, None)
    assert store.of_person("p1") == [] and store.get(record.id).person_id is None
    assert store.name(record.id, "p2")
    assert store.of_person("p2") == [record.id]
    assert store.delete_person("p1") == 0 and store.delete_person("p2") == 1


def test_expired_snapshots_leave_no_key_or_file(kind: str, request, tmp_path: Path) -> None:
    store = make_store(kind, 1.0 / 3600, request, tmp_path)  # one second
    for i in range(3):
        store.put(store.new("door", i, 1000.0, "p1" if i else None), JPEG, JPEG)
    assert store.count() == 3
    time.sleep(2.2)  # past the expiry (plus the person set's one-second grace)
    assert store.count() == 0 or isinstance(store, FileSnapshotStore)
    store.purge_expired()
    assert store.count() == 0
    assert leftovers(store) == []


# --- the recognizer's keeper -------------------------------------------------------------------


def frame_message(camera: str, seq: int, image: np.ndarray) -> Message:
    meta = FrameMeta(
        camera_id=camera,
        seq=seq,
        capture_ts=1000.0 + seq,
        width=image.shape[1],
        height=image.shape[0],
    )
    return Message(
        Topics.FRAMES, cv2.imencode(".jpg", image)[1].tobytes(), camera, meta.to_headers(), 0, seq
    )


def faces(camera: str, seq: int, box: Box) -> tuple[FacesMessage, list[DetectedFace]]:
    face = DetectedFace(box=box, score=0.9, track_id=5, chip_jpeg_b64=None)
    message = FacesMessage(
        camera_id=camera,
        seq=seq,
        capture_ts=1000.0 + seq,
        frame_width=320,
        frame_height=240,
        detector="test",
        faces=[face],
    )
    return message, [face]


def event(kind: str, person: str | None = None) -> Outgoing:
    record = RecognitionEvent(
        type=kind,
        camera_id="door",
        track_id=5,
        person_id=person,
        person_name=person,
        first_seen_ts=1000.0,
        last_seen_ts=1001.0,
    )
    return Outgoing(Topics.EVENTS, record.to_bytes(), "door", record.headers())


def test_the_keeper_stores_the_best_face_and_refers_to_it_in_an_event3(tmp_path: Path) -> None:
    store = FileSnapshotStore(tmp_path, 24)
    keeper = SnapshotKeeper(store, face_px=64, thumb_px=160)
    image = np.zeros((240, 320, 3), np.uint8)
    image[100:140, 150:190] = 255
    keeper.keep_frame(frame_message("door", 1, image))
    small, big = Box(x=150, y=100, w=20, h=20), Box(x=150, y=100, w=40, h=40)
    keeper.observe(*faces("door", 1, small), [5], [0.2])
    keeper.observe(*faces("door", 1, big), [5], [0.9])  # clearly better: replaces the best
    keeper.observe(*faces("door", 1, small), [5], [0.5])  # worse: ignored
    out = keeper.on_events([event("identified", "p1")])
    assert [o.headers["schema"] for o in out] == ["event/1", "event/3"]
    identified = read_event(
        Message(Topics.EVENTS, out[0].value, "door", dict(out[0].headers), 0, 0)
    )
    snap = read_event(Message(Topics.EVENTS, out[1].value, "door", dict(out[1].headers), 0, 1))
    assert isinstance(snap, RecognitionEventV3) and snap.type == "snapshot"
    assert snap.refers_to == identified.event_id
    assert store.get(snap.snapshot_id).person_id == "p1"
    crop = cv2.imdecode(np.frombuffer(store.image(snap.snapshot_id, "face"), np.uint8), 1)
    assert crop.shape[0] == 64 and crop.mean() > 60  # the big box with margin: mostly the face
    thumb = cv2.imdecode(np.frombuffer(store.image(snap.snapshot_id, "frame"), np.uint8), 1)
    assert thumb.shape[1] == 160
    # a consumer of event/1 still refuses what it does not read, by the header, as before
    with pytest.raises(ProcessingError):
        RecognitionEvent.from_message(
            Message(Topics.EVENTS, out[1].value, "door", dict(out[1].headers), 0, 1)
        )
    # a withdrawn name unnames the snapshot; the end forgets the track
    keeper.on_events([event("ended")])
    assert keeper.best == {}
    assert json.loads((tmp_path / f"{snap.snapshot_id}.json").read_text())["person_id"] == "p1"


def test_a_withdrawn_name_unnames_the_snapshot(tmp_path: Path) -> None:
    from shared.schemas import RecognitionEventV2

    store = FileSnapshotStore(tmp_path, 24)
    keeper = SnapshotKeeper(store)
    keeper.observe(
        *faces("door", 3, Box(x=0, y=0, w=30, h=30)), [5], [0.5]
    )  # no frame: no thumbnail
    keeper.best[("door", 5)].face_jpeg = JPEG
    snap_id = read_event(
        Message(
            Topics.EVENTS,
            (out := keeper.on_events([event("identified", "p1")]))[1].value,
            "door",
            dict(out[1].headers),
            0,
            0,
        )
    ).snapshot_id
    assert store.image(snap_id, "frame") is None
    withdrawn = RecognitionEventV2(
        type="withdrawn", camera_id="door", track_id=5, first_seen_ts=1000.0, last_seen_ts=1001.0
    )
    keeper.on_events([Outgoing(Topics.EVENTS, withdrawn.to_bytes(), "door", withdrawn.headers())])
    assert store.of_person("p1") == [] and store.get(snap_id).person_id is None
