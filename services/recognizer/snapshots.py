"""The recognizer's side of event snapshots: keep each track's best face, store it on its events.

The recognizer reads the frames topic too (only the JPEG bytes of each camera's recent frames
are kept, in a byte-bounded ring: shared/frame_ring.py; never decoded unless needed): when a face of a track is clearly
better than the track's best so far (vote weight: size x detector score, ``IMPROVEMENT``), its frame
is decoded once and the face crop and thumbnail are cut (shared/snapshots/images.py) and kept in
memory. When the track gets an ``identified``, ``unknown`` or ``spoof`` event, the best images go
to the snapshot store and a ``snapshot`` event (event/3) refers to it; a ``withdrawn`` name unnames
the snapshot; at the track's end a better face seen since replaces the stored images (same id).

Without the frame (not received yet, or too old) the face crop is the aligned chip, and there is
no thumbnail. A store outage costs the snapshot only, never the event.
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass

import cv2
import numpy as np

from shared import metrics
from shared.bus.base import Message
from shared.frame_ring import FrameRing
from shared.schemas import (
    DetectedFace,
    FacesMessage,
    FrameMeta,
    RecognitionEvent,
    RecognitionEventV3,
    Topics,
    parse_event,
)
from shared.snapshots.base import SnapshotStore
from shared.snapshots.images import face_crop, thumbnail
from shared.worker import Outgoing

log = logging.getLogger(__name__)

IMPROVEMENT = 1.15
"""A face replaces the track's best only when its weight is 15% higher: few decodes per track."""
PURGE_EVERY_S = 60.0
SNAPSHOT_TYPES = ("identified", "unknown", "spoof")


@dataclass
class _Best:
    weight: float
    ts: float
    face_jpeg: bytes
    frame_jpeg: bytes | None
    snapshot_id: str | None = None
    person_id: str | None = None
    dirty: bool = True
    """Better images than the stored ones."""


