"""Gallery in Redis, shared by every recognizer, the API and the CLI.

Keys under ``<prefix>:gallery``:

    people                 hash  person_id -> {"name", "created_ts"}
    names                  hash  name -> person_id            (names are unique)
    person:<id>:encodings  set   the person's encoding ids
    owner                  hash  encoding_id -> person_id
    vectors                hash  encoding_id -> 128 float32, little-endian
    meta                   hash  encoding_id -> {"encoder", "box"} (JSON; absent in records
                                 older than it: dlib's, see LEGACY_ENCODER)
    image:<encoding_id>    string  the enrollment photo
    changes                stream  the change feed: {op, encoding_ids[, person_id]}

Every write is one transaction: MULTI/EXEC, or a Lua script where it must read before writing
(``add_person``: the name and the record are written together or not at all). A name whose record
is missing (half-written by an older version, or by hand) does not block the name: ``find``
ignores it and ``add_person`` takes it over. Deleting a person removes their keys, hash fields and
earlier feed entries; the feed keeps only a "delete" entry with the (random) encoding ids,
which followers need to drop those rows, and which the stream's length cap trims in time. After a
delete the append-only file is rewritten (BGREWRITEAOF), so that the photo and name leave the disk
too, not only memory (docs/security.md: what RDB snapshots and replicas keep).
"""

from __future__ import annotations

import json
import logging

import numpy as np
import redis

from shared.gallery.base import (
    LEGACY_ENCODER,
    Change,
    Encoding,
    Gallery,
    GalleryError,
    Person,
    PersonNotFoundError,
    new_id,
    now,
    validate_box,
    validate_encoder,
    validate_name,
    validate_vector,
)
from shared.redis_client import redis_errors

FEED_MAX_LENGTH = 100_000
log = logging.getLogger(__name__)

ADD_PERSON = """
local existing = redis.call('HGET', KEYS[1], ARGV[1])
if existing and redis.call('HEXISTS', KEYS[2], existing) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
return 1
"""
"""KEYS: names, people; ARGV: name, id, record. The name is free unless it points at a record."""
REPLACE_ATTEMPTS = 5
"""A replace retries when the person changed under it (optimistic locking with WATCH)."""


