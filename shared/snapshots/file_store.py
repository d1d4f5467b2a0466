"""Snapshots as files, the embedded default: ``<dir>/<id>.json``, ``.face.jpg``, ``.frame.jpg``.

Files are written to a temporary name and renamed, so a reader never sees half an image. An
expired snapshot is never returned, and ``purge_expired`` (called by the recognizer every minute
and by the API when it lists) deletes its files.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

from shared.snapshots.base import ImageKind, Snapshot, SnapshotStore, valid_id

log = logging.getLogger(__name__)


class FileSnapshotStore(SnapshotStore):
    def __init__(self, directory: Path, retention_h: float) -> None:
        super().__init__(retention_h)
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock = threading.Lock()

    def _paths(self, snapshot_id: str) -> dict[str, Path]:
        if not valid_id(snapshot_id):
            raise ValueError("not a snapshot id")
        base = self.directory / snapshot_id
        return {
            "meta": base.with_suffix(".json"),
            "face": base.with_suffix(".face.jpg"),
            "frame": base.with_suffix(".frame.jpg"),
        }

    def put(self, snapshot: Snapshot, face_jpeg: bytes, frame_jpeg: bytes | None) -> None:
        paths = self._paths(snapshot.id)
        with self._lock:
            _write(paths["face"], face_jpeg)
            if frame_jpeg is not None:
                _write(paths["frame"], frame_jpeg)
            _write(paths["meta"], json.dumps(snapshot.to_dict()).encode())

    def get(self, snapshot_id: str) -> Snapshot | None:
        if not valid_id(snapshot_id):
            return None
        try:
            snapshot = Snapshot.from_dict(json.loads(self._paths(snapshot_id)["meta"].read_bytes()))
        except (OSError, ValueError, KeyError):
            return None
        return snapshot if snapshot.expires_ts > time.time() else None

    def image(self, snapshot_id: str, kind: ImageKind) -> bytes | None:
        if self.get(snapshot_id) is None:
            return None
        try:
            return self._paths(snapshot_id)[kind].read_bytes()
        except OSError:
            return None

    def name(self, snapshot_id: str, person_id: str | None) -> bool:
        with self._lock:
            snapshot = self.get(snapshot_id)
            if snapshot is None:
                return False
            record = snapshot.to_dict() | {"person_id": person_id}
            _write(self._paths(snapshot_id)["meta"], json.dumps(record).encode())
            return True

    def delete(self, snapshot_id: str) -> bool:
        if not valid_id(snapshot_id):
            return False
        with self._lock:
            return self._remove(snapshot_id)

    def _remove(self, snapshot_id: str) -> bool:
        found = False
        for path in self._paths(snapshot_id).values():
            try:
                path.unlink()
                found = True
            except FileNotFoundError:
                pass
        return found

    def _records(self) -> list[Snapshot]:
        records = []
        for path in self.directory.glob("*.json"):
            try:
                records.append(Snapshot.from_dict(json.loads(path.read_bytes())))
            except (OSError, ValueError, KeyError):
                continue
        return records

    def delete_person(self, person_id: str) -> int:
        with self._lock:
            doomed = [s.id for s in self._records() if s.person_id == person_id]
            for snapshot_id in doomed:
                self._remove(snapshot_id)
        if doomed:
            log.info("deleted %d snapshot(s) of person %s", len(doomed), person_id)
        return len(doomed)

    def of_person(self, person_id: str) -> list[str]:
        now = time.time()
        return [s.id for s in self._records() if s.person_id == person_id and s.expires_ts > now]

    def count(self) -> int:
        now = time.time()
        return sum(1 for s in self._records() if s.expires_ts > now)

    def purge_expired(self) -> int:
        """Delete expired snapshots, and images whose record is gone (a crash between writes)."""
        now = time.time()
        with self._lock:
            records = self._records()
            expired = [s.id for s in records if s.expires_ts <= now]
            for snapshot_id in expired:
                self._remove(snapshot_id)
            live = {s.id for s in records if s.expires_ts > now}
            for path in self.directory.glob("*.jpg"):
                if path.name.split(".")[0] not in live and path.stat().st_mtime < now - 60:
                    path.unlink(missing_ok=True)
        return len(expired)


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)
