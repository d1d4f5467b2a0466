"""Event snapshots: the best face of a track and a small thumbnail of its frame, kept for a while.

An event names a person; a snapshot lets a human check that name (or give one to an unknown
face). Snapshots are biometric data, so they are bounded in three ways every store implements:

* **retention**: each snapshot expires ``retention_h`` after it was taken and then leaves no key or
  file (Redis expires it by itself; the file store deletes it in ``purge_expired``, and never
  returns an expired one meanwhile);
* **deletion with the person**: ``delete_person`` removes every snapshot named as them;
* **no logging**: stores log ids and counts, never images.

Two stores behind one interface: files under ``data_dir/snapshots`` (the embedded default) and
Redis (a deployment: every recognizer writes, the API reads).
"""

from __future__ import annotations

import re
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

SNAPSHOT_ID = re.compile(r"^[0-9a-f]{32}$")
"""Snapshot ids are random hex: they name files, so nothing else is ever accepted."""

ImageKind = Literal["face", "frame"]


class SnapshotError(RuntimeError):
    """The snapshot store is unreachable."""


def new_snapshot_id() -> str:
    return uuid.uuid4().hex


def valid_id(snapshot_id: str) -> bool:
    return bool(SNAPSHOT_ID.match(snapshot_id))


@dataclass(frozen=True)
class Snapshot:
    """What is known of a snapshot besides its images (no biometric data)."""

    id: str
    camera_id: str
    track_id: int
    ts: float
    """When the face was captured (the frame's capture time)."""
    expires_ts: float
    person_id: str | None = None
    """The person the track was identified as; None for unknown faces and withdrawn names."""

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "camera_id": self.camera_id,
            "track_id": self.track_id,
            "ts": self.ts,
            "expires_ts": self.expires_ts,
            "person_id": self.person_id,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Snapshot:
        return cls(
            id=str(data["id"]),
            camera_id=str(data["camera_id"]),
            track_id=int(data["track_id"]),
            ts=float(data["ts"]),
            expires_ts=float(data["expires_ts"]),
            person_id=data.get("person_id"),
        )


class SnapshotStore(ABC):
    """Where snapshots live; see the module docstring for the rules every store keeps."""

    def __init__(self, retention_h: float) -> None:
        self.retention_s = retention_h * 3600.0

    def new(
        self, camera_id: str, track_id: int, ts: float, person_id: str | None = None
    ) -> Snapshot:
        """A snapshot record (not stored yet) expiring ``retention_h`` from now."""
        return Snapshot(
            new_snapshot_id(), camera_id, track_id, ts, time.time() + self.retention_s, person_id
        )

    @abstractmethod
    def put(self, snapshot: Snapshot, face_jpeg: bytes, frame_jpeg: bytes | None) -> None:
        """Store (or replace, same id) a snapshot and its images."""

    @abstractmethod
    def get(self, snapshot_id: str) -> Snapshot | None:
        """The record, or None when unknown, deleted or expired."""

    @abstractmethod
    def image(self, snapshot_id: str, kind: ImageKind) -> bytes | None:
        """The face crop or the frame thumbnail (JPEG); None when absent or expired."""

    @abstractmethod
    def name(self, snapshot_id: str, person_id: str | None) -> bool:
        """Name the snapshot as ``person_id`` (None: nobody, e.g. a withdrawn identification)."""

    @abstractmethod
    def delete(self, snapshot_id: str) -> bool: ...

    @abstractmethod
    def delete_person(self, person_id: str) -> int:
        """Delete every snapshot named as ``person_id``; how many were deleted."""

    @abstractmethod
    def of_person(self, person_id: str) -> list[str]:
        """Ids of the live snapshots named as ``person_id``."""

    @abstractmethod
    def count(self) -> int:
        """Live snapshots (to check deletion and expiry)."""

    def purge_expired(self) -> int:
        """Remove what expired (stores that expire by themselves have nothing to do)."""
        return 0
