"""Per-camera stream bookkeeping shared by every worker: clock checks, replays, idle cameras.

Every frame-derived message carries its camera and capture time. Three things went wrong when each
service kept that state its own way (issue 13): one message with a capture time in the future made
every later frame of its camera look like a replay ("not newer than the latest"), so a camera went
blind until the service restarted; a frame was marked as seen before it was processed, so a batch
that failed and was retried one message at a time skipped all of its frames; and per-camera state
grew with every camera id ever seen.

``StreamGuard`` does this once, for ``WorkerRunner``:

* **clock window**: a capture time more than ``max_future_s`` ahead of the service's clock or
  ``max_past_s`` behind it is refused (``clock_skew``) before it reaches any state;
* **replays** are recognised by identity, ``(seq, capture_ts)`` per camera, not by order: a
  frame is a replay when exactly that frame was processed before, or when it is older than every
  frame still remembered (the ones forgotten to bound memory were the oldest). A stray timestamp
  therefore hides only itself. Frames are recorded only once processed successfully;
* **idle cameras**: a camera that sent nothing for ``camera_idle_s`` (wall clock) is forgotten,
  and at most ``max_cameras`` are kept (the least recently seen goes first), so a stream of
  invented camera ids cannot grow memory without bound.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from dataclasses import dataclass, field

from shared.errors import ProcessingError


@dataclass(frozen=True)
class StreamStamp:
    """Where a message sits in its camera's stream."""

    camera_id: str
    ts: float
    """Capture time (Unix seconds, the ingestor's clock when the frame was read)."""
    seq: int | None = None
    dedupe: bool = True
    """Whether a second copy is a replay to skip (frames); False for messages that are not one per
    frame (liveness verdicts), which only get the clock check."""

    @property
    def key(self) -> tuple[int | None, float]:
        return (self.seq, self.ts)


@dataclass
class _Camera:
    seen: dict[tuple[int | None, float], float] = field(default_factory=dict)
    heap: list[tuple[float, tuple[int | None, float]]] = field(default_factory=list)
    floor: float = float("-inf")
    """Capture time of the newest frame forgotten: anything not newer is an old replay."""
    last_wall: float = 0.0


class StreamGuard:
    def __init__(
        self,
        max_future_s: float = 5.0,
        max_past_s: float = 86_400.0,
        replay_window: int = 4096,
        camera_idle_s: float = 60.0,
        max_cameras: int = 10_000,
    ) -> None:
        self.max_future_s = max_future_s
        self.max_past_s = max_past_s
        self.replay_window = replay_window
        self.camera_idle_s = camera_idle_s
        self.max_cameras = max_cameras
        self._cameras: OrderedDict[str, _Camera] = OrderedDict()

    def check_clock(self, stamp: StreamStamp, now: float) -> None:
        """Raise ``clock_skew`` for a capture time outside the window around ``now``."""
        if not stamp.ts - now <= self.max_future_s:  # also refuses NaN
            raise ProcessingError(
                "clock_skew",
                f"capture_ts {stamp.ts:.3f} is {stamp.ts - now:.1f} s ahead of this service's "
                f"clock (window {self.max_future_s} s)",
            )
        if now - stamp.ts > self.max_past_s:
            raise ProcessingError(
                "clock_skew",
                f"capture_ts {stamp.ts:.3f} is {now - stamp.ts:.1f} s behind this service's "
                f"clock (window {self.max_past_s} s)",
            )

    def is_replay(self, stamp: StreamStamp) -> bool:
        camera = self._cameras.get(stamp.camera_id)
        if camera is None or not stamp.dedupe:
            return False
        return stamp.key in camera.seen or stamp.ts <= camera.floor

    def record(self, stamp: StreamStamp, now: float) -> None:
        """Remember a frame processed successfully."""
        camera = self._cameras.get(stamp.camera_id)
        if camera is None:
            camera = self._cameras[stamp.camera_id] = _Camera()
        self._cameras.move_to_end(stamp.camera_id)
        camera.last_wall = now
        if not stamp.dedupe or stamp.key in camera.seen:
            return
        camera.seen[stamp.key] = stamp.ts
        heapq.heappush(camera.heap, (stamp.ts, stamp.key))
        while len(camera.seen) > self.replay_window:
            ts, key = heapq.heappop(camera.heap)  # the oldest capture time goes first
            del camera.seen[key]
            camera.floor = max(camera.floor, ts)

    def idle(self, now: float) -> list[str]:
        """Forget cameras silent for ``camera_idle_s`` and those beyond ``max_cameras``; their ids."""
        gone = []
        while self._cameras:
            camera_id, camera = next(iter(self._cameras.items()))
            if (
                now - camera.last_wall <= self.camera_idle_s
                and len(self._cameras) <= self.max_cameras
            ):
                break
            del self._cameras[camera_id]
            gone.append(camera_id)
        return gone

    def __contains__(self, camera_id: str) -> bool:
        return camera_id in self._cameras

    def __len__(self) -> int:
        return len(self._cameras)
