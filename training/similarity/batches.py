"""P identities x K images per batch, seeded: what online triplet mining needs.

Mining can only find positives and hard negatives inside a batch if every identity in it has
several images and there are several identities, so batches are built as P people with K images
each (Hermans et al. 2017), not drawn uniformly from all images.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


class PKSampler:
    """Batches of row indices: P identities at random, K of their images (fewer if they have fewer).

    ``labels`` gives each row's identity. Identities with a single usable row are dropped: they
    can never form an anchor-positive pair. Same seed, same batches.
    """

    def __init__(self, labels: np.ndarray, p: int, k: int, seed: int) -> None:
        if p < 2 or k < 2:
            raise ValueError("P >= 2 identities and K >= 2 images are needed to form triplets")
        labels = np.asarray(labels)
        groups = [np.flatnonzero(labels == value) for value in np.unique(labels)]
        self.groups = [g for g in groups if len(g) >= 2]
        if len(self.groups) < p:
            raise ValueError(f"only {len(self.groups)} identities with 2+ images, P = {p}")
        self.p, self.k = p, k
        self.rng = np.random.default_rng(seed)

    @property
    def rows(self) -> int:
        return sum(len(g) for g in self.groups)

    def steps_per_epoch(self) -> int:
        """Batches that show about as many images as there are rows."""
        return max(1, round(self.rows / (self.p * self.k)))

    def batch(self) -> np.ndarray:
        chosen = self.rng.choice(len(self.groups), self.p, replace=False)
        parts = [
            self.rng.choice(self.groups[g], min(self.k, len(self.groups[g])), replace=False)
            for g in chosen
        ]
        return np.concatenate(parts)

    def epoch(self) -> Iterator[np.ndarray]:
        for _ in range(self.steps_per_epoch()):
            yield self.batch()
