"""Per-camera face tracking by box overlap, so recognition can vote over a track, not a frame.

At 10-15 fps a face moves little between frames; greedy matching on IoU (with a centre-distance
fallback for fast motion) is enough and costs microseconds. Track ids are unique across restarts
of the detector: they start from the clock in milliseconds, so a restarted detector never reuses
an id a recognizer is still voting on.
"""

from __future__ import annotations

import itertools
import time
from dataclasses import dataclass

from shared.face.types import box_iou

BoxTuple = tuple[float, float, float, float]


@dataclass
class Track:
    id: int
    box: BoxTuple
    last_seen_ts: float
    hits: int = 1


def centre_closeness(a: BoxTuple, b: BoxTuple) -> float:
    """1 at the same centre, falling to 0 when the centres are a face width or more apart."""
    dx = (a[0] + a[2] / 2) - (b[0] + b[2] / 2)
    dy = (a[1] + a[3] / 2) - (b[1] + b[3] / 2)
    scale = max(a[2], a[3], b[2], b[3])
    return max(0.0, 1.0 - (dx * dx + dy * dy) ** 0.5 / scale) if scale > 0 else 0.0


class TrackIds:
    """Monotonic ids seeded from the wall clock (ms), shared by all cameras of one detector."""

    def __init__(self) -> None:
        self._counter = itertools.count(int(time.time() * 1000))

    def next(self) -> int:
        return next(self._counter)


class FaceTracker:
    def __init__(self, ids: TrackIds, min_overlap: float = 0.3, max_age_s: float = 1.0) -> None:
        self.ids = ids
        self.min_overlap = min_overlap
        self.max_age_s = max_age_s
        self.tracks: list[Track] = []
        self.latest_ts = 0.0

    def update(self, boxes: list[BoxTuple], ts: float) -> list[int]:
        """Assign a track id to each box of a frame taken at ``ts`` (seconds).

        Tracks age by capture time, not processing time, so a detector working through a backlog
        does not split tracks.
        """
        self.latest_ts = max(self.latest_ts, ts)
        self.expire(ts)
        pairs = sorted(
            (
                (max(box_iou(t.box, b), centre_closeness(t.box, b)), ti, bi)
                for ti, t in enumerate(self.tracks)
                for bi, b in enumerate(boxes)
            ),
            reverse=True,
        )
        assigned: dict[int, int] = {}
        used_tracks: set[int] = set()
        for score, ti, bi in pairs:
            if score < self.min_overlap:
                break
            if ti in used_tracks or bi in assigned:
                continue
            track = self.tracks[ti]
            track.box, track.last_seen_ts, track.hits = boxes[bi], ts, track.hits + 1
            assigned[bi] = track.id
            used_tracks.add(ti)
        for bi, box in enumerate(boxes):
            if bi not in assigned:
                track = Track(self.ids.next(), box, ts)
                self.tracks.append(track)
                assigned[bi] = track.id
        return [assigned[bi] for bi in range(len(boxes))]

    def carry(self, track_id: int, box: BoxTuple, ts: float) -> None:
        """A track's box carried to a frame without detection (optical flow): it stays alive and
        the next detection matches against where the face is now."""
        for track in self.tracks:
            if track.id == track_id:
                track.box, track.last_seen_ts = box, ts
        self.latest_ts = max(self.latest_ts, ts)

    def move(self, track_id: int, box: BoxTuple) -> None:
        """Where a track's face is predicted to be now (optical flow), before matching the
        frame's detections: a fast face is matched to its own track, not to a neighbour's."""
        for track in self.tracks:
            if track.id == track_id:
                track.box = box

    def expire(self, now: float) -> None:
        self.tracks = [t for t in self.tracks if now - t.last_seen_ts <= self.max_age_s]
