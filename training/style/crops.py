"""How the style training's crops are drawn and weighted, shared by the CPU recipe
(``training.py``) and the accelerator's (``accelerated.py``).

No TensorFlow here: the GPU machine runs ``accelerated.py`` without it, and both recipes must
draw the landscape share and weigh the edge ring the same way, from one definition.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import cv2
import numpy as np


def crop_weights(counts: Sequence[int], shares: Sequence[float]) -> np.ndarray:
    """Per-image sampling probabilities: group k's images share ``shares[k]`` of the crops (the
    CPU recipe by photo, the accelerator's by pool square)."""
    return np.concatenate([np.full(n, share / n) for n, share in zip(counts, shares, strict=True)])


def random_crops(
    images: Sequence[np.ndarray],
    crop: int,
    batch_size: int,
    rng: np.random.Generator,
    weights: np.ndarray | None = None,
    margin: int = 0,
) -> Iterator[np.ndarray]:
    """The CPU recipe's endless batches of square crops: random image (by ``weights``, uniform if
    None), random scale (short side crop..1.5 crop), mirrored half the time; ``margin`` px more
    picture around each (the short side at least crop + 2 margin), which the edge term needs."""
    side = crop + 2 * margin
    while True:
        batch = []
        for index in rng.choice(len(images), batch_size, p=weights):
            image = images[index]
            short = min(image.shape[:2])
            scale = max(rng.uniform(crop, 1.5 * crop), side) / short
            resized = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
            top = rng.integers(0, resized.shape[0] - side + 1)
            left = rng.integers(0, resized.shape[1] - side + 1)
            patch = resized[top : top + side, left : left + side]
            batch.append(patch[:, ::-1] if rng.random() < 0.5 else patch)
        yield np.stack(batch).astype(np.float32)


def ring_weights(size: int, width: int) -> np.ndarray:
    """(size, size) weights of the edge term, equal within ``width`` px of the edge and summing
    to 1, else 0."""
    mask = np.ones((size, size), np.float32)
    mask[width:-width, width:-width] = 0
    return mask / mask.sum()
