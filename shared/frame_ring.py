"""The last frames of each camera as JPEG bytes (never decoded here), bounded in bytes.

The recognizer (for event snapshots) and the console (for its live view) both need the frame a
faces message was found in, which arrives after the frame by the detector's lag: seconds, or
more under load. The ring keeps frames by sequence number up to a byte budget per camera, so the
lag it covers grows as frames get smaller, and at most ``max_cameras`` cameras (least recently
seen dropped first).
"""

from __future__ import annotations

from collections import OrderedDict

CAMERA_BUDGET_BYTES = 32 * 1024 * 1024
"""About 1000 frames of 640x360 or 130 of 1080p per camera."""


class FrameRing:
    def __init__(self, budget_bytes: int = CAMERA_BUDGET_BYTES, max_cameras: int = 64) -> None:
        self.budget_bytes = budget_bytes
        self.max_cameras = max_cameras
        self._cameras: OrderedDict[str, OrderedDict[int, bytes]] = OrderedDict()
        self._sizes: dict[str, int] = {}

    def add(self, camera_id: str, seq: int, jpeg: bytes) -> None:
        frames = self._cameras.pop(camera_id, None) or OrderedDict()
        self._cameras[camera_id] = frames
        self._sizes[camera_id] = (
            self._sizes.get(camera_id, 0) + len(jpeg) - len(frames.get(seq, b""))
        )
        frames[seq] = jpeg
        while self._sizes[camera_id] > self.budget_bytes and len(frames) > 1:
            self._sizes[camera_id] -= len(frames.popitem(last=False)[1])
        while len(self._cameras) > self.max_cameras:
            dropped, _ = self._cameras.popitem(last=False)
            self._sizes.pop(dropped, None)

    def get(self, camera_id: str, seq: int) -> bytes | None:
        frames = self._cameras.get(camera_id)
        return None if frames is None else frames.get(seq)

    def latest(self, camera_id: str) -> tuple[int, bytes] | None:
        frames = self._cameras.get(camera_id)
        if not frames:
            return None
        seq = next(reversed(frames))
        return seq, frames[seq]

    def forget(self, camera_id: str | None) -> None:
        """One camera's frames, or every camera's (None)."""
        if camera_id is None:
            self._cameras.clear()
            self._sizes.clear()
        else:
            self._cameras.pop(camera_id, None)
            self._sizes.pop(camera_id, None)

    def cameras(self) -> list[str]:
        return list(self._cameras)
