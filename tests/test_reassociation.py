"""Whole tracks: a new detector track that shows the face of a track lost moments ago continues it.

Real photos, the real detector, aligner and encoder, the real recognizer worker: two photos of
Obama under two detector track ids make one track; Biden after him stays a track of his own; and
a face that comes back after the track has ended starts a new one.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from services.recognizer.worker import RecognizerWorker
from shared.bus.base import Message
from shared.face.chips import chip_to_b64
from shared.face.factory import build_verifier
from shared.gallery.file_store import FileGallery
from shared.schemas import Box, DetectedFace, FacesMessage, Topics, read_event
from shared.settings import RecognizerSettings, Settings

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def chips(face_pipeline, people_data: Path) -> dict[str, str]:
    """One aligned chip (JPEG base64) per photo, cut for the configured encoder."""
    out = {}
    for name in ("obama/obama.jpg", "obama/obama2.jpg", "biden/biden.jpg"):
        image = cv2.imread(str(people_data / "enroll" / name))
        face = face_pipeline.detect(image)[0]
        out[name] = chip_to_b64(face_pipeline.align(image, face.landmarks))
    return out


def recognizer(
    face_pipeline, tmp_path: Path, reassociate: bool = True, liveness_gate: bool = False
) -> RecognizerWorker:
    settings = RecognizerSettings(reassociate=reassociate, track_timeout_s=2.0, reassociate_s=6.0)
    return RecognizerWorker(
        face_pipeline.encoder,
        FileGallery(tmp_path / "gallery"),
        build_verifier(Settings()),
        settings,
        liveness_gate=liveness_gate,
    )


def frame(worker: RecognizerWorker, chip: str, track_id: int, ts: float, x: float = 100.0):
    face = DetectedFace(
        box=Box(x=x, y=50, w=120, h=120),
        score=0.99,
        landmarks=[],
        track_id=track_id,
        chip_jpeg_b64=chip,
        chip_kind=worker.encoder.chip_kind,
    )
    message = FacesMessage(
        camera_id="cam",
        seq=int(ts * 15),
        capture_ts=ts,
        frame_width=640,
        frame_height=360,
        detector="test",
        faces=[face],
    )
    (result,) = worker.process_batch(
        [Message(Topics.FACES, message.to_bytes(), "cam", message.headers())]
    )
    assert not isinstance(result, Exception), result
    return [read_event(Message(o.topic, o.value, o.key, dict(o.headers))) for o in result]


def play(worker, clips: list[tuple[str, int, float, float]]) -> list:
    """(chip, detector track id, first ts, last ts) segments at 15 fps, in order."""
    events = []
    for chip, track_id, first, last in clips:
        ts = first
        while ts <= last + 1e-9:
            events += frame(worker, chip, track_id, 1000.0 + ts)
            ts += 1 / 15
    return events


def test_a_lost_track_is_taken_up_by_the_same_face(face_pipeline, chips, tmp_path) -> None:
    worker = recognizer(face_pipeline, tmp_path)
    events = play(
        worker,
        [
            (chips["obama/obama.jpg"], 1, 0.0, 1.0),
            (chips["obama/obama2.jpg"], 2, 4.0, 4.6),  # 3 s later, another detector track
        ],
    )
    started = [e for e in events if e.type == "started"]
    assert [e.track_id for e in started] == [1]
    assert {e.track_id for e in events} == {1}
    assert worker.reassociation.resolve("cam", 2) == 1
    # one event says so, for consumers that match the detector's boxes to events (the console)
    continued = [e for e in events if e.type == "continued"]
    assert [(e.track_id, e.continued_as) for e in continued] == [(1, 2)]
    assert continued[0].headers()["schema"] == "event/4"


def test_another_face_is_not_taken_for_the_lost_one(face_pipeline, chips, tmp_path) -> None:
    worker = recognizer(face_pipeline, tmp_path)
    events = play(
        worker,
        [(chips["obama/obama.jpg"], 1, 0.0, 1.0), (chips["biden/biden.jpg"], 2, 1.5, 2.5)],
    )
    assert [e.track_id for e in events if e.type == "started"] == [1, 2]
    assert not [e for e in events if e.type == "continued"]


def test_after_the_track_ended_the_same_face_starts_a_new_track(
    face_pipeline, chips, tmp_path
) -> None:
    worker = recognizer(face_pipeline, tmp_path)
    events = play(worker, [(chips["obama/obama.jpg"], 1, 0.0, 1.0)])
    # 7 s later: past reassociate_s (6 s), the first track has ended
    events += play(worker, [(chips["obama/obama.jpg"], 9, 8.0, 8.5)])
    events += list(map(_read, worker.tick(1e12)))
    kinds = [(e.type, e.track_id) for e in events if e.type in ("started", "ended")]
    assert ("ended", 1) in kinds and ("started", 9) in kinds


def test_without_reassociation_every_track_starts(face_pipeline, chips, tmp_path) -> None:
    worker = recognizer(face_pipeline, tmp_path, reassociate=False)
    events = play(
        worker,
        [(chips["obama/obama.jpg"], 1, 0.0, 1.0), (chips["obama/obama2.jpg"], 2, 1.8, 2.6)],
    )
    assert [e.track_id for e in events if e.type == "started"] == [1, 2]


def _read(outgoing):
    return read_event(Message(outgoing.topic, outgoing.value, outgoing.key, dict(outgoing.headers)))


def test_a_settled_track_is_encoded_only_every_few_frames(face_pipeline, chips, tmp_path) -> None:
    """Unknown (the gallery is empty) after 3 frames; from then on every 3rd face is encoded."""
    from tests.helpers import sample

    worker = recognizer(face_pipeline, tmp_path)
    encoded = sample("facestream_recognizer_faces_total", outcome="encoded")
    skipped = sample("facestream_recognizer_faces_total", outcome="skipped")
    events = play(worker, [(chips["obama/obama.jpg"], 1, 0.0, 1.0 - 1e-6)])  # 15 frames
    assert [e.type for e in events] == ["started", "unknown"]
    assert sample("facestream_recognizer_faces_total", outcome="encoded") - encoded == 7
    assert sample("facestream_recognizer_faces_total", outcome="skipped") - skipped == 8
    assert worker.voter.tracks[("cam", 1)].frames == 15  # skipped faces still keep it open


def test_a_named_track_waiting_for_liveness_is_encoded_only_every_few_frames(
    face_pipeline, chips, tmp_path, people_data: Path
) -> None:
    """Obama enrolled, the liveness gate on and no verdict yet: his track is named by every vote
    but not released; its frames are encoded as a settled track's (7 of 15), and the name goes
    out as soon as the verdict says live."""
    from tests.helpers import sample

    photo = people_data / "enroll" / "obama" / "obama.jpg"
    image = cv2.imread(str(photo))
    face = face_pipeline.detect(image)[0]
    chip = face_pipeline.align(image, face.landmarks)
    encoding = face_pipeline.encoder.encode(chip[None])[0]
    gallery = FileGallery(tmp_path / "gallery")
    person = gallery.add_person("Barack Obama")
    gallery.add_encoding(
        person.id, encoding, photo.read_bytes(), encoder=face_pipeline.encoder.name
    )
    worker = recognizer(face_pipeline, tmp_path, liveness_gate=True)
    encoded = sample("facestream_recognizer_faces_total", outcome="encoded")
    events = play(worker, [(chips["obama/obama2.jpg"], 1, 0.0, 1.0 - 1e-6)])  # 15 frames
    assert [e.type for e in events] == ["started"], "no name before the liveness verdict"
    assert sample("facestream_recognizer_faces_total", outcome="encoded") - encoded == 7
    released = worker.voter.judged("cam", 1, live=True)
    assert [(e.type, e.person_name) for e in released] == [("identified", "Barack Obama")]
