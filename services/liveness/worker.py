"""The liveness service: faces in, a verdict per track out, every ``hop`` frames of the track.

For each face with a track id the service turns what the detector sent (landmarks, box, context
crop) into one row of per-frame features, against the same track's previous frame, and
keeps the last WINDOW rows. Once a track has a full window, and then every ``hop`` frames, the
window goes to the sequence model; all windows due in a poll are judged in one call. The
windows' evidence adds up per track under the camera's evidence policy (``evidence.py``): a
track stays pending until it has enough live evidence (one lucky window is never enough), and
can turn into an attack at any later window. Pending windows publish nothing; once decided,
every judged window publishes a ``liveness/1`` verdict (live, or an attack) the recognizer gates
on. Cameras whose liveness is ``off`` are not judged at all.

With ``require_blink`` (a camera's or the global setting) the service also counts each track's
blinks from the eye aspect ratio the detector sends (``blink.py``), on every frame, flow-carried
ones too: the track is not named before its first blink.

Faces the detector carried by optical flow instead of detecting (``tracked``, between two
detections of a settled track: services/detector/schedule.py) are skipped: their landmarks are
predicted, and the model learned its features on measured ones (a flow-carried face lacks the
detector's landmark jitter and reads as flatter than it is). A track's first
``detector.settle_frames`` frames are all detected, so its first windows (the ones that decide
whether it is live) are as before; later windows are made of every ``detect_every``-th frame.

Frames of a camera arrive in order on one partition (keyed by camera id), so a track's state
lives on one liveness instance, as the detector's trackers do.
"""

from __future__ import annotations

import copy
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from shared import metrics
from shared.bus.base import Message
from shared.face.chip_kinds import DLIB_150
from shared.face.chips import chip_from_b64
from shared.frames import each
from shared.liveness.blink import BlinkCounter
from shared.liveness.context import context_from_b64
from shared.liveness.evidence import EvidencePolicy, TrackEvidence
from shared.liveness.features import frame_features
from shared.liveness.model import LivenessModel
from shared.liveness.pixels import PIXEL_FRAMES, chip_centre
from shared.liveness.recapture import CUES
from shared.schemas import DetectedFace, FacesMessage, LivenessVerdict, Topics
from shared.settings import LivenessSettings
from shared.worker import BatchWorker, Outgoing


@dataclass
class TrackWindow:
    """One track's recent per-frame features and its windows' scores."""

    rows: deque
    chips: deque = field(default_factory=lambda: deque(maxlen=16))
    """Per frame of ``rows``: the pixel model's chip (``pixels.chip_centre``), or for the
    recapture model the face's recapture cues (the detector's ``recapture``)."""
    previous: tuple[np.ndarray, tuple[float, ...]] | None = None
    """The previous frame's landmarks and box."""
    since_window: int = 0
    windows: int = 0
    """Windows sent to the model (their scores may still be on the way, within a poll)."""
    evidence: TrackEvidence = field(default_factory=lambda: TrackEvidence(EvidencePolicy()))
    """The track's accumulated evidence and state (pending, live, attack)."""
    blinks: BlinkCounter = field(default_factory=BlinkCounter)
    last_seen_ts: float = 0.0


