"""Eye blinks: the one thing a printed photo cannot do, on any camera.

Every learnt liveness cue here depends on the camera as well as on the medium (docs/liveness.md:
the chroma spread reads vivid cameras as displays; the Deep Tree Network reads a third of LFW's
news photos as recaptures). A blink does not: a print's eyes never close, whatever camera films
it. (A replayed video blinks, so this is no cue against replays; the recapture model is.)

How (Soukupova and Cech, "Real-Time Eye Blink Detection using Facial Landmarks", 2016): dlib's
68-point shape predictor on the face box gives six points per eye; the eye aspect ratio (EAR),
the eye's two heights over twice its width, is about 0.25-0.4 open and falls towards 0 as the
lids close. People's open EAR differs (and so does the landmarker's bias per face), so a blink is
judged against the track's own recent median, not a fixed number: the EAR falls by a share of
it (and by more than the landmarks' jitter) and is back within ``max_closed`` samples (longer is
a look down, not a blink): ``BlinkCounter``.

The predictor comes with the pinned PyPI package ``face-recognition-models`` (the encoder's
weights are in it too), checked against its SHA-256 at load; 0.7 ms per face on this CPU.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared.liveness import LivenessModelError
from shared.model_cache import sha256_file

RIGHT_EYE = slice(36, 42)
LEFT_EYE = slice(42, 48)
"""The six points of each eye in the 68-point (iBUG 300-W) layout, from the outer corner."""
PREDICTOR_SHA256 = "fbdc2cb80eb9aa7a758672cbfdda32ba6300efe9b6e6c7a299ff7e736b11b92f"
"""``shape_predictor_68_face_landmarks.dat`` of ``face-recognition-models==0.3.0`` (dlib.net's)."""


def eye_aspect_ratio(points: np.ndarray) -> float:
    """(68, 2) landmarks -> the mean EAR of both eyes: (|p2-p6| + |p3-p5|) / (2 |p1-p4|)."""
    ratios: list[float] = []
    for eye in (points[RIGHT_EYE], points[LEFT_EYE]):
        heights = float(np.linalg.norm(eye[1] - eye[5]) + np.linalg.norm(eye[2] - eye[4]))
        width = float(np.linalg.norm(eye[0] - eye[3]))
        ratios.append(heights / (2.0 * width) if width > 0 else 0.0)
    return sum(ratios) / 2.0


class EyeLandmarker:
    """dlib's 68-point shape predictor on a face box -> the face's eye aspect ratio."""

    def __init__(self) -> None:
        import dlib
        import face_recognition_models

        path = Path(face_recognition_models.pose_predictor_model_location())
        if not path.is_file() or sha256_file(path) != PREDICTOR_SHA256:
            raise LivenessModelError(
                f"{path} is missing or not the pinned 68-point predictor; reinstall it with "
                "`pip install --force-reinstall face-recognition-models==0.3.0`"
            )
        self._dlib = dlib
        self._predictor = dlib.shape_predictor(str(path))

    def __call__(self, gray: np.ndarray, box: tuple[float, float, float, float]) -> float:
        """``gray``: the frame (H, W) uint8; ``box``: the face's (x, y, w, h) in it."""
        x, y, w, h = (int(round(v)) for v in box)
        shape = self._predictor(gray, self._dlib.rectangle(x, y, x + w, y + h))
        points = np.array([(shape.part(i).x, shape.part(i).y) for i in range(68)], np.float64)
        return eye_aspect_ratio(points)


@dataclass
class BlinkCounter:
    """One track's blinks, fed its eye aspect ratios in frame order (about 15 per second).

    The eyes count as closed when the EAR falls below the recent median by a ``closed_ratio``
    share of it, and by at least ``noise_multiple`` times the track's typical change from frame
    to frame: on small or re-compressed faces the landmarks jitter by as much as a blink, and a
    print's eyes "blink" by noise alone. They count as open again once the EAR is back within
    the smaller ``open_ratio`` share. Chosen on the training-side recordings
    (``bench.liveness_blink``, docs/liveness.md).
    """

    closed_ratio: float = 0.3
    """The fall from the recent median, as a share of it, that counts as closed."""
    open_ratio: float = 0.15
    """The fall left at which the eyes count as open again (a gap: noise cannot count twice)."""
    noise_multiple: float = 3.0
    """The fall must also reach this many times the median change between recent samples."""
    max_closed: int = 8
    """The most samples a blink's closure may last (0.5 s at 15 fps); longer is a look down."""
    history: int = 30
    """Recent samples the open level and the noise are taken over (2 s at 15 fps)."""
    min_history: int = 8
    """Samples needed before anything is judged."""
    blinks: int = 0
    _recent: deque = field(default_factory=deque, repr=False)
    _closed_for: int | None = field(default=None, repr=False)
    _reopen_below: float = field(default=0.0, repr=False)

    def update(self, ear: float) -> bool:
        """Adds one sample; True when it ends a blink (the eyes open again after a closure)."""
        blinked = False
        if self._closed_for is not None:
            if ear >= self._reopen_below:
                blinked = self._closed_for <= self.max_closed
                self.blinks += int(blinked)
                self._closed_for = None
            else:
                self._closed_for += 1
        elif len(self._recent) >= self.min_history:
            recent = np.asarray(self._recent)
            level, noise = float(np.median(recent)), float(np.median(np.abs(np.diff(recent))))
            fall = max(self.closed_ratio * level, self.noise_multiple * noise)
            if ear < level - fall:
                self._closed_for = 1
                self._reopen_below = level - fall * self.open_ratio / self.closed_ratio
        self._recent.append(ear)
        if len(self._recent) > self.history:
            self._recent.popleft()
        return blinked
