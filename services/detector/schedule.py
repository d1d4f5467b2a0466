"""Which frames of a camera get a full face detection, and what the others carry.

The detector decodes every frame (cheap) but detects faces only where it pays:

* a camera with faces on it: a full detection every ``detect_every`` frames; between them the
  faces are carried by optical flow (``tracking.py``). A face the flow loses brings detection
  back on the next frame. A face younger than ``settle_frames`` (the liveness model's first
  windows and the recognizer's first votes want measured landmarks) is carried and then
  measured again by the detector's last stage (``refine``: MTCNN's ONet on the carried box, a
  fifth to a tenth of a full detection) where the detector can, else fully detected on every frame;
* a frame that shows another scene (motion.py: a cut, a camera that moved or switched) is detected and its faces start new tracks;
* a camera without faces: a detection on every frame with motion (someone may have come in),
  and only every ``full_every`` frames when nothing moves (``motion.py``); the periodic full
  detection also finds a person who came in so slowly the motion detector missed them.

``detect_every=1`` turns all of this off (every frame detected, as before).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from services.detector.motion import MotionDetector
from shared.settings import DetectorSettings


@dataclass
class FaceState:
    """One face of a camera as last measured or carried."""

    box: tuple[float, float, float, float]
    landmarks: np.ndarray | None
    score: float
    age: int = 0
    """Frames since the track started (detected or carried)."""


@dataclass
class CameraSchedule:
    """A camera's gating and tracking state in the detector."""

    settings: DetectorSettings
    motion: MotionDetector
    previous_grey: np.ndarray | None = None
    since_detection: int = 1_000_000
    faces: dict[int, FaceState] = field(default_factory=dict)
    cut: bool = False
    """Most of the frame changed at once (a cut, a camera that moved): the detector starts new
    tracks instead of matching the new faces to the old ones by position."""
    lost: bool = False
    """A face was lost by the flow since the last detection: detect the next frame."""
    refine: bool = False
    """Young faces are refined between full detections rather than detected on every frame."""

    @classmethod
    def create(cls, settings: DetectorSettings, refine: bool = False) -> CameraSchedule:
        """``refine``: the detector can refine a known face (``FaceDetector.can_refine``)."""
        return cls(
            settings,
            MotionDetector(
                settings.motion_width,
                settings.motion_pixel_threshold,
                settings.motion_min_area,
                settings.motion_learning_rate,
                settings.cut_change,
                settings.cut_histogram,
            ),
            refine=refine and settings.refine_young,
        )

    def decide(self, grey: np.ndarray) -> str:
        """What this frame (grey, full size) gets, as a metric label: ``detect_*`` (a full
        detection, and why), ``refined``, ``tracked`` or ``gated``.

        Also feeds the frame to the motion detector, so call it once per frame, in order.
        """
        motion = self.motion.update(grey)
        self.since_detection += 1
        active = self.settings.detect_every > 1 or self.settings.motion_gating
        if active and motion.cut:
            self.faces = {}  # a cut or a camera move: every face on the frame is new
            self.cut = True
        reason = "detect_cut" if self.cut else ""
        reason = reason or self._reason(motion.moving)
        if reason.startswith("detect"):
            self.since_detection = 0
            self.lost = False
        return reason

    def _reason(self, moving: bool) -> str:
        s = self.settings
        if s.detect_every <= 1:
            return "detect_always"
        if self.previous_grey is None:
            return "detect_first"
        if self.lost:
            return "detect_lost"
        if self.faces:
            if any(face.landmarks is None for face in self.faces.values()):
                return "detect_no_landmarks"  # nothing to carry them by (haar)
            young = any(face.age < s.settle_frames for face in self.faces.values())
            if young and not self.refine:
                return "detect_young"
            if self.since_detection >= s.detect_every:
                return "detect_interval"
            return "refined" if young else "tracked"
        if moving and s.motion_gating:
            return "detect_motion"
        if not s.motion_gating or self.since_detection >= s.full_every:
            return "detect_periodic"
        return "gated"
