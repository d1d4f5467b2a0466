"""Frame pacing: keep at most ``fps`` frames per second of the source's own clock."""

from __future__ import annotations


class Pacer:
    """Admits a frame when its timestamp reaches the next due time.

    Timestamps are media time for files (so a file read faster than real time is paced the same
    way) and wall-clock time for live streams. After a stall the schedule restarts from the next
    frame instead of bursting to catch up.
    """

    def __init__(self, fps: float) -> None:
        if fps <= 0:
            raise ValueError("fps must be positive")
        self.interval = 1.0 / fps
        self._due: float | None = None

    def admit(self, ts: float) -> bool:
        tolerance = 1e-3  # timestamps of 29.97 fps sources fall a hair short of the schedule
        if self._due is not None and ts < self._due - tolerance:
            return False
        due = (self._due if self._due is not None else ts) + self.interval
        self._due = due if due > ts else ts + self.interval
        return True

    def reset(self) -> None:
        self._due = None
