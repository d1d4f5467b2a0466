"""Gallery contract (Redis and file store), deletion leaving no trace, and the in-memory index."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shared.gallery.base import Encoding, Gallery, PersonNotFoundError
from shared.gallery.file_store import FileGallery
from shared.gallery.index import GalleryIndex
from shared.gallery.redis_store import RedisGallery
from shared.redis_client import create_redis


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
    e1 = gallery.add_encoding(ada.id, vector(1), b"photo-1")
    e2 = gallery.add_encoding(ada.id, vector(2), b"photo-2")
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
        gallery.add_encoding(person.id, np.zeros(64), b"x")
    with pytest.raises(ValueError):
        gallery.add_encoding(person.id, np.full(128, np.nan), b"x")
    with pytest.raises(PersonNotFoundError):
        gallery.add_encoding("0" * 32, vector(1), b"x")


def test_delete_removes_the_person_everywhere(gallery: Gallery) -> None:
    keep = gallery.add_person("Keep")
    gallery.add_encoding(keep.id, vector(3), b"keep")
    gone = gallery.add_person("Gone")
    encoding = gallery.add_encoding(gone.id, vector(4), b"gone-photo")
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
    encodings = [gallery.add_encoding(person.id, vector(i), b"JPEG-of-mallory") for i in (5, 6)]
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
    gallery.add_encoding(person.id, vector(7), b"eve")
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
    gallery.add_encoding(a.id, vector(10), b"a")
    b = gallery.add_person("B")
    gallery.add_encoding(b.id, vector(20), b"b")
    gallery.add_encoding(b.id, vector(21), b"b2")
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
