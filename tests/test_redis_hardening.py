"""The Redis gallery under half-written records and deletes, against the real local Redis.

* A person whose name was written without its record (the old two-step ``add_person`` failing in
  between, reproduced here by writing exactly that) can be enrolled again.
* ``add_person`` writes the name and the record atomically (one Lua script): concurrent enrolls of
  one name give exactly one person.
* After ``delete_person`` the append-only file is rewritten: the photo's bytes and the name are on
  no file in Redis's data directory any more (they were before the rewrite).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from shared.gallery.redis_store import RedisGallery
from shared.redis_client import create_redis
from tests.helpers import wait_for


def vector(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=128).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def gallery(redis_settings) -> RedisGallery:
    return RedisGallery(create_redis(redis_settings), redis_settings.key_prefix)


def test_a_name_without_its_record_can_be_enrolled_again(gallery: RedisGallery) -> None:
    # What the old add_person left when it failed between its two writes.
    gallery.client.hset(gallery._key("names"), "Half Written", "f" * 32)
    assert gallery.find("Half Written") is None
    person = gallery.add_person("Half Written")
    assert gallery.find("Half Written").id == person.id
    gallery.add_encoding(person.id, vector(1), b"photo", encoder="sface_2021dec")
    assert [p.name for p in gallery.people()] == ["Half Written"]
    with pytest.raises(ValueError, match="already enrolled"):
        gallery.add_person("Half Written")  # a complete record still owns its name


def test_concurrent_enrolls_of_one_name_make_one_person(gallery: RedisGallery) -> None:
    def attempt(_: int) -> str:
        try:
            return gallery.add_person("Racer").id
        except ValueError:
            return "refused"

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(attempt, range(16)))
    winners = [o for o in outcomes if o != "refused"]
    assert len(winners) == 1
    assert gallery.client.hget(gallery._key("names"), "Racer").decode() == winners[0]
    assert [p.id for p in gallery.people()] == winners


def aof_files(client) -> list[Path]:
    folder = Path(client.config_get("dir")["dir"])
    name = client.config_get("appenddirname").get("appenddirname", "appendonlydir")
    return sorted(p for p in (folder / name).glob("*") if p.is_file())


def rewrite_done(client) -> bool:
    info = client.info("persistence")
    return not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]


def test_a_delete_rewrites_the_append_only_file(gallery: RedisGallery, unique: str) -> None:
    client = gallery.client
    if client.config_get("appendonly")["appendonly"] != "yes":
        pytest.fail("the local Redis runs with --appendonly yes (deploy/local/infra.sh)")
    marker = f"photo-bytes-{unique}".encode() * 4
    name = f"Deleted {unique}"
    person = gallery.add_person(name)
    gallery.add_encoding(person.id, vector(2), marker, encoder="sface_2021dec")
    wait_for(lambda: rewrite_done(client), 30, "an earlier AOF rewrite to finish")
    time.sleep(1.5)
    before = b"".join(p.read_bytes() for p in aof_files(client))
    assert marker in before and name.encode() in before  # the attack: it is on disk

    assert gallery.delete_person(person.id)
    wait_for(lambda: rewrite_done(client), 60, "the AOF rewrite after the delete")
    after = b"".join(p.read_bytes() for p in aof_files(client))
    assert marker not in after
    assert name.encode() not in after
    assert json.dumps(name).encode() not in after


def test_an_invalid_camera_entry_is_skipped_not_fatal(redis_settings) -> None:
    from shared.cameras import CameraSpec, RedisCameraRegistry

    client = create_redis(redis_settings)
    registry = RedisCameraRegistry(client, redis_settings.key_prefix)
    registry.put(CameraSpec(id="door", url="rtsp://cam/door"))
    client.hset(f"{redis_settings.key_prefix}:cameras", "evil", b'{"id": "../x", "url": ""}')
    client.hset(f"{redis_settings.key_prefix}:cameras", "junk", b"\xff not json")
    assert [c.id for c in registry.list()] == ["door"]
