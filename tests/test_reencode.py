"""Switching encoder: a mixed gallery is refused, ``people reencode`` rebuilds it from the photos.

Only dlib's encoder exists here to encode with, so the gallery is written as another encoder would
have left it: the real enrollment photos, with vectors tagged ``OTHER`` (a different, random
space). Re-encoding must replace every one with the configured encoder's encoding of that photo.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from services.recognizer.worker import RecognizerWorker
from shared.face.identity import IdentityService
from shared.face.reencode import reencode_gallery
from shared.gallery.base import EncoderMismatchError, Gallery
from shared.gallery.file_store import FileGallery
from shared.gallery.index import GalleryIndex
from shared.gallery.redis_store import RedisGallery
from shared.images import decode_image
from shared.redis_client import create_redis
from shared.settings import RecognizerSettings
from tests.conftest import first_photo

pytestmark = pytest.mark.data

OTHER = "other_encoder_v0"


@pytest.fixture(params=["file", "redis"])
def gallery(request: pytest.FixtureRequest, tmp_path: Path) -> Gallery:
    if request.param == "file":
        return FileGallery(tmp_path / "gallery")
    settings = request.getfixturevalue("redis_settings")
    return RedisGallery(create_redis(settings), settings.key_prefix)


def faceless_jpeg() -> bytes:
    gradient = np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1))
    return cv2.imencode(".jpg", cv2.merge([gradient] * 3))[1].tobytes()


def fill_as_other_encoder(gallery: Gallery, people_data: Path) -> dict[str, bytes]:
    """Every person of enroll/ (all photos) tagged OTHER, plus one whose photo has no face."""
    rng = np.random.default_rng(0)
    photos = {}
    for folder in sorted((people_data / "enroll").iterdir()):
        person = gallery.add_person(folder.name)
        for photo in sorted(folder.iterdir()):
            data = photo.read_bytes()
            encoding_id = gallery.add_encoding(person.id, rng.normal(size=128), data, encoder=OTHER)
            photos[encoding_id] = data
    nobody = gallery.add_person("no_face_here")
    photos[
        gallery.add_encoding(nobody.id, rng.normal(size=128), faceless_jpeg(), encoder=OTHER)
    ] = faceless_jpeg()
    return photos


def photos_by_person(gallery: Gallery) -> dict[str, list[bytes]]:
    return {p.name: sorted(gallery.image(e) for e in p.encoding_ids) for p in gallery.people()}


def test_a_gallery_of_another_encoder_is_refused_everywhere(
    calibration, gallery: Gallery, face_pipeline, people_data: Path
) -> None:
    fill_as_other_encoder(gallery, people_data)
    identity = IdentityService(face_pipeline, gallery, calibration)
    probe = (people_data / "probe" / "obama1.jpg").read_bytes()
    for attempt in (
        lambda: identity.identify(probe),
        lambda: identity.enroll("newcomer", probe),
        lambda: identity.verify_person(probe, gallery.find("obama").id),
        lambda: RecognizerWorker(face_pipeline.encoder, gallery, calibration, RecognizerSettings()),
    ):
        with pytest.raises(EncoderMismatchError, match="facestream people reencode") as raised:
            attempt()
        assert OTHER in str(raised.value) and face_pipeline.encoder.name in str(raised.value)
    assert gallery.find("newcomer") is None  # nothing was mixed in


def test_reencode_rebuilds_every_encoding_from_its_photo(
    calibration, gallery: Gallery, face_pipeline, people_data: Path
) -> None:
    photos = fill_as_other_encoder(gallery, people_data)
    before = photos_by_person(gallery)
    target = face_pipeline.encoder.name
    follower = GalleryIndex(gallery, encoder=target)
    with pytest.raises(EncoderMismatchError):
        follower.sync()
    assert len(follower) == 0

    seen = []
    report = reencode_gallery(gallery, face_pipeline, lambda *p: seen.append(p))

    assert report.reencoded == len(photos) - 1 and report.already == 0
    assert [(k.person, k.encoder) for k in report.kept] == [("no_face_here", OTHER)]
    assert "no face" in report.kept[0].why
    assert len(seen) == len(photos) and seen[-1][:2] == (len(photos), len(photos))
    assert photos_by_person(gallery) == before  # every photo kept, none duplicated
    for encoding in gallery.encodings():
        if encoding.person_id == gallery.find("no_face_here").id:
            assert encoding.encoder == OTHER  # kept as it was, not deleted
            continue
        assert encoding.id not in photos and encoding.encoder == target
        face = face_pipeline.analyze_main(decode_image(gallery.image(encoding.id)))
        np.testing.assert_allclose(encoding.vector, face.embedding, atol=1e-4)
        assert encoding.box == pytest.approx(face.detection.box, abs=0.01)

    gallery.delete_person(gallery.find("no_face_here").id)
    assert follower.sync()  # the change feed brought every replacement
    assert len(follower) == len(photos) - 1 and follower.people == 6
    identity = IdentityService(face_pipeline, gallery, calibration)
    [face] = identity.identify((people_data / "probe" / "obama1.jpg").read_bytes())
    assert face.name == "obama"
    again = reencode_gallery(gallery, face_pipeline)
    assert (again.reencoded, again.already, again.kept) == (0, len(photos) - 1, [])


def test_an_interrupted_reencode_resumes_without_loss(
    gallery: Gallery, face_pipeline, people_data: Path
) -> None:
    photos = fill_as_other_encoder(gallery, people_data)
    before = photos_by_person(gallery)

    def interrupt_after_three(done: int, _total: int, _name: str) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reencode_gallery(gallery, face_pipeline, interrupt_after_three)
    assert photos_by_person(gallery) == before
    tags = [e.encoder for e in gallery.encodings()]
    assert tags.count(face_pipeline.encoder.name) == 3 and tags.count(OTHER) == len(photos) - 3

    report = reencode_gallery(gallery, face_pipeline)
    assert (report.already, report.reencoded) == (3, len(photos) - 4)
    assert photos_by_person(gallery) == before
    tags = [e.encoder for e in gallery.encodings()]
    assert tags.count(OTHER) == 1  # the faceless photo only


def test_reencode_finds_the_enrolled_face_of_a_group_photo_by_its_box(
    calibration, tmp_path: Path, face_pipeline, people_data: Path
) -> None:
    """Enrolled with --face 1 (the smaller face): re-encoding must keep that face, not the largest."""
    gallery = FileGallery(tmp_path / "g")
    identity = IdentityService(face_pipeline, gallery, calibration)
    group = (people_data / "probe" / "obama_and_biden.jpg").read_bytes()
    enrolled = identity.enroll("second_face", group, face_index=1)
    [original] = gallery.encodings()
    assert original.box == pytest.approx(
        (enrolled.box.x, enrolled.box.y, enrolled.box.w, enrolled.box.h), abs=0.1
    )
    gallery.replace_encoding(original.id, np.ones(128), encoder=OTHER, box=original.box)
    reencode_gallery(gallery, face_pipeline)
    [rebuilt] = gallery.encodings()
    np.testing.assert_allclose(rebuilt.vector, original.vector, atol=1e-4)


def test_the_cli_refuses_a_mixed_gallery_and_reencodes_it(
    face_pipeline, tmp_path: Path, people_data: Path
) -> None:
    gallery = FileGallery(tmp_path / "data" / "gallery")
    for folder in sorted((people_data / "enroll").iterdir()):
        person = gallery.add_person(folder.name)
        gallery.add_encoding(
            person.id, np.ones(128), first_photo(folder).read_bytes(), encoder=OTHER
        )
    env = {
        **os.environ,
        "FACESTREAM_DATA_DIR": str(tmp_path / "data"),
        "FACESTREAM_STORE": "file",
        "FACESTREAM_FACE__TF_THREADS": "1",
    }

    def facestream(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "services.cli", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )

    refused = facestream("identify", str(people_data / "probe" / "obama1.jpg"))
    assert refused.returncode == 2
    assert "facestream people reencode" in refused.stderr and OTHER in refused.stderr
    done = facestream("people", "reencode")
    assert done.returncode == 0, done.stderr
    assert "6 people, 6 photo(s): 6 re-encoded, 0 already" in done.stdout
    assert {e.encoder for e in gallery.encodings()} == {face_pipeline.encoder.name}
