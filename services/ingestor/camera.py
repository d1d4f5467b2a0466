"""One camera: read, pace, scale down, JPEG-encode and publish frames, under a watchdog that
reconnects.

The reader runs in its own thread. OpenCV's open and read timeouts bound every blocking call; the
watchdog drops a stream that returns no frame in time, no frame that decodes in time (packets
arrive, pictures do not), or the same frame for too long (a frozen stream), and reconnects with
capped exponential backoff. Sequence numbers count captured frames
and keep counting across reconnects, so every gap downstream is a frame counted as dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Literal

import cv2
import numpy as np

from services.ingestor.pacer import Pacer
from services.ingestor.source import Source, SourceError, open_capture
from shared import metrics
from shared.bus.base import BusError, Publisher
from shared.cameras import CameraSpec
from shared.errors import ProcessingError
from shared.images import encode_jpeg, fit_width
from shared.schemas import FrameMeta, Topics
from shared.settings import IngestSettings
from shared.worker import Backoff

log = logging.getLogger(__name__)

CameraState = Literal["connecting", "up", "down", "ended", "stopped"]


class FrozenStreamDetector:
    """Flags a stream whose frames stop changing: a tiny thumbnail must differ within the timeout.

    Real sensors always add some noise, so bit-identical thumbnails for seconds mean a decoder
    replaying its last frame, not a still scene.
    """

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._last: np.ndarray | None = None
        self._since = 0.0

    def frozen(self, frame: np.ndarray, now: float) -> bool:
        thumb = cv2.resize(frame, (16, 16), interpolation=cv2.INTER_AREA)
        if self._last is None or not np.array_equal(thumb, self._last):
            self._last, self._since = thumb, now
            return False
        return now - self._since > self.timeout_s


class CameraReader(threading.Thread):
    def __init__(
        self,
        camera: CameraSpec,
        publisher: Publisher,
        settings: IngestSettings,
    ) -> None:
        super().__init__(name=f"camera-{camera.id}", daemon=True)
        self.camera = camera
        self.source = Source(camera.url)
        self.publisher = publisher
        self.settings = settings
        self.state: CameraState = "connecting"
        self.last_error: str | None = None
        self.seq = 0
        self.published = 0
        self._stop_event = threading.Event()
        self._backoff = Backoff(settings.backoff_initial_s, settings.backoff_max_s)
        self._fps_window: list[float] = []
        self.max_width = camera.max_width or settings.max_width
        """Published frames are at most this wide (None: full resolution)."""

    def stop(self) -> None:
        self._stop_event.set()

    def run(self) -> None:
        cam = self.camera.id
        while not self._stop_event.is_set():
            try:
                capture = open_capture(
                    self.source, self.settings.open_timeout_s, self.settings.read_timeout_s
                )
            except SourceError as error:
                self._stream_down(error.reason, str(error))
                continue
            log.info("camera %s: connected to %s", cam, self.source.display())
            try:
                reason = self._read_until_failure(capture)
            finally:
                capture.release()
            if reason == "end_of_file":
                if not self.camera.loop:
                    self._set_state("ended")
                    log.info("camera %s: end of file after %d frames", cam, self.seq)
                    return
                continue
            if reason != "stopped":
                self._stream_down(reason, f"stream dropped: {reason}")
        self._set_state("stopped")

    def _stream_down(self, reason: str, detail: str) -> None:
        """Count the failure and wait out the backoff before the next connection attempt."""
        self._set_state("down")
        self.last_error = detail
        delay = self._backoff.next()
        metrics.CAMERA_RECONNECTS.labels(self.camera.id, reason).inc()
        metrics.ERRORS.labels("ingestor", reason).inc()
        log.warning("camera %s: %s; reconnecting in %.1fs", self.camera.id, detail, delay)
        self._stop_event.wait(delay)

    def _read_until_failure(self, capture: cv2.VideoCapture) -> str:
        """Read frames until the stream fails; return the reason (``stopped`` when asked to)."""
        pacer = Pacer(self.camera.fps or self.settings.default_fps)
        frozen = FrozenStreamDetector(self.settings.frozen_timeout_s)
        realtime = self.source.is_file and self.settings.file_realtime
        started = last_decoded = time.monotonic()
        while not self._stop_event.is_set():
            asked = time.monotonic()
            grabbed = capture.grab()
            now = time.monotonic()
            if not grabbed:
                return self._read_failure(now - asked)
            if self.source.live and now - asked >= self.settings.read_timeout_s:
                # FFmpeg retries after its own timeout and may still hand out buffered frames;
                # a live stream silent this long has stalled whatever comes back.
                return "read_timeout"
            self.seq += 1
            metrics.CAMERA_FRAMES_CAPTURED.labels(self.camera.id).inc()
            media_ts = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if realtime:
                self._stop_event.wait(max(0.0, started + media_ts - time.monotonic()))
            if not pacer.admit(now if self.source.live else media_ts):
                # Decoded by grab() but never converted to BGR: a 25 fps 1080p camera paced to
                # 15 fps saves the colour conversion of 10 frames a second.
                metrics.CAMERA_FRAMES_DROPPED.labels(self.camera.id, "pacing").inc()
                continue
            retrieved, frame = capture.retrieve()
            if not retrieved or frame is None:
                metrics.CAMERA_FRAMES_DROPPED.labels(self.camera.id, "decode").inc()
                if now - last_decoded >= self.settings.read_timeout_s:
                    return "undecodable"  # grabbed, but no picture this long: reconnect
                continue
            last_decoded = now
            self._set_state("up")  # up once a picture arrives, not a packet
            self._backoff.reset()
            if frozen.frozen(frame, now):
                metrics.CAMERA_FRAMES_DROPPED.labels(self.camera.id, "frozen").inc()
                return "frozen"
            self._publish(fit_width(frame, self.max_width), self.seq - 1)
        return "stopped"

    def _read_failure(self, waited_s: float) -> str:
        """Why a read returned no frame: a file's end, a stream that went silent, or one that ended."""
        if self.source.is_file:
            return "end_of_file"
        return "read_timeout" if waited_s >= 0.9 * self.settings.read_timeout_s else "stream_ended"

    def _publish(self, frame: np.ndarray, seq: int) -> None:
        cam = self.camera.id
        started = time.perf_counter()
        try:
            jpeg = encode_jpeg(frame, self.settings.jpeg_quality)
        except ProcessingError:
            metrics.CAMERA_FRAMES_DROPPED.labels(cam, "encode").inc()
            return
        meta = FrameMeta(
            camera_id=cam,
            seq=seq,
            capture_ts=time.time(),
            width=frame.shape[1],
            height=frame.shape[0],
        )
        try:
            self.publisher.publish(Topics.FRAMES, jpeg, key=cam, headers=meta.to_headers())
            self.publisher.flush(timeout_s=self.settings.read_timeout_s)
        except BusError as error:
            metrics.CAMERA_FRAMES_DROPPED.labels(cam, "publish").inc()
            metrics.ERRORS.labels("ingestor", "bus_publish").inc()
            log.warning("camera %s: frame %d not published: %s", cam, seq, error)
            return
        self.published += 1
        metrics.CAMERA_FRAMES_PUBLISHED.labels(cam).inc()
        metrics.FRAMES_OUT.labels("ingestor", Topics.FRAMES).inc()
        metrics.PROCESSING_SECONDS.labels("ingestor").observe(time.perf_counter() - started)
        self._update_fps()

    def _update_fps(self) -> None:
        now = time.monotonic()
        self._fps_window = [t for t in self._fps_window if now - t < 5.0] + [now]
        span = now - self._fps_window[0]
        if span > 0:
            metrics.CAMERA_FPS.labels(self.camera.id).set((len(self._fps_window) - 1) / span)

    def _set_state(self, state: CameraState) -> None:
        self.state = state
        metrics.CAMERA_UP.labels(self.camera.id).set(1.0 if state == "up" else 0.0)