class SnapshotKeeper:
    def __init__(self, store: SnapshotStore, face_px: int = 224, thumb_px: int = 320) -> None:
        self.store = store
        self.face_px = face_px
        self.thumb_px = thumb_px
        self.frames = FrameRing()
        self.best: dict[tuple[str, int], _Best] = {}
        self._next_purge = 0.0

    def keep_frame(self, message: Message) -> None:
        """Remember a frame's JPEG bytes (the message value) by camera and sequence number."""
        meta = FrameMeta.from_message(message)
        self.frames.add(meta.camera_id, meta.seq, message.value)

    def observe(
        self,
        faces: FacesMessage,
        usable: list[DetectedFace],
        track_ids: list[int],
        weights: list[float],
    ) -> None:
        """Consider each face as the best of the track it counts for (a re-associated track's
        faces count for the track it continues, as its events do)."""
        frame = None
        for face, track_id, weight in zip(usable, track_ids, weights, strict=True):
            key = (faces.camera_id, track_id)
            best = self.best.get(key)
            if best is not None and weight < best.weight * IMPROVEMENT:
                continue
            if frame is None:
                frame = self._frame(faces.camera_id, faces.seq)
            try:
                images = self._images(frame, face)
            except Exception:  # noqa: BLE001 - a bad image costs the snapshot, not the frame
                metrics.ERRORS.labels("recognizer", "snapshot_image").inc()
                continue
            if best is None:
                self.best[key] = _Best(weight, faces.capture_ts, *images)
            else:
                best.weight, best.ts, best.face_jpeg, best.frame_jpeg = (
                    weight,
                    faces.capture_ts,
                    *images,
                )
                best.dirty = True

    def _frame(self, camera_id: str, seq: int) -> np.ndarray | None:
        data = self.frames.get(camera_id, seq)
        if data is None:
            return None
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)

    def _images(self, frame: np.ndarray | None, face: DetectedFace) -> tuple[bytes, bytes | None]:
        if frame is None:
            return base64.b64decode(face.chip_jpeg_b64 or ""), None
        return face_crop(frame, face.box, self.face_px), thumbnail(frame, face.box, self.thumb_px)

    def on_events(self, outputs: list[Outgoing]) -> list[Outgoing]:
        """The outputs with a ``snapshot`` event after each event that gets a picture."""
        result: list[Outgoing] = []
        for out in outputs:
            result.append(out)
            if out.topic != Topics.EVENTS:
                continue
            event = parse_event(out.value)
            try:
                extra = self._on_event(event)
            except Exception:  # noqa: BLE001 - the store is down: the event goes out without
                metrics.ERRORS.labels("recognizer", "snapshot_store").inc()
                log.warning("snapshot store unavailable; event %s has no snapshot", event.event_id)
                extra = None
            if extra is not None:
                result.append(extra)
        return result

    def _on_event(self, event: RecognitionEvent) -> Outgoing | None:
        key = (event.camera_id, event.track_id)
        best = self.best.get(key)
        if event.type == "ended":
            if best is not None and best.snapshot_id and best.dirty:
                self._store(event, best)
            self.best.pop(key, None)
            return None
        if best is None:
            return None
        if event.type == "withdrawn" and best.snapshot_id:
            best.person_id = None
            self.store.name(best.snapshot_id, None)
            return None
        if event.type not in SNAPSHOT_TYPES:
            return None
        best.person_id = event.person_id if event.type == "identified" else None
        self._store(event, best)
        return _snapshot_event(event, best.snapshot_id)

    def _store(self, event: RecognitionEvent, best: _Best) -> None:
        record = self.store.new(event.camera_id, event.track_id, best.ts, best.person_id)
        if best.snapshot_id is not None:
            old = self.store.get(best.snapshot_id)
            if old is not None:  # same id and expiry: the reference in events stays valid
                record = type(record)(
                    **(record.to_dict() | {"id": old.id, "expires_ts": old.expires_ts})
                )
        self.store.put(record, best.face_jpeg, best.frame_jpeg)
        best.snapshot_id, best.dirty = record.id, False
        metrics.SNAPSHOTS.inc()

    def forget_camera(self, camera_id: str | None) -> None:
        """Drop a silent camera's frames (its tracks' ends come as events)."""
        self.frames.forget(camera_id)

    def tick(self) -> None:
        """Purge expired snapshots now and then (a file store does not expire by itself)."""
        if time.monotonic() < self._next_purge:
            return
        self._next_purge = time.monotonic() + PURGE_EVERY_S
        try:
            purged = self.store.purge_expired()
        except Exception:  # noqa: BLE001 - retried at the next purge
            log.warning("purging expired snapshots failed; retried in %.0f s", PURGE_EVERY_S)
            return
        if purged:
            log.info("purged %d expired snapshot(s)", purged)


def _snapshot_event(event: RecognitionEvent, snapshot_id: str | None) -> Outgoing:
    snap = RecognitionEventV3(
        type="snapshot",
        camera_id=event.camera_id,
        track_id=event.track_id,
        person_id=event.person_id,
        person_name=event.person_name,
        first_seen_ts=event.first_seen_ts,
        last_seen_ts=event.last_seen_ts,
        frames=event.frames,
        box=event.box,
        snapshot_id=snapshot_id,
        refers_to=event.event_id,
    )
    metrics.EVENTS.labels(snap.type).inc()
    return Outgoing(Topics.EVENTS, snap.to_bytes(), snap.camera_id, snap.headers())


def keeper_from_settings(settings) -> SnapshotKeeper | None:
    """The keeper ``FACESTREAM_SNAPSHOTS__*`` asks for, on the configured store; None when off."""
    if not settings.snapshots.enabled:
        return None
    from shared.snapshots import create_snapshot_store

    return SnapshotKeeper(
        create_snapshot_store(settings), settings.snapshots.face_px, settings.snapshots.thumb_px
    )
