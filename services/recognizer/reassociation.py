"""Whole tracks: a new track that is the face of a track just lost on the same camera continues it.

The detector's tracker follows boxes; a person who turns away, is occluded for a moment or is
missed by the detector for a few frames comes back under a new track id, and the recognizer would
start a second track for them (a second ``started``, a second ``unknown``, a fresh liveness
window). Before a new track id starts, ``Reassociator.match`` compares its first encoding with
the recent encodings of the camera's open tracks that are *lost*: not seen on this frame and last
seen within ``reassociate_s`` (6 s; the voter keeps lost tracks open that long, so no ``ended``
has gone out). When the closest is within the verifier's calibrated 1:1 threshold tau (same
person, shared/face/calibration*.json), the new id becomes an alias of the old track: its frames
and liveness verdicts count for the old track, whose events carry on (one per state change).

Each open track keeps a template: the quality-weighted fusion of its best few encodings
(``TrackFusion``), so a single blurred frame does not define it.
"""

from __future__ import annotations

import copy

import numpy as np

from services.recognizer.fusion import TrackFusion
from shared import metrics
from shared.face.verification import Verifier
from shared.settings import RecognizerSettings

TEMPLATE_FRAMES = 5


def track_timeout(settings: RecognizerSettings) -> float:
    """How long the voter keeps a lost track open: with re-association on, long enough for its
    face to come back (``reassociate_s``)."""
    return max(settings.track_timeout_s, settings.reassociate_s * settings.reassociate)


class Reassociator:
    def __init__(self, verifier: Verifier, max_gap_s: float) -> None:
        """``max_gap_s``: how long a lost track can be taken up again (the voter's track timeout:
        after it, the track has ended)."""
        self._verifier = verifier  # not state: snapshot() copies vars() without it
        self.max_gap_s = max_gap_s
        self.aliases: dict[tuple[str, int], int] = {}
        """(camera, detector track id) -> the track id it continues."""
        self.templates: dict[tuple[str, int], np.ndarray] = {}
        self._best = TrackFusion(TEMPLATE_FRAMES)

    def snapshot(self) -> object:
        """The aliases and templates, to undo a failed batch."""
        return copy.deepcopy((self.aliases, self.templates, self._best))

    def restore(self, state: object) -> None:
        self.aliases, self.templates, self._best = state  # type: ignore[misc]

    def resolve(self, camera_id: str, track_id: int) -> int:
        """The track a detector track id counts for (itself unless re-associated)."""
        return self.aliases.get((camera_id, track_id), track_id)

    def track_ids(
        self,
        camera_id: str,
        ts: float,
        detector_ids: list[int],
        encodings: np.ndarray,
        open_tracks: dict[int, float],
    ) -> tuple[list[int], list[tuple[int, int]]]:
        """The track each face of one frame counts for, and the (new detector id, old track)
        pairs re-associated on this frame. ``open_tracks``: the camera's open tracks (id -> last
        seen capture time); a face of a track id not among them (a new track) continues the lost
        one it matches, if any; tracks on this frame are not lost."""
        ids = [self.resolve(camera_id, t) for t in detector_ids]
        continued = []
        for n, encoding in enumerate(encodings):
            if ids[n] in open_tracks:
                continue
            present = set(ids)
            lost = {t: last for t, last in open_tracks.items() if t not in present}
            old = self.match(camera_id, encoding, ts, lost)
            if old is not None:
                self.alias(camera_id, detector_ids[n], old)
                ids[n] = old
                continued.append((detector_ids[n], old))
                metrics.RECOGNIZER_FACES.labels("reassociated").inc()
        return ids, continued

    def remember(self, camera_id: str, track_id: int, encoding: np.ndarray, weight: float) -> None:
        """Add one frame's encoding to an open track's template."""
        fused = self._best.add(camera_id, track_id, encoding, weight)
        self.templates[(camera_id, track_id)] = fused.encoding

    def match(
        self,
        camera_id: str,
        encoding: np.ndarray,
        ts: float,
        lost: dict[int, float],
    ) -> int | None:
        """The lost track (id -> last seen capture time) of ``camera_id`` this face continues,
        or None. Only tracks last seen before ``ts`` and within ``max_gap_s`` qualify."""
        candidates = [
            t
            for t, last in lost.items()
            if last < ts and ts - last <= self.max_gap_s and (camera_id, t) in self.templates
        ]
        if not candidates:
            return None
        references = np.stack([self.templates[(camera_id, t)] for t in candidates])
        distances = np.asarray(self._verifier.distances(encoding[None, :], references)).ravel()
        best = int(np.argmin(distances))
        return candidates[best] if distances[best] <= self._verifier.threshold else None

    def alias(self, camera_id: str, new_track_id: int, old_track_id: int) -> None:
        self.aliases[(camera_id, new_track_id)] = old_track_id

    def forget(self, camera_id: str, track_id: int) -> None:
        """The track ended: drop its template (biometric data) and the aliases onto it."""
        self.templates.pop((camera_id, track_id), None)
        self._best.forget(camera_id, track_id)
        for key in [k for k, v in self.aliases.items() if k[0] == camera_id and v == track_id]:
            del self.aliases[key]
