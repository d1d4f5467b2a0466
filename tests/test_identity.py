"""Enroll, verify, identify and delete with the real models on real photos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from shared.errors import ProcessingError
from shared.face.identity import EnrollmentError, IdentityService, PhotoVerification
from shared.face.verification import Calibration, calibration_path
from shared.gallery.file_store import FileGallery
from shared.gallery.redis_store import RedisGallery
from shared.redis_client import create_redis
from tests.conftest import expected_probes, first_photo

pytestmark = pytest.mark.data


@pytest.fixture(scope="module")
def enrolled(face_pipeline, calibration, people_data: Path, tmp_path_factory) -> IdentityService:
    """One-shot: each person of enroll/ from ONE photo (the first)."""
    gallery = FileGallery(tmp_path_factory.mktemp("gallery"))
    identity = IdentityService(face_pipeline, gallery, calibration)
    for folder in sorted((people_data / "enroll").iterdir()):
        identity.enroll(folder.name, first_photo(folder).read_bytes())
    return identity


def jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image)[1].tobytes()


def test_every_expected_person_is_identified_and_nobody_else(enrolled, people_data: Path) -> None:
    for photo, expected in expected_probes(people_data).items():
        faces = enrolled.identify((people_data / "probe" / photo).read_bytes())
        named = [f.name for f in faces if f.name is not None]
        assert set(named) == expected, f"{photo}: named {named}, expected {sorted(expected)}"
        assert len(named) == len(set(named)), f"{photo}: one person named twice: {named}"


def test_identify_reports_boxes_distances_and_candidates(enrolled, people_data: Path) -> None:
    [face] = enrolled.identify((people_data / "probe" / "obama1.jpg").read_bytes(), top_k=3)
    assert face.name == "obama"
    assert face.distance <= face.threshold <= enrolled.verifier.threshold
    assert 0.5 < face.confidence <= 1.0
    assert [c.name for c in face.candidates][0] == "obama" and len(face.candidates) == 3
    assert face.candidates[1].distance > face.threshold  # the others are far
    assert face.box.w > 50 and face.box.h > 50


def test_an_image_without_a_face_identifies_nobody(enrolled) -> None:
    gradient = np.tile(np.linspace(0, 255, 640, dtype=np.uint8), (480, 1))
    assert enrolled.identify(jpeg(cv2.merge([gradient] * 3))) == []


def test_verify_same_and_different_people(enrolled, people_data: Path) -> None:
    probe = people_data / "probe"
    same = enrolled.verify(
        (probe / "obama1.jpg").read_bytes(), (probe / "obama-720p.jpg").read_bytes()
    )
    other = enrolled.verify(
        (probe / "obama1.jpg").read_bytes(), (probe / "alex_lacamoire1.jpg").read_bytes()
    )
    assert same.same and not other.same
    assert same.distance < same.threshold < other.distance
    assert same.confidence > 0.9 and other.confidence < 0.1
    claimed = enrolled.verify_person(
        (probe / "obama1.jpg").read_bytes(), enrolled.resolve("obama").id
    )
    assert claimed.same


def test_photo_verification_jitters_both_faces_and_uses_their_calibration(
    dlib_pipeline, people_data: Path, tmp_path: Path
) -> None:
    """dlib-resnet's setting: 50 jittered copies per face, tau fitted on jittered LFW encodings."""
    jittered = Calibration.load(calibration_path(50))
    identity = IdentityService(
        dlib_pipeline,
        FileGallery(tmp_path),
        Calibration.load(),
        photo_verification=PhotoVerification(50, jittered),
    )
    probe = people_data / "probe"
    obama, obama_720p, alex = (
        (probe / name).read_bytes()
        for name in ("obama1.jpg", "obama-720p.jpg", "alex_lacamoire1.jpg")
    )
    same, other = identity.verify(obama, obama_720p), identity.verify(obama, alex)
    assert same.same and not other.same
    assert same.threshold == other.threshold == jittered.threshold != Calibration.load().threshold
    assert identity.verify(obama, obama_720p) == same  # the same photos, the same perturbations
    single = identity.encode_one(obama).embedding
    assert not np.allclose(identity.encode_one(obama, 50).embedding, single, atol=1e-3)


def test_enrollment_refuses_a_photo_without_a_face(enrolled) -> None:
    gradient = np.tile(np.linspace(0, 255, 300, dtype=np.uint8), (300, 1))
    with pytest.raises(EnrollmentError) as error:
        enrolled.enroll("nobody", jpeg(cv2.merge([gradient] * 3)))
    assert error.value.reason == "no_face"
    assert enrolled.gallery.find("nobody") is None


def test_enrollment_with_two_faces_asks_which_one(enrolled, people_data: Path) -> None:
    photo = (people_data / "probe" / "two_people.jpg").read_bytes()
    with pytest.raises(EnrollmentError) as error:
        enrolled.enroll("ambiguous", photo)
    assert error.value.reason == "several_faces" and "pick one" in str(error.value)
    picked = enrolled.enroll("picked", photo, face_index=1)
    assert len(picked.person.encoding_ids) == 1
    assert enrolled.delete(picked.person.id)


def test_a_corrupt_file_is_a_clear_error(enrolled) -> None:
    with pytest.raises(ProcessingError) as error:
        enrolled.enroll("corrupt", b"\x89PNG\r\n\x1a\n truncated")
    assert error.value.reason == "corrupt_image"


def test_huge_grayscale_and_rgba_photos_enroll(
    face_pipeline, calibration, people_data: Path, tmp_path
) -> None:
    identity = IdentityService(face_pipeline, FileGallery(tmp_path), calibration)
    photo = cv2.imread(str(people_data / "enroll" / "obama" / "obama.jpg"))
    huge = cv2.resize(photo, (8000, 8000), interpolation=cv2.INTER_LINEAR)
    gray = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    rgba = (people_data / "probe" / "32bit.png").read_bytes()
    assert cv2.imdecode(np.frombuffer(rgba, np.uint8), cv2.IMREAD_UNCHANGED).shape[2] == 4
    for label, data in (("huge", jpeg(huge)), ("gray", jpeg(gray)), ("rgba", rgba)):
        identity.enroll(f"obama-{label}", data)
    probe = (people_data / "probe" / "obama1.jpg").read_bytes()
    [face] = identity.identify(probe, top_k=3)
    assert {c.name for c in face.candidates} == {"obama-huge", "obama-gray", "obama-rgba"}
    assert all(c.distance <= face.threshold for c in face.candidates)


def test_after_delete_nobody_is_named_and_no_redis_key_remains(
    face_pipeline, calibration, people_data: Path, redis_settings
) -> None:
    client = create_redis(redis_settings)
    identity = IdentityService(
        face_pipeline, RedisGallery(client, redis_settings.key_prefix), calibration
    )
    enrolled = identity.enroll(
        "obama", (people_data / "enroll" / "obama" / "obama.jpg").read_bytes()
    )
    probe = (people_data / "probe" / "obama1.jpg").read_bytes()
    assert identity.identify(probe)[0].name == "obama"
    assert identity.delete(enrolled.person.id)
    assert identity.identify(probe)[0].name is None
    for key in client.scan_iter(f"{redis_settings.key_prefix}:*"):
        assert enrolled.person.id.encode() not in key and enrolled.encoding_id.encode() not in key
        if client.type(key) == b"hash":
            assert enrolled.encoding_id.encode() not in b" ".join(client.hkeys(key))
            assert b"obama" not in b" ".join(client.hvals(key))
