"""Snapshots in Redis, for deployments: every recognizer writes, the API reads.

Keys under ``<prefix>:snapshots``:

    snap:<id>      hash  meta (JSON record), face (JPEG), frame (JPEG); expires at the snapshot's
                         expiry (PEXPIREAT), so Redis itself removes it
    person:<pid>   zset  the person's snapshot ids, scored by expiry; the key expires with its
                         latest member, so an expired snapshot leaves no key behind

Each write is one MULTI/EXEC transaction.
"""

from __future__ import annotations

import json
import logging
import time

import redis

from shared.redis_client import redis_errors
from shared.snapshots.base import ImageKind, Snapshot, SnapshotError, SnapshotStore, valid_id

log = logging.getLogger(__name__)


class RedisSnapshotStore(SnapshotStore):
    def __init__(self, client: redis.Redis, key_prefix: str, retention_h: float) -> None:
        super().__init__(retention_h)
        self.redis = client
        self.prefix = f"{key_prefix}:snapshots"

    def _snap(self, snapshot_id: str) -> str:
        return f"{self.prefix}:snap:{snapshot_id}"

    def _person(self, person_id: str) -> str:
        return f"{self.prefix}:person:{person_id}"

    def put(self, snapshot: Snapshot, face_jpeg: bytes, frame_jpeg: bytes | None) -> None:
        fields = {"meta": json.dumps(snapshot.to_dict()), "face": face_jpeg}
        if frame_jpeg is not None:
            fields["frame"] = frame_jpeg
        expires_ms = int(snapshot.expires_ts * 1000)
        with redis_errors(SnapshotError, "snapshot store"):
            old = self.get(snapshot.id)
            pipe = self.redis.pipeline(transaction=True)
            pipe.hset(self._snap(snapshot.id), mapping=fields)
            pipe.pexpireat(self._snap(snapshot.id), expires_ms)
            if old is not None and old.person_id and old.person_id != snapshot.person_id:
                pipe.zrem(self._person(old.person_id), snapshot.id)
            if snapshot.person_id:
                self._index(pipe, snapshot)
            pipe.execute()

    def _index(self, pipe, snapshot: Snapshot) -> None:
        """Add to the person's set; the set expires with its latest member (GT: never earlier)."""
        assert snapshot.person_id is not None
        key = self._person(snapshot.person_id)
        pipe.zadd(key, {snapshot.id: snapshot.expires_ts})
        pipe.pexpireat(key, int(snapshot.expires_ts * 1000) + 1000, gt=True)
        pipe.pexpireat(key, int(snapshot.expires_ts * 1000) + 1000, nx=True)

    def get(self, snapshot_id: str) -> Snapshot | None:
        if not valid_id(snapshot_id):
            return None
        with redis_errors(SnapshotError, "snapshot store"):
            meta = self.redis.hget(self._snap(snapshot_id), "meta")
        if meta is None:
            return None
        snapshot = Snapshot.from_dict(json.loads(meta))
        return snapshot if snapshot.expires_ts > time.time() else None

    def image(self, snapshot_id: str, kind: ImageKind) -> bytes | None:
        if not valid_id(snapshot_id):
            return None
        with redis_errors(SnapshotError, "snapshot store"):
            return self.redis.hget(self._snap(snapshot_id), kind)

    def name(self, snapshot_id: str, person_id: str | None) -> bool:
        snapshot = self.get(snapshot_id)
        if snapshot is None:
            return False
        renamed = Snapshot(**(snapshot.to_dict() | {"person_id": person_id}))
        with redis_errors(SnapshotError, "snapshot store"):
            pipe = self.redis.pipeline(transaction=True)
            pipe.hset(self._snap(snapshot_id), "meta", json.dumps(renamed.to_dict()))
            if snapshot.person_id:
                pipe.zrem(self._person(snapshot.person_id), snapshot_id)
            if person_id:
                self._index(pipe, renamed)
            pipe.execute()
        return True

    def delete(self, snapshot_id: str) -> bool:
        snapshot = self.get(snapshot_id)
        with redis_errors(SnapshotError, "snapshot store"):
            pipe = self.redis.pipeline(transaction=True)
            pipe.delete(self._snap(snapshot_id))
            if snapshot is not None and snapshot.person_id:
                pipe.zrem(self._person(snapshot.person_id), snapshot_id)
            return bool(pipe.execute()[0])

    def delete_person(self, person_id: str) -> int:
        key = self._person(person_id)
        with redis_errors(SnapshotError, "snapshot store"):
            ids = [i.decode() for i in self.redis.zrange(key, 0, -1)]
            pipe = self.redis.pipeline(transaction=True)
            for snapshot_id in ids:
                pipe.delete(self._snap(snapshot_id))
            pipe.delete(key)
            deleted = sum(pipe.execute()[:-1]) if ids else 0
        if deleted:
            log.info("deleted %d snapshot(s) of person %s", deleted, person_id)
        return deleted

    def of_person(self, person_id: str) -> list[str]:
        with redis_errors(SnapshotError, "snapshot store"):
            ids = self.redis.zrangebyscore(self._person(person_id), time.time(), "+inf")
        return [i.decode() for i in ids]

    def count(self) -> int:
        with redis_errors(SnapshotError, "snapshot store"):
            return sum(1 for _ in self.redis.scan_iter(f"{self.prefix}:snap:*", count=500))

    def keys(self) -> list[str]:
        """Every key of the store (tests check that deletion and expiry leave none)."""
        with redis_errors(SnapshotError, "snapshot store"):
            return [k.decode() for k in self.redis.scan_iter(f"{self.prefix}:*", count=500)]

    def purge_expired(self) -> int:
        """Drop expired members from the person sets (the snapshots expire by themselves)."""
        removed = 0
        with redis_errors(SnapshotError, "snapshot store"):
            for key in self.redis.scan_iter(f"{self.prefix}:person:*", count=500):
                removed += self.redis.zremrangebyscore(key, "-inf", time.time())
        return removed
