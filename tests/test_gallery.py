"""Gallery contract (Redis and file store), deletion leaving no trace, and the in-memory index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared.gallery.base import (
    LEGACY_ENCODER,
    EncoderMismatchError,
    Encoding,
    Gallery,
    PersonNotFoundError,
)
from shared.gallery.file_store import FileGallery
from shared.gallery.index import GalleryIndex
from shared.gallery.redis_store import RedisGallery
from shared.redis_client import create_redis

ENCODER = "sface_2021dec"
"""What the tests tag their encodings with (the default encoder's name)."""


def vector(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture(params=["file", "redis"])
def gallery(request: pytest.FixtureRequest, tmp_path: Path) -> Gallery:
    if request.param == "file":
        return FileGallery(tmp_path / "gallery")
    settings = request.getfixturevalue("redis_settings")
    return RedisGallery(create_redis(settings), settings.key_prefix)


def test_enroll_list_and_read_back(gallery: Gallery) -> None:
    ada = gallery.add_person("Ada Lovelace")
    e1 = gallery.add_encoding(ada.id, vector(1), b"photo-1", encoder=ENCODER)
    e2 = gallery.add_encoding(ada.id, vector(2), b"photo-2", encoder=ENCODER)
    [listed] = gallery.people()
    assert (listed.name, set(listed.encoding_ids)) == ("Ada Lovelace", {e1, e2})
    assert gallery.find("Ada Lovelace").id == ada.id
    assert gallery.image(e2) == b"photo-2"
    by_id = {e.id: e for e in gallery.encodings()}
    assert np.array_equal(by_id[e1].vector, vector(1)) and by_id[e1].person_id == ada.id


def test_names_are_unique_and_validated(gallery: Gallery) -> None:
    gallery.add_person("Grace")
    with pytest.raises(ValueError, match="already enrolled"):
        gallery.add_person("Grace")
    with pytest.raises(ValueError, match="invalid person name"):
        gallery.add_person("../../etc")


def test_bad_encodings_and_unknown_people_are_refused(gallery: Gallery) -> None:
    person = gallery.add_person("Alan")
    with pytest.raises(ValueError):
        gallery.add_encoding(person.id, np.zeros(64), b"x", encoder=ENCODER)
    with pytest.raises(ValueError):
        gallery.add_encoding(person.id, np.full(128, np.nan), b"x", encoder=ENCODER)
    with pytest.raises(PersonNotFoundError):
        gallery.add_encoding("0" * 32, vector(1), b"x", encoder=ENCODER)


def test_delete_removes_the_person_everywhere(gallery: Gallery) -> None:
    keep = gallery.add_person("Keep")
    gallery.add_encoding(keep.id, vector(3), b"keep", encoder=ENCODER)
    gone = gallery.add_person("Gone")
    encoding = gallery.add_encoding(gone.id, vector(4), b"gone-photo", encoder=ENCODER)
    assert gallery.delete_person(gone.id)
    assert not gallery.delete_person(gone.id)
    assert [p.name for p in gallery.people()] == ["Keep"]
    assert [e.person_id for e in gallery.encodings()] == [keep.id]
    assert gallery.find("Gone") is None
    with pytest.raises(KeyError):
        gallery.image(encoding)


def test_no_redis_key_field_or_value_of_a_deleted_person_remains(redis_settings) -> None:
    client = create_redis(redis_settings)
    gallery = RedisGallery(client, redis_settings.key_prefix)
    person = gallery.add_person("Mallory")
    encodings = [
        gallery.add_encoding(person.id, vector(i), b"JPEG-of-mallory", encoder=ENCODER)
        for i in (5, 6)
    ]
    gallery.delete_person(person.id)
    for key in client.scan_iter(f"{redis_settings.key_prefix}:*"):
        assert person.id.encode() not in key
        assert not any(e.encode() in key for e in encodings)
        kind = client.type(key)
        if kind == b"hash":
            content = b" ".join(k + b" " + v for k, v in client.hgetall(key).items())
        elif kind == b"stream":
            content = b" ".join(b" ".join(f.values()) for _, f in client.xrange(key))
        elif kind == b"string":
            content = client.get(key)
        else:
            content = b" ".join(client.smembers(key))
        assert person.id.encode() not in content and b"Mallory" not in content
        assert b"JPEG-of-mallory" not in content


def test_the_file_store_keeps_deleted_people_nowhere(tmp_path: Path) -> None:
    gallery = FileGallery(tmp_path / "g")
    person = gallery.add_person("Eve")
    gallery.add_encoding(person.id, vector(7), b"eve", encoder=ENCODER)
    gallery.delete_person(person.id)
    leftovers = [
        p for p in (tmp_path / "g").rglob("*") if p.name not in {"people", "version", ".lock"}
    ]
    assert leftovers == []


def test_index_follows_the_change_feed(gallery: Gallery) -> None:
    index = GalleryIndex(gallery)
    index.sync()
    assert len(index) == 0
    a = gallery.add_person("A")
    gallery.add_encoding(a.id, vector(10), b"a", encoder=ENCODER)
    b = gallery.add_person("B")
    gallery.add_encoding(b.id, vector(20), b"b", encoder=ENCODER)
    gallery.add_encoding(b.id, vector(21), b"b2", encoder=ENCODER)
    assert index.sync()
    assert len(index) == 3
    [[match]] = index.search(vector(20))
    assert match.person_id == b.id and match.distance < 1e-5
    gallery.delete_person(b.id)
    index.sync()
    assert len(index) == 1
    assert index.search(vector(20))[0][0].person_id == a.id


def test_index_search_ranks_people_by_their_closest_encoding() -> None:
    index = GalleryIndex()
    rng = np.random.default_rng(0)
    base = rng.normal(size=(50, 128)).astype(np.float32)
    index.add_local([Encoding(f"e{i}", f"p{i % 10}", base[i]) for i in range(50)])
    query = base[17] + 0.01
    matches = index.search(query, top_k=3)[0]
    assert matches[0].person_id == "p7"
    assert len({m.person_id for m in matches}) == 3
    brute = ((base - query) ** 2).sum(1)
    assert matches[0].distance == pytest.approx(brute.min(), abs=1e-3)  # float32 expansion
    second = min(brute[i] for i in range(50) if i % 10 != 7)
    assert matches[1].distance == pytest.approx(second, rel=1e-3)


def test_each_encoding_records_its_encoder_and_box(gallery: Gallery) -> None:
    ada = gallery.add_person("Ada")
    tagged = gallery.add_encoding(
        ada.id, vector(1), b"p1", encoder="sface_2021dec", box=(1, 2, 30, 40)
    )
    plain = gallery.add_encoding(ada.id, vector(2), b"p2", encoder=LEGACY_ENCODER)
    by_id = {e.id: e for e in gallery.encodings()}
    assert (by_id[tagged].encoder, by_id[tagged].box) == ("sface_2021dec", (1.0, 2.0, 30.0, 40.0))
    assert (by_id[plain].encoder, by_id[plain].box) == (LEGACY_ENCODER, None)
    assert gallery.encodings([tagged])[0].encoder == "sface_2021dec"
    with pytest.raises(ValueError, match="encoder name"):
        gallery.add_encoding(ada.id, vector(3), b"p3", encoder="../x y")


def test_an_encoding_cannot_be_added_without_naming_its_encoder(gallery: Gallery) -> None:
    """No default: a caller that forgot it would tag SFace encodings as dlib's, and the gallery
    would then refuse itself as mixed."""
    ada = gallery.add_person("Ada")
    with pytest.raises(TypeError, match="encoder"):
        gallery.add_encoding(ada.id, vector(1), b"p1")  # type: ignore[call-arg]
    assert gallery.encodings() == []


def test_records_written_before_the_encoder_field_read_as_dlib(tmp_path: Path, redis_settings):
    """The layouts of the previous release, written by hand: no record, no meta field."""
    files = FileGallery(tmp_path / "g")
    person = files.add_person("Old")
    folder = tmp_path / "g" / "people" / person.id
    (folder / f"{'a' * 32}.img").write_bytes(b"old photo")
    np.save(folder / f"{'a' * 32}.npy", vector(4))
    client = create_redis(redis_settings)
    redis_gallery = RedisGallery(client, redis_settings.key_prefix)
    old = redis_gallery.add_person("Old")
    encoding_id = redis_gallery.add_encoding(old.id, vector(5), b"old photo", encoder=ENCODER)
    client.hdel(f"{redis_settings.key_prefix}:gallery:meta", encoding_id)
    for store in (files, redis_gallery):
        [encoding] = store.encodings()
        assert encoding.encoder == LEGACY_ENCODER == "dlib_face_recognition_resnet_model_v1"
        assert encoding.box is None


def test_replace_keeps_the_photo_and_followers_see_it(gallery: Gallery) -> None:
    ada = gallery.add_person("Ada")
    old = gallery.add_encoding(ada.id, vector(1), b"photo-of-ada", encoder="other_v0")
    keep = gallery.add_encoding(ada.id, vector(2), b"second-photo", encoder="other_v0")
    follower = GalleryIndex(gallery, encoder="other_v0")
    follower.sync()
    new = gallery.replace_encoding(old, vector(3), encoder="other_v0", box=(0, 0, 9, 9))
    assert new != old
    assert set(gallery.person(ada.id).encoding_ids) == {new, keep}
    assert gallery.image(new) == b"photo-of-ada"
    with pytest.raises(KeyError):
        gallery.image(old)
    [replaced] = gallery.encodings([new])
    assert np.array_equal(replaced.vector, vector(3)) and replaced.box == (0, 0, 9, 9)
    follower.sync()
    assert len(follower) == 2
    assert follower.search(vector(3))[0][0].distance < 1e-5
    assert follower.search(vector(1))[0][0].distance > 0.1  # the old vector is gone
    with pytest.raises(KeyError):
        gallery.replace_encoding(old, vector(4), encoder="other_v0")


def test_an_interrupted_file_replace_is_finished_not_duplicated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gallery = FileGallery(tmp_path / "g")
    ada = gallery.add_person("Ada")
    old = gallery.add_encoding(ada.id, vector(1), b"photo", encoder="other_v0")

    def crash(*_args) -> None:
        raise OSError("power cut")

    with monkeypatch.context() as patch:
        patch.setattr(FileGallery, "_remove_encoding_files", staticmethod(crash))
        with pytest.raises(OSError):
            gallery.replace_encoding(old, vector(2), encoder="new_v1")
    assert len(gallery.person(ada.id).encoding_ids) == 2  # both: nothing lost
    new = gallery.replace_encoding(old, vector(3), encoder="new_v1")
    [encoding] = gallery.encodings()
    assert encoding.id == new and encoding.encoder == "new_v1"
    assert np.array_equal(encoding.vector, vector(2))  # the one written before the crash
    assert gallery.image(new) == b"photo"


def test_the_index_refuses_another_encoders_encodings(gallery: Gallery) -> None:
    ada = gallery.add_person("Ada")
    gallery.add_encoding(ada.id, vector(1), b"a", encoder="ours_v1")
    index = GalleryIndex(gallery, encoder="ours_v1")
    assert index.sync() and len(index) == 1
    bob = gallery.add_person("Bob")
    gallery.add_encoding(bob.id, vector(2), b"b", encoder="theirs_v2")
    with pytest.raises(EncoderMismatchError, match="facestream people reencode") as raised:
        index.sync()
    assert "theirs_v2" in str(raised.value) and "ours_v1" in str(raised.value)
    assert raised.value.found == {"theirs_v2": 1}
    assert len(index) == 1 and index.people == 1  # never loaded: never compared
    assert index.search(vector(2))[0][0].person_id == ada.id
    gallery.delete_person(bob.id)
    assert index.sync()  # consistent again


def test_a_multi_photo_person_is_also_matched_by_their_template() -> None:
    index = GalleryIndex()
    rng = np.random.default_rng(3)
    centre = vector(40)
    photos = [centre + 0.35 * rng.normal(size=128).astype(np.float32) / 11 for _ in range(4)]
    index.add_local([Encoding(f"e{i}", "multi", v) for i, v in enumerate(photos)])
    index.add_local([Encoding("s", "single", vector(41))])
    assert index.templates == 1
    [match] = index.search(centre)[0][:1]
    closest_photo = min(float(((centre - p) ** 2).sum()) for p in photos)
    assert match.person_id == "multi" and match.template
    assert match.distance < closest_photo
    [alone] = index.search(centre, templates=False)[0][:1]  # a fused query: photos only
    assert not alone.template and alone.distance == pytest.approx(closest_photo, rel=1e-4)
    mixed = index.search(np.stack([centre, centre]), templates=[False, True])
    assert [m[0].template for m in mixed] == [False, True]
    without = GalleryIndex(templates=False)
    without.add_local([Encoding(f"e{i}", "multi", v) for i, v in enumerate(photos)])
    assert without.search(centre)[0][0].distance == pytest.approx(closest_photo, rel=1e-4)
    index._remove("e0")
    index._remove("e1")
    index._remove("e2")
    assert index.templates == 0  # one photo left: no template