class RedisGallery(Gallery):
    def __init__(self, client: redis.Redis, key_prefix: str = "facestream") -> None:
        self.client = client
        self.prefix = f"{key_prefix}:gallery"
        self._add_person = client.register_script(ADD_PERSON)

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def add_person(self, name: str) -> Person:
        name = validate_name(name)
        person = Person(new_id(), name, now())
        meta = json.dumps({"name": name, "created_ts": person.created_ts})
        with redis_errors(GalleryError, "gallery"):
            added = self._add_person(
                keys=[self._key("names"), self._key("people")], args=[name, person.id, meta]
            )
        if not added:
            raise ValueError(f"a person named {name!r} is already enrolled")
        return person

    def add_encoding(
        self,
        person_id: str,
        vector: np.ndarray,
        image: bytes,
        *,
        encoder: str,
        box: tuple[float, float, float, float] | None = None,
    ) -> str:
        vector = validate_vector(vector)
        meta = json.dumps({"encoder": validate_encoder(encoder), "box": validate_box(box)})
        self.person(person_id)
        encoding_id = new_id()
        with redis_errors(GalleryError, "gallery"):
            pipe = self.client.pipeline(transaction=True)
            self._queue_add(pipe, person_id, encoding_id, vector, meta, image)
            pipe.execute()
        return encoding_id

    def _queue_add(
        self, pipe, person_id: str, encoding_id: str, vector: np.ndarray, meta: str, image: bytes
    ) -> None:
        pipe.sadd(self._key("person", person_id, "encodings"), encoding_id)
        pipe.hset(self._key("owner"), encoding_id, person_id)
        pipe.hset(self._key("vectors"), encoding_id, vector.astype("<f4").tobytes())
        pipe.hset(self._key("meta"), encoding_id, meta)
        pipe.set(self._key("image", encoding_id), image)
        pipe.xadd(
            self._key("changes"),
            {"op": "add", "person_id": person_id, "encoding_ids": encoding_id},
            maxlen=FEED_MAX_LENGTH,
            approximate=True,
        )

    def replace_encoding(
        self,
        encoding_id: str,
        vector: np.ndarray,
        *,
        encoder: str,
        box: tuple[float, float, float, float] | None = None,
    ) -> str:
        """One MULTI/EXEC: the new encoding (same photo) in, the old one out, both in the feed.

        WATCHes the person's encoding set and the old photo, so a concurrent delete or enrollment
        makes the transaction retry rather than resurrect a deleted person's data.
        """
        vector = validate_vector(vector)
        meta = json.dumps({"encoder": validate_encoder(encoder), "box": validate_box(box)})
        with redis_errors(GalleryError, "gallery"):
            for _ in range(REPLACE_ATTEMPTS):
                owner = self.client.hget(self._key("owner"), encoding_id)
                if owner is None:
                    raise KeyError(encoding_id)
                person_id = owner.decode()
                members = self._key("person", person_id, "encodings")
                with self.client.pipeline(transaction=True) as pipe:
                    try:
                        pipe.watch(members, self._key("image", encoding_id))
                        image = pipe.get(self._key("image", encoding_id))
                        if image is None or not pipe.sismember(members, encoding_id):
                            raise KeyError(encoding_id)
                        replacement = new_id()
                        pipe.multi()
                        self._queue_add(pipe, person_id, replacement, vector, meta, image)
                        pipe.srem(members, encoding_id)
                        for field in ("owner", "vectors", "meta"):
                            pipe.hdel(self._key(field), encoding_id)
                        pipe.delete(self._key("image", encoding_id))
                        pipe.xadd(
                            self._key("changes"),
                            {"op": "delete", "encoding_ids": encoding_id},
                            maxlen=FEED_MAX_LENGTH,
                            approximate=True,
                        )
                        pipe.execute()
                        return replacement
                    except redis.WatchError:
                        continue
        raise GalleryError(f"encoding {encoding_id} kept changing during the replace; try again")

    def delete_person(self, person_id: str) -> bool:
        try:
            person = self.person(person_id)
        except PersonNotFoundError:
            return False
        encoding_ids = list(person.encoding_ids)
        with redis_errors(GalleryError, "gallery"):
            earlier = [
                entry_id
                for entry_id, fields in self.client.xrange(self._key("changes"))
                if fields.get(b"person_id") == person_id.encode()
            ]
            pipe = self.client.pipeline(transaction=True)
            pipe.hdel(self._key("people"), person_id)
            pipe.hdel(self._key("names"), person.name)
            pipe.delete(self._key("person", person_id, "encodings"))
            if encoding_ids:
                pipe.hdel(self._key("owner"), *encoding_ids)
                pipe.hdel(self._key("vectors"), *encoding_ids)
                pipe.hdel(self._key("meta"), *encoding_ids)
                pipe.delete(*(self._key("image", e) for e in encoding_ids))
            if earlier:
                pipe.xdel(self._key("changes"), *earlier)
            pipe.xadd(
                self._key("changes"),
                {"op": "delete", "encoding_ids": ",".join(encoding_ids)},
                maxlen=FEED_MAX_LENGTH,
                approximate=True,
            )
            pipe.execute()
        self._rewrite_append_only_file()
        return True

    def _rewrite_append_only_file(self) -> None:
        """Start an AOF rewrite so the deleted photo and name leave the disk: until then the
        append-only file still holds the commands that wrote them. Best effort: a managed Redis
        may forbid CONFIG/BGREWRITEAOF, and a rewrite already running started before the delete
        (both logged; docs/security.md says what an operator does then)."""
        try:
            if self.client.config_get("appendonly").get("appendonly") != "yes":
                return
            self.client.bgrewriteaof()
        except redis.ResponseError as error:
            log.warning(
                "deleted data may stay in Redis's append-only file until its next rewrite: %s",
                error,
            )
        except redis.RedisError as error:
            log.warning("could not start an append-only file rewrite after a delete: %s", error)

    def people(self) -> list[Person]:
        with redis_errors(GalleryError, "gallery"):
            raw = self.client.hgetall(self._key("people"))
            pipe = self.client.pipeline(transaction=False)
            ids = [pid.decode() for pid in raw]
            for pid in ids:
                pipe.smembers(self._key("person", pid, "encodings"))
            members = pipe.execute()
        people = [_person(pid, raw[pid.encode()], m) for pid, m in zip(ids, members, strict=True)]
        return sorted(people, key=lambda p: p.name)

    def person(self, person_id: str) -> Person:
        with redis_errors(GalleryError, "gallery"):
            meta = self.client.hget(self._key("people"), person_id)
            if meta is None:
                raise PersonNotFoundError(person_id)
            members = self.client.smembers(self._key("person", person_id, "encodings"))
        return _person(person_id, meta, members)

    def find(self, name: str) -> Person | None:
        with redis_errors(GalleryError, "gallery"):
            person_id = self.client.hget(self._key("names"), name)
        if not person_id:
            return None
        try:
            return self.person(person_id.decode())
        except PersonNotFoundError:
            return None  # a name without its record: free, add_person takes it over

    def encodings(self, encoding_ids: list[str] | None = None) -> list[Encoding]:
        with redis_errors(GalleryError, "gallery"):
            if encoding_ids is None:
                owners = {
                    k.decode(): v.decode()
                    for k, v in self.client.hscan_iter(self._key("owner"), count=10_000)
                }
                vectors = dict(self.client.hscan_iter(self._key("vectors"), count=10_000))
                metas = dict(self.client.hscan_iter(self._key("meta"), count=10_000))
                items = [
                    (eid, owners.get(eid), vectors.get(eid.encode()), metas.get(eid.encode()))
                    for eid in owners
                ]
            elif encoding_ids:
                pipe = self.client.pipeline(transaction=False)
                for field in ("owner", "vectors", "meta"):
                    pipe.hmget(self._key(field), encoding_ids)
                owner_values, vector_values, meta_values = pipe.execute()
                items = [
                    (eid, o.decode() if o else None, v, m)
                    for eid, o, v, m in zip(
                        encoding_ids, owner_values, vector_values, meta_values, strict=True
                    )
                ]
            else:
                items = []
        return [
            _encoding(eid, owner, vector, meta)
            for eid, owner, vector, meta in items
            if owner is not None and vector is not None
        ]

    def image(self, encoding_id: str) -> bytes:
        with redis_errors(GalleryError, "gallery"):
            data = self.client.get(self._key("image", encoding_id))
        if data is None:
            raise KeyError(encoding_id)
        return data

    def cursor(self) -> str:
        with redis_errors(GalleryError, "gallery"):
            entries = self.client.xrevrange(self._key("changes"), count=1)
        return entries[0][0].decode() if entries else "0-0"

    def changes(self, cursor: str) -> tuple[str, list[Change]] | None:
        with redis_errors(GalleryError, "gallery"):
            first = self.client.xrange(self._key("changes"), count=1)
            if cursor != "0-0" and (
                not first or _stream_id(first[0][0].decode()) > _stream_id(cursor)
            ):
                return None  # the feed was trimmed or lost past our position: reload
            entries = self.client.xrange(self._key("changes"), min=f"({cursor}", count=10_000)
        changes = [
            Change(
                op=fields[b"op"].decode(),
                person_id=fields.get(b"person_id", b"").decode(),
                encoding_ids=tuple(e for e in fields[b"encoding_ids"].decode().split(",") if e),
            )
            for _, fields in entries
        ]
        return (entries[-1][0].decode() if entries else cursor), changes


def _person(person_id: str, meta: bytes, members: set[bytes]) -> Person:
    data = json.loads(meta)
    encodings = tuple(sorted(m.decode() for m in members))
    return Person(person_id, data["name"], data["created_ts"], encodings)


def _encoding(encoding_id: str, owner: str, vector: bytes, meta: bytes | None) -> Encoding:
    record = json.loads(meta) if meta else {}
    box = record.get("box")
    return Encoding(
        encoding_id,
        owner,
        np.frombuffer(vector, dtype="<f4").astype(np.float32),
        record.get("encoder", LEGACY_ENCODER),
        tuple(box) if box is not None else None,
    )


def _stream_id(value: str) -> tuple[int, int]:
    millis, _, sequence = value.partition("-")
    return int(millis), int(sequence or 0)
