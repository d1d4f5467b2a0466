"""Track-level fusion: match a track by the fused encoding of its best frames, not frame by frame.

Why: one frame's encoding carries that frame's blur, pose and lighting, so per-frame matches of the
same face scatter around the 1:K threshold (a stranger's occasionally fall inside it, an enrolled
person's occasionally outside). The quality-weighted mean of a track's best unit encodings
(shared/face/fusion.py) cancels much of that scatter: the track is matched as one better vector.

``TrackFusion`` keeps, per track, the ``frames`` encodings with the highest quality weight (the
detector score times the face size factor, ``voting.face_weight``) and returns their fusion after
each new frame. The recognizer matches that fused encoding against the gallery and hands the match
to the voter with the weight of the evidence behind it (the sum of the fused frames' weights), so a
fusion of several good frames outvotes the early fusions of one or two frames, and events stay one
per state change.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from shared.face.fusion import fuse_encodings

MAX_TRACKS = 10_000
"""Tracks whose end was missed (their camera went away) must not pile up."""


@dataclass
class _Best:
    """The best frames of one track so far: at most ``size`` (weight, encoding), best first."""

    size: int
    weights: list[float] = field(default_factory=list)
    encodings: list[np.ndarray] = field(default_factory=list)

    def offer(self, encoding: np.ndarray, weight: float) -> None:
        if len(self.weights) == self.size and weight <= self.weights[-1]:
            return
        at = next((i for i, w in enumerate(self.weights) if weight > w), len(self.weights))
        self.weights.insert(at, weight)
        self.encodings.insert(at, np.asarray(encoding, np.float32))
        del self.weights[self.size :], self.encodings[self.size :]


@dataclass(frozen=True)
class Fused:
    encoding: np.ndarray
    """(D,) the fused encoding of the track's best frames so far."""
    weight: float
    """Sum of the quality weights of the frames fused: the evidence behind ``encoding``."""
    frames: int


class TrackFusion:
    def __init__(self, frames: int = 5, max_tracks: int = MAX_TRACKS) -> None:
        """``frames``: how many of a track's best frames are fused (1: the best frame alone)."""
        if frames < 1:
            raise ValueError("fusion needs at least one frame per track")
        self.frames = frames
        self.max_tracks = max_tracks
        self._tracks: OrderedDict[tuple[str, int], _Best] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tracks)

    def add(self, camera_id: str, track_id: int, encoding: np.ndarray, weight: float) -> Fused:
        """Record one frame's encoding of a track; the track's fused encoding after it."""
        key = (camera_id, track_id)
        best = self._tracks.pop(key, None) or _Best(self.frames)
        self._tracks[key] = best  # most recently seen last: evicted last
        while len(self._tracks) > self.max_tracks:
            self._tracks.popitem(last=False)
        best.offer(encoding, weight)
        fused = fuse_encodings(np.stack(best.encodings), np.asarray(best.weights))
        return Fused(fused, float(sum(best.weights)), len(best.weights))

    def forget(self, camera_id: str, track_id: int) -> None:
        """The track ended: drop its encodings (biometric data is kept no longer than needed)."""
        self._tracks.pop((camera_id, track_id), None)
