"""The stylizer service: frames of cameras with a style enabled in, styled JPEG frames out.

The style of a camera is its ``CameraSpec.style`` in the camera registry, re-read every
``registry_poll_s``, so ``facestream cameras style CAM NAME`` switches it at run time (``none``
switches it off) without restarting the camera or this service. Cameras without a style are
consumed and skipped: the stylizer has its own consumer group, so the face pipeline is unaffected.

Live video wants fresh frames more than every frame: a frame older than ``max_lag_s`` when it is
reached is dropped and counted (``facestream_stylizer_frames_total{outcome="dropped_stale"}``), so
a stylizer slower than its cameras publishes a sample of recent frames instead of falling further
behind. Frames of one poll that share a style and a size are painted in one network call.

A style is a trained network's name or ``painting:<id>``, an uploaded painting painted by the
arbitrary-style network (services/stylizer/styles.py builds either; its bottleneck is computed
once per painting, when a camera first switches to it).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Protocol

import numpy as np

from shared import metrics
from shared.bus.base import Message
from shared.cameras import CameraRegistry, RegistryError
from shared.frames import decode_frame, each
from shared.images import encode_jpeg, max_frame_pixels
from shared.schemas import STYLED_FRAME_SCHEMA, FrameMeta, Topics
from shared.style.vgg import StyleModelError
from shared.worker import BatchWorker, Outgoing

log = logging.getLogger(__name__)


class Stylizes(Protocol):
    """A trained network (shared/style/fast.py) or a painting's style (styles.PaintingStyle)."""

    def stylize_batch(self, frames: np.ndarray) -> np.ndarray: ...


NetworkLoader = Callable[[str], Stylizes]
"""A style's name -> what paints frames in that style."""


class StylizerWorker(BatchWorker):
    name = "stylizer"
    topics = (Topics.FRAMES,)

    def __init__(
        self,
        registry: CameraRegistry,
        load_network: NetworkLoader,
        registry_poll_s: float = 1.0,
        max_lag_s: float = 1.0,
        jpeg_quality: int = 85,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.load_network = load_network
        self.registry_poll_s = registry_poll_s
        self.max_lag_s = max_lag_s
        self.jpeg_quality = jpeg_quality
        self.clock = clock
        self.styles: dict[str, str] = {}
        self.networks: dict[str, Stylizes] = {}
        self.unknown_styles: set[str] = set()
        self._next_registry_read = 0.0
        self.max_frame_pixels = max_frame_pixels()  # read now: settings load once, not per frame

    def process_batch(self, messages: list[Message]) -> list[list[Outgoing] | Exception]:
        """Decode the styled cameras' fresh frames, paint each (style, size) group in one call
        (with the registry's styles as of now: ``update_config``)."""
        self.update_config()
        results, frames = each(messages, self._frame_to_style)
        groups: dict[tuple[str, tuple[int, ...]], list[tuple[int, FrameMeta, np.ndarray]]]
        groups = defaultdict(list)
        for i, (meta, style, image) in frames:
            groups[(style, image.shape)].append((i, meta, image))
        for (style, _), group in groups.items():
            painted = self.networks[style].stylize_batch(np.stack([f[2] for f in group]))
            for (i, meta, _), image in zip(group, painted, strict=True):
                results[i] = [self._styled(meta, style, image)]
        return results

    def _frame_to_style(self, message: Message) -> tuple[FrameMeta, str, np.ndarray] | None:
        """The frame, its style and its RGB pixels; None when it is not to be styled."""
        meta = FrameMeta.from_message(message)
        style = self.styles.get(meta.camera_id)
        if style is None or self._network(style) is None:
            self._count(meta.camera_id, "unstyled")
            return None
        if self.clock() - meta.capture_ts > self.max_lag_s:
            self._count(meta.camera_id, "dropped_stale")
            return None
        _, bgr = decode_frame(message, self.max_frame_pixels, meta)
        return meta, style, np.ascontiguousarray(bgr[..., ::-1])

    def _styled(self, meta: FrameMeta, style: str, rgb: np.ndarray) -> Outgoing:
        styled = meta.model_copy(update={"style": style})
        jpeg = encode_jpeg(np.ascontiguousarray(rgb[..., ::-1]), self.jpeg_quality)
        self._count(meta.camera_id, "styled")
        metrics.STYLIZER_LATENCY.observe(max(0.0, self.clock() - meta.capture_ts))
        return Outgoing(
            Topics.STYLED_FRAMES, jpeg, meta.camera_id, styled.to_headers(STYLED_FRAME_SCHEMA)
        )

    def update_config(self) -> None:
        """Re-read the cameras' styles from the registry, at most every ``registry_poll_s``."""
        now = time.monotonic()
        if now < self._next_registry_read:
            return
        self._next_registry_read = now + self.registry_poll_s
        try:
            cameras = self.registry.list()
        except RegistryError as error:
            log.warning("stylizer: %s; keeping the last known styles", error)
            metrics.ERRORS.labels(self.name, "registry").inc()
            return
        styles = {c.id: c.style for c in cameras if c.style}
        if styles != self.styles:
            self.unknown_styles.clear()  # a changed registry may name a network added since
        self.styles = styles

    def _network(self, style: str) -> Stylizes | None:
        """The loaded network of a style; None (warned once) when no such network exists."""
        if style not in self.networks and style not in self.unknown_styles:
            try:
                self.networks[style] = self.load_network(style)
            except StyleModelError as error:  # unknown network or painting, missing model files
                log.warning("stylizer: cameras with style %r stay unstyled: %s", style, error)
                self.unknown_styles.add(style)
        return self.networks.get(style)

    def _count(self, camera_id: str, outcome: str) -> None:
        metrics.STYLIZER_FRAMES.labels(camera_id, outcome).inc()