class LivenessWorker(BatchWorker):
    name = "liveness"
    topics = (Topics.FACES,)
    stream_checks = True

    def __init__(self, model: LivenessModel, settings: LivenessSettings) -> None:
        self.model = model
        self.settings = settings
        self.tracks: dict[tuple[str, int], TrackWindow] = {}
        self._stream_time: dict[str, float] = {}
        """Per camera: its latest capture time (never ahead of this service's clock)."""

    def process_batch(self, messages: list[Message]) -> list[list[Outgoing] | Exception]:
        """Features for every face of the poll, then one model call for the windows that are due."""
        results, observed = each(messages, self._observe)
        due = [(i, *window) for i, windows in observed for window in windows]
        if not due:
            return results
        started = time.perf_counter()
        motion = np.stack([w[0] for *_, w in due])
        if getattr(self.model, "needs_chips", False) or getattr(self.model, "needs_cues", False):
            extra = np.stack([cast(np.ndarray, w[1]) for *_, w in due])  # chips or cues
            scores = self.model.probability_live(motion, extra)  # type: ignore[call-arg]
        else:
            scores = self.model.probability_live(motion)
        metrics.LIVENESS_MODEL_SECONDS.observe(time.perf_counter() - started)
        for (i, camera_id, track_id, _), score in zip(due, scores, strict=True):
            verdict = self._verdict(camera_id, track_id, float(score))
            result = results[i]
            if isinstance(result, list) and verdict is not None:
                result.append(verdict)
        return results

    def snapshot(self) -> object:
        return copy.deepcopy((self.tracks, self._stream_time))

    def restore(self, state: object) -> None:
        self.tracks, self._stream_time = state  # type: ignore[misc]  # what snapshot returned

    def expire(self, camera_id: str) -> Iterable[Outgoing]:
        """A silent camera (removed, or died): forget its tracks."""
        self._stream_time.pop(camera_id, None)
        for key in [key for key in self.tracks if key[0] == camera_id]:
            del self.tracks[key]
        return ()

    def _observe(
        self, message: Message
    ) -> list[tuple[str, int, tuple[np.ndarray, np.ndarray | None]]]:
        """Add the frame's faces to their tracks; the (camera, track, window) now due.

        Every face is decoded before any track changes, so a message that fails changes nothing.
        """
        faces = FacesMessage.from_message(message)
        decoded = [(face, self._decoded(faces.camera_id, face)) for face in faces.faces]
        latest = self._stream_time.get(faces.camera_id, float("-inf"))
        self._stream_time[faces.camera_id] = max(latest, min(faces.capture_ts, time.time()))
        due = []
        for face, crops in decoded:
            self._count_blink(faces.camera_id, faces.capture_ts, face)
            if crops is None or face.track_id is None:  # (_decoded skips untracked faces)
                continue
            window = self._add(faces.camera_id, faces.capture_ts, face, *crops)
            if window is not None:
                due.append((faces.camera_id, face.track_id, window))
        return due

    def _count_blink(self, camera_id: str, ts: float, face: DetectedFace) -> None:
        """Feed the face's eye aspect ratio to its track's blink counter where the camera
        requires a blink."""
        if face.track_id is None or not self.settings.requires_blink(camera_id):
            return
        if self.settings.for_camera(camera_id).mode == "off":
            return
        if face.eye_aspect_ratio is None:  # a detector not configured to require blinks
            metrics.LIVENESS_FACES_SKIPPED.labels("no_eye_ratio").inc()
            return
        track = self._track(camera_id, face.track_id)
        track.last_seen_ts = max(track.last_seen_ts, ts)
        if track.blinks.update(face.eye_aspect_ratio):
            track.evidence.blinked = True

    def _track(self, camera_id: str, track_id: int) -> TrackWindow:
        return self.tracks.setdefault(
            (camera_id, track_id),
            TrackWindow(
                deque(maxlen=self.model.window),
                evidence=TrackEvidence(self.settings.policy(camera_id)),
            ),
        )

    def _decoded(
        self, camera_id: str, face: DetectedFace
    ) -> tuple[np.ndarray, np.ndarray | None] | None:
        """The face's context crop and (for a pixel model) its chip's centre, or None for a face
        liveness cannot or need not judge (counted)."""
        if face.track_id is None:
            metrics.LIVENESS_FACES_SKIPPED.labels("no_track").inc()
            return None
        if face.tracked:  # carried by optical flow, not measured: not what the model learned on
            metrics.LIVENESS_FACES_SKIPPED.labels("tracked").inc()
            return None
        if self.settings.for_camera(camera_id).mode == "off":
            metrics.LIVENESS_FACES_SKIPPED.labels("camera_off").inc()
            return None
        if not (face.context_jpeg_b64 and len(face.landmarks) == 5):
            metrics.LIVENESS_FACES_SKIPPED.labels("no_context").inc()
            return None
        pixels = getattr(self.model, "needs_chips", False)
        if pixels and not (face.chip_jpeg_b64 and face.chip_kind == DLIB_150):
            metrics.LIVENESS_FACES_SKIPPED.labels("no_chip").inc()  # the pixel model's chips
            return None
        if getattr(self.model, "needs_cues", False):
            cues = self._cues(face)
            return None if cues is None else (context_from_b64(face.context_jpeg_b64), cues)
        chip = (
            chip_centre(chip_from_b64(face.chip_jpeg_b64))
            if pixels and face.chip_jpeg_b64
            else None
        )
        return context_from_b64(face.context_jpeg_b64), chip

    @staticmethod
    def _cues(face: DetectedFace) -> np.ndarray | None:
        """The face's recapture cues; None (counted) from a detector of another version, which
        sends none or another set: judged on them, every window would mean something else."""
        if len(face.recapture) != len(CUES):
            metrics.LIVENESS_FACES_SKIPPED.labels(
                "no_cues" if not face.recapture else "cue_set"
            ).inc()
            return None
        cues = np.asarray(face.recapture, np.float32)
        if not np.isfinite(cues).all():
            raise ValueError("recapture cues not finite")  # this message dead-letters, alone
        return cues

    def _add(
        self,
        camera_id: str,
        ts: float,
        face: DetectedFace,
        context: np.ndarray,
        chip: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray | None] | None:
        cues = getattr(self.model, "needs_cues", False)
        pixels = chip is not None and not cues
        track = self._track(camera_id, cast(int, face.track_id))  # _observe: tracked faces only
        landmarks = np.asarray(face.landmarks, np.float64)
        box = (face.box.x, face.box.y, face.box.w, face.box.h)
        track.rows.append(frame_features(landmarks, box, context, track.previous))
        track.previous = (landmarks, box)
        track.chips.append(chip)
        track.last_seen_ts = ts
        track.since_window += 1
        full = len(track.rows) == self.model.window
        if not full or (track.windows and track.since_window < self.settings.hop):
            return None
        track.since_window = 0
        track.windows += 1
        if cues:
            return np.stack(track.rows), np.stack(track.chips)
        chips = np.stack([track.chips[i] for i in PIXEL_FRAMES]) if pixels else None
        return np.stack(track.rows), chips

    def _verdict(self, camera_id: str, track_id: int, score: float) -> Outgoing | None:
        """Add the window's score to the track's evidence; a verdict unless still pending."""
        track = self.tracks[(camera_id, track_id)]
        state = track.evidence.add(score)
        metrics.LIVENESS_WINDOWS.labels(state).inc()
        if state == "pending":
            return None
        verdict = LivenessVerdict(
            camera_id=camera_id,
            track_id=track_id,
            live=state == "live",
            score=track.evidence.score,
            window_frames=self.model.window,
            model=self.model.card.get("sha256", "unknown")[:12],
            ts=track.last_seen_ts,
        )
        return Outgoing(Topics.LIVENESS, verdict.to_bytes(), camera_id, verdict.headers())

    def tick(self, now: float) -> Iterable[Outgoing]:
        """Forget tracks their camera has not shown for ``track_timeout_s`` of its stream time
        (a silent camera's tracks go with the camera: ``expire``)."""
        for key, track in list(self.tracks.items()):
            latest = self._stream_time.get(key[0])
            if latest is None or latest - track.last_seen_ts > self.settings.track_timeout_s:
                del self.tracks[key]
        return ()
