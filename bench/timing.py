"""Timing passes: wall and CPU time, limits, and the median of repeated passes.

Each stage is timed over whole passes of a video, a few times, and the median pass is reported:
single passes on a small shared VM swing by tens of percent, the median is what a camera sees.
CPU time is the whole process's (every thread), so a stage that waits on a broker shows a wall
time well above its CPU time.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """Bounds on one timed pass, so the whole benchmark fits in a few minutes on a small machine."""

    frames: int | None
    """Frames read from each video; None reads the whole file."""
    seconds: float
    """A pass stops after this many seconds even if frames remain."""

    def done(self, frames: int, started: float) -> bool:
        """Whether a pass that has handled ``frames`` since ``started`` must stop."""
        if self.frames is not None and frames >= self.frames:
            return True
        return time.perf_counter() - started >= self.seconds


@dataclass(frozen=True)
class Timed:
    """One timed pass: frames handled, wall seconds, process CPU seconds."""

    frames: int
    wall_s: float
    cpu_s: float
    published: int | None = None
    """Frames a whole-chain pass published (it reads more than it publishes: pacing drops)."""

    @property
    def fps(self) -> float:
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0


def timed(run: Callable[[], int]) -> Timed:
    """Time ``run``, which returns the number of frames it handled."""
    wall, cpu = time.perf_counter(), time.process_time()
    frames = run()
    return Timed(frames, time.perf_counter() - wall, time.process_time() - cpu)


def median_pass(passes: list[Timed]) -> Timed:
    """The pass with the median throughput (the lower middle one for an even count)."""
    if not passes:
        raise ValueError("no passes")
    ordered = sorted(passes, key=lambda p: p.fps)
    return ordered[(len(ordered) - 1) // 2]
