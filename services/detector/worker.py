"""The detector service: frames in; faces with boxes, landmarks, track ids, aligned chips and
context crops (the face's surroundings, for liveness) out.

One tracker per camera, and one schedule (schedule.py): frames without motion or between two
detections of the faces on camera skip the face detector, their faces carried by optical flow
(tracking.py) and marked ``tracked``; the frames that are detected, of every camera in the
poll, go through the detector in one batched call.

Frames of a camera arrive in order on one partition (they are keyed by
camera id), so the tracker state of a camera lives on exactly one detector instance.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import cv2
import numpy as np

from services.detector.schedule import CameraSchedule, FaceState
from services.detector.tracker import FaceTracker, TrackIds
from services.detector.tracking import carry
from shared import metrics
from shared.bus.base import Message
from shared.face.chip_kinds import DLIB_150, ChipKind, chip_kind
from shared.face.chips import chip_to_b64
from shared.face.detection import FaceDetector
from shared.face.types import Detection
from shared.frames import Result, decode_frame, each, frame_size, guarded
from shared.liveness.blink import EyeLandmarker
from shared.liveness.context import context_crop, context_to_b64
from shared.liveness.recapture import frame_cues
from shared.schemas import Box, DetectedFace, FacesMessage, FrameMeta, Topics
from shared.settings import DetectorSettings, get_settings
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
        settings: DetectorSettings | None = None,
    ) -> None:
        """``chip``: the chip kind the configured encoder takes (shared/face/chip_kinds.py);
        ``settings``: motion gating and detect-then-track (default: the environment's).

        A camera's tracker is forgotten when the runner finds the camera idle (``expire``)."""
        images = get_settings().images
        self.settings = settings or get_settings().detector
        self.schedules: dict[str, CameraSchedule] = {}
        self.detector = detector
        self.chip = chip_kind(chip)
        self.recapture_cues = get_settings().liveness.sends_recapture_cues()
        """Send each face's recapture cues (the recapture liveness model's input)."""
        self.eyes = EyeLandmarker() if get_settings().liveness.sends_eye_ratios() else None
        """Measures each face's eye aspect ratio when some camera requires a blink."""
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
        """Decode and schedule every frame, detect the scheduled ones of every camera in one
        batched call, then detect-or-carry frame by frame in order (a carried frame needs its
        camera's frame before it)."""
        frames: list[tuple[int, FrameMeta, np.ndarray, np.ndarray, str]] = []
        for i, message, meta, _ in chunk:
            scheduled = guarded(self._scheduled, message, meta)
            if isinstance(scheduled, Exception):
                results[i] = scheduled
            else:
                frames.append((i, meta, *scheduled))
        wanted = [image for _, _, image, _, decision in frames if decision == "detected"]
        found = iter(self.detector.detect_batch(wanted) if wanted else [])
        for i, meta, image, grey, decision in frames:
            if decision == "detected":
                results[i] = guarded(self._detected, meta, image, grey, next(found))
            else:
                refine = decision == "refined"
                results[i] = guarded(self._carried, meta, image, grey, refine)

    def _scheduled(self, message: Message, meta: FrameMeta) -> tuple[np.ndarray, np.ndarray, str]:
        """The frame's pixels, grey copy, and what it gets (counted): ``detected`` (a full
        detection), ``refined``, ``tracked`` (carried) or ``gated``."""
        _, image = decode_frame(message, self.max_frame_pixels, meta)
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        reason = self._schedule(meta.camera_id).decide(grey)
        decision = _decision(reason)
        metrics.DETECTOR_FRAMES.labels(decision, reason).inc()
        return image, grey, decision

    def _schedule(self, camera_id: str) -> CameraSchedule:
        schedule = self.schedules.get(camera_id)
        if schedule is None:
            schedule = CameraSchedule.create(self.settings, self.detector.can_refine)
            self.schedules[camera_id] = schedule
        return schedule

    def _detected(
        self, meta: FrameMeta, image: np.ndarray, grey: np.ndarray, detections: list[Detection]
    ) -> list[Outgoing]:
        detections = [d for d in detections if min(d.box[2], d.box[3]) >= self.min_face_px]
        tracker = self.trackers.setdefault(meta.camera_id, FaceTracker(self.track_ids))
        schedule = self._schedule(meta.camera_id)
        if schedule.cut:
            tracker.tracks, schedule.cut = [], False
        elif schedule.previous_grey is not None and self.settings.detect_every > 1:
            for track_id, state in schedule.faces.items():  # predict, then associate
                if state.landmarks is not None:
                    moved = carry(schedule.previous_grey, grey, state.box, state.landmarks)
                    if moved.ok:
                        tracker.move(track_id, moved.box)
        track_ids = tracker.update([d.box for d in detections], meta.capture_ts)
        before = schedule.faces
        schedule.faces = {
            t: FaceState(d.box, d.landmarks, d.score, before[t].age + 1 if t in before else 0)
            for d, t in zip(detections, track_ids, strict=True)
        }
        schedule.previous_grey = grey
        faces = [
            _face(image, grey, d, t, self.chip, self.recapture_cues, eyes=self.eyes)
            for d, t in zip(detections, track_ids, strict=True)
        ]
        return self._message(meta, faces)

    def _carried(
        self, meta: FrameMeta, image: np.ndarray, grey: np.ndarray, refine: bool = False
    ) -> list[Outgoing]:
        """The camera's faces carried by optical flow from its previous frame (``tracked``); with
        ``refine`` each is then measured again on its carried box (``FaceDetector.refine``), so
        it has measured landmarks. A face the flow or the refinement loses is dropped and brings
        detection back on the next frame."""
        schedule = self._schedule(meta.camera_id)
        tracker = self.trackers.setdefault(meta.camera_id, FaceTracker(self.track_ids))
        moved: list[tuple[int, Detection | None]] = []
        for track_id, state in schedule.faces.items():
            if state.landmarks is None or schedule.previous_grey is None:
                continue
            flow = carry(schedule.previous_grey, grey, state.box, state.landmarks)
            moved.append(
                (track_id, Detection(flow.box, state.score, flow.landmarks) if flow.ok else None)
            )
        if refine:
            found = iter(self.detector.refine(image, [d.box for _, d in moved if d is not None]))
            moved = [(t, None if d is None else next(found)) for t, d in moved]
        faces = []
        for track_id, detection in moved:
            if detection is None or min(detection.box[2], detection.box[3]) < self.min_face_px:
                del schedule.faces[track_id]
                schedule.lost = True
                continue
            state = schedule.faces[track_id]
            state.box, state.landmarks = detection.box, detection.landmarks
            state.score, state.age = detection.score, state.age + 1
            tracker.carry(track_id, detection.box, meta.capture_ts)
            cues = refine and self.recapture_cues
            faces.append(
                _face(image, grey, detection, track_id, self.chip, cues, not refine, self.eyes)
            )
        schedule.previous_grey = grey
        return self._message(meta, faces)

    def _message(self, meta: FrameMeta, faces: list[DetectedFace]) -> list[Outgoing]:
        message = FacesMessage(
            camera_id=meta.camera_id,
            seq=meta.seq,
            capture_ts=meta.capture_ts,
            frame_width=meta.width,
            frame_height=meta.height,
            detector=self.detector.name,
            faces=faces,
        )
        return [Outgoing(Topics.FACES, message.to_bytes(), meta.camera_id, message.headers())]

    def snapshot(self) -> object:
        """The trackers and schedules (track ids already handed out stay used: ids only need to
        be unique)."""
        return copy.deepcopy((self.trackers, self.schedules), {id(self.track_ids): self.track_ids})

    def restore(self, state: object) -> None:
        self.trackers, self.schedules = state  # type: ignore[misc]  # what snapshot returned

    def expire(self, camera_id: str) -> Iterable[Outgoing]:
        self.trackers.pop(camera_id, None)
        self.schedules.pop(camera_id, None)
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


def _decision(reason: str) -> str:
    return "detected" if reason.startswith("detect") else reason


def _face(
    image: np.ndarray,
    gray: np.ndarray,
    detection: Detection,
    track_id: int,
    kind: ChipKind,
    cues: bool = False,
    tracked: bool = False,
    eyes: EyeLandmarker | None = None,
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
        recapture=frame_cues(image, detection.box).tolist()
        if cues and has_landmarks and not tracked
        else [],
        eye_aspect_ratio=min(eyes(gray, detection.box), 5.0) if eyes is not None else None,
        tracked=tracked,
    )
