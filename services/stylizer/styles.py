"""What a camera's style name means to the stylizer: a trained network, or an uploaded painting.

``NAME`` is a trained feed-forward network (shared/style/fast.py); ``painting:<id>`` is a painting
in the painting store, painted by the arbitrary-style network (shared/style/arbitrary.py). Both
load into an object with ``stylize_batch(frames)``, so the worker treats them alike. The
arbitrary-style network is built on the first painting style only (a stylizer with trained
styles never loads it), and each painting's style bottleneck is computed once, keyed by the
painting's content hash.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np

from shared.style.arbitrary import ArbitraryStylizer, StyleVectorCache
from shared.style.catalog import Precision
from shared.style.fast import StyleNetwork, load_network
from shared.style.paintings import PaintingError, PaintingStore, check_painting, is_painting

log = logging.getLogger(__name__)


class PaintingStyle:
    """One uploaded painting, ready to paint frames: the shared network and its bottleneck."""

    def __init__(self, name: str, stylizer: ArbitraryStylizer, vector: np.ndarray) -> None:
        self.name = name
        self.stylizer = stylizer
        self.vector = vector

    def stylize_batch(self, frames: np.ndarray) -> np.ndarray:
        return self.stylizer.stylize_batch(frames, self.vector)


class StyleLoader:
    """``loader(name)`` -> a network or a painting style; ``StyleNetworkError`` when unknown."""

    def __init__(
        self,
        networks_dir: Path,
        paintings: PaintingStore,
        max_pixels: int,
        models_dir: Path | None = None,
        work_side: int | None = None,
        arbitrary: Callable[[], ArbitraryStylizer] | None = None,
        precision: Precision = "auto",
    ) -> None:
        self.networks_dir = networks_dir
        self.precision = precision
        self.paintings = paintings
        self.max_pixels = max_pixels
        self._make_arbitrary = arbitrary or (lambda: ArbitraryStylizer(models_dir, work_side))
        self._cache: StyleVectorCache | None = None
        self._lock = threading.Lock()

    def __call__(self, name: str) -> StyleNetwork | PaintingStyle:
        if not is_painting(name):
            return load_network(name, self.networks_dir, self.precision)
        data = self.paintings.get(name)  # PaintingError when unknown or damaged
        try:
            rgb = check_painting(data, self.max_pixels)
        except ValueError as error:  # ProcessingError: stored before a limit was lowered
            raise PaintingError(f"painting {name!r}: {error}") from error
        cache = self.cache()
        vector = cache.vector(name, rgb)
        log.info("stylizer: style bottleneck of %s ready", name)
        return PaintingStyle(name, cache.stylizer, vector)

    def cache(self) -> StyleVectorCache:
        """The bottleneck cache over the arbitrary-style network, built on first use."""
        with self._lock:
            if self._cache is None:
                self._cache = StyleVectorCache(self._make_arbitrary())
            return self._cache
