"""The detector service: frames in; faces with boxes, landmarks, track ids, aligned chips and
context crops (the face's surroundings, for liveness) out.

One tracker per camera. Frames of a camera arrive in order on one partition (they are keyed by
camera id), so the tracker state of a camera lives on exactly one detector instance.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import cv2
import numpy as np

from services.detector.tracker import FaceTracker, TrackIds
from shared.bus.base import Message
from shared.face.chip_kinds import DLIB_150, ChipKind, chip_kind
from shared.face.chips import chip_to_b64
from shared.face.detection import FaceDetector
from shared.face.types import Detection
from shared.frames import Result, decode_frame, each, frame_size, guarded
from shared.liveness.context import context_crop, context_to_b64
from shared.schemas import Box, DetectedFace, FacesMessage, FrameMeta, Topics
from shared.settings import get_settings
from shared.worker import BatchWorker, Outgoing


class DetectorWorker(BatchWorker):
    name = "detector"
    topics = (Topics.FRAMES,)
    stream_checks = True

    def __init__(
        self,
        detector: FaceDetector,
        min_face_px: int = 40,
        max_frame_pixels: int | None = None,
        batch_pixels: int | None = None,
        chip: str = DLIB_150,
    ) -> None:
        """``chip``: the chip kind the configured encoder takes (shared/face/chip_kinds.py).

        A camera's tracker is forgotten when the runner finds the camera idle (``expire``)."""
        images = get_settings().images
        self.detector = detector
        self.chip = chip_kind(chip)
        self.min_face_px = min_face_px
        self.max_frame_pixels = max_frame_pixels or images.max_frame_pixels
        self.batch_pixels = batch_pixels or images.batch_pixels
        self.track_ids = TrackIds()
        self.trackers: dict[str, FaceTracker] = {}

    def process_batch(self, messages: list[Message]) -> list[list[Outgoing] | Exception]:
        """Check each frame's size from its header, then decode, detect (one call per chunk) and
        track in order, in chunks of at most ``batch_pixels``: the memory a poll takes is bounded
        by the budget, not by what the producers sent."""
        results, sized = each(messages, lambda m: frame_size(m, self.max_frame_pixels))
        for chunk in _pixel_chunks(sized, self.batch_pixels):
            self._detect_chunk([(i, messages[i], *sizes) for i, sizes in chunk], results)
        return results

    def _detect_chunk(
        self, chunk: list[tuple[int, Message, FrameMeta, int]], results: list[Result]
    ) -> None:
        frames: list[tuple[int, FrameMeta, np.ndarray]] = []
        for i, message, meta, _ in chunk:
            decoded = guarded(decode_frame, message, self.max_frame_pixels, meta)
            if isinstance(decoded, Exception):
                results[i] = decoded
            else:
                frames.append((i, *decoded))
        found = self.detector.detect_batch([image for _, _, image in frames]) if frames else []
        for (i, meta, image), detections in zip(frames, found, strict=True):
            results[i] = guarded(self._faces, meta, image, detections)

    def _faces(
        self, meta: FrameMeta, image: np.ndarray, detections: list[Detection]
    ) -> list[Outgoing]:
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if detections else image  # context crops
        detections = [d for d in detections if min(d.box[2], d.box[3]) >= self.min_face_px]
        tracker = self.trackers.setdefault(meta.camera_id, FaceTracker(self.track_ids))
        track_ids = tracker.update([d.box for d in detections], meta.capture_ts)
        faces = FacesMessage(
            camera_id=meta.camera_id,
            seq=meta.seq,
            capture_ts=meta.capture_ts,
            frame_width=meta.width,
            frame_height=meta.height,
            detector=self.detector.name,
            faces=[
                _face(image, gray, d, t, self.chip)
                for d, t in zip(detections, track_ids, strict=True)
            ],
        )
        return [Outgoing(Topics.FACES, faces.to_bytes(), meta.camera_id, faces.headers())]

    def snapshot(self) -> dict[str, FaceTracker]:
        """The trackers (track ids already handed out stay used: ids only need to be unique)."""
        return copy.deepcopy(self.trackers, {id(self.track_ids): self.track_ids})

    def restore(self, state: object) -> None:
        self.trackers = state  # type: ignore[assignment]  # what snapshot returned

    def expire(self, camera_id: str) -> Iterable[Outgoing]:
        self.trackers.pop(camera_id, None)
        return ()


def _pixel_chunks(
    sized: list[tuple[int, tuple[FrameMeta, int]]], budget: int
) -> Iterable[list[tuple[int, tuple[FrameMeta, int]]]]:
    """Consecutive runs of frames whose pixels add up to at most ``budget`` (a frame alone may
    reach it: each is already under the per-frame limit). Order is kept: tracking needs it."""
    chunk: list[tuple[int, tuple[FrameMeta, int]]] = []
    total = 0
    for item in sized:
        pixels = item[1][1]
        if chunk and total + pixels > budget:
            yield chunk
            chunk, total = [], 0
        chunk.append(item)
        total += pixels
    if chunk:
        yield chunk


def _face(
    image: np.ndarray, gray: np.ndarray, detection: Detection, track_id: int, kind: ChipKind
) -> DetectedFace:
    x, y, w, h = detection.box
    has_landmarks = detection.landmarks is not None
    chip = (
        chip_to_b64(kind.align(image, detection.landmarks))
        if detection.landmarks is not None
        else None
    )
    return DetectedFace(
        box=Box(x=float(x), y=float(y), w=float(w), h=float(h)),
        score=float(min(1.0, max(0.0, detection.score))),
        landmarks=[(float(px), float(py)) for px, py in detection.landmarks]
        if detection.landmarks is not None
        else [],
        track_id=track_id,
        chip_jpeg_b64=chip,
        chip_kind=kind.name,
        context_jpeg_b64=context_to_b64(context_crop(gray, detection.box))
        if has_landmarks
        else None,
    )
