"""Distractor identities that grow an open-set gallery to K = 10,000 (bench.openset, bench.openset_dev).

Why this composition: a distractor stands for one more enrolled person whom no probe or stranger
is. LFW has 5,749 people; after View 1 DevTest's people, the enrolled people and the strangers,
about 2,800 remain, so:

1. every remaining person is one distractor, from his or her first photo with a face as it is:
   truly distinct people, as many as the data has;
2. the rest up to the count are *looks* of those people, one per copy, cycling over the people
   (so no person gets a third copy before every person has a second): each copy is a different
   photo of the person where there is one, otherwise one strong augmentation of the first
   photo's chip, and no two copies of a person get the same augmentation (``LOOKS``: grey and
   flat, warm and bright, blurred low resolution, dark and noisy, cold JPEG; each with its own
   pose change).

The copies are not independent people: a stranger close to a person is close to that person's
copies too, so a gallery of them names fewer strangers than 9,000 people would (the threshold
is what the calibration says for K, whatever the gallery holds). bench.openset prints the
composition and how far each kind of copy sits from its source (docs/models.md).

The other folders of ../shared/data add no usable distinct people: faces/people/enroll holds six
people who are also LFW people or the project's test subjects, the liveness clips hold about
seven people filmed for a different test, and the street-crowd video's faces are unlabelled and
mostly under 40 px.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from training.datasets.lfw_cache import OUT


def _warp(chip: np.ndarray, angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    size = chip.shape[0]
    transform = cv2.getRotationMatrix2D(((size - 1) / 2, (size - 1) / 2), angle, scale)
    transform[:, 2] += np.array(shift) * size
    return cv2.warpAffine(chip, transform, (size, size), borderMode=cv2.BORDER_REFLECT)


def _gamma(chip: np.ndarray, gamma: float) -> np.ndarray:
    table = (255 * (np.arange(256) / 255) ** gamma).astype(np.uint8)
    return table[chip]


def grey_flat(chip: np.ndarray) -> np.ndarray:
    """Black and white, low contrast, turned 8 degrees."""
    grey = cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY).astype(np.float32)
    flat = np.clip((grey - 128) * 0.6 + 128, 0, 255).astype(np.uint8)
    return _warp(np.repeat(flat[..., None], 3, axis=2), 8.0, 1.0, (0.0, 0.0))


def warm_bright(chip: np.ndarray) -> np.ndarray:
    """Warm cast, brighter (gamma 0.6), zoomed in 10% and shifted."""
    warm = np.clip(chip.astype(np.float32) * np.array([1.15, 1.0, 0.8]), 0, 255).astype(np.uint8)
    return _warp(_gamma(warm, 0.6), 0.0, 1.1, (0.03, 0.02))


def blurred_low_res(chip: np.ndarray) -> np.ndarray:
    """Seen from far: 32 px wide, blurred back up, turned -8 degrees."""
    size = chip.shape[0]
    small = cv2.resize(chip, (32, 32), interpolation=cv2.INTER_AREA)
    large = cv2.GaussianBlur(
        cv2.resize(small, (size, size), interpolation=cv2.INTER_LINEAR), (3, 3), 0
    )
    return _warp(large, -8.0, 1.0, (0.0, 0.0))


def dark_noisy(chip: np.ndarray) -> np.ndarray:
    """Dim light (gamma 1.8) with sensor noise, zoomed out 8%."""
    dark = _gamma(chip, 1.8).astype(np.float32)
    noise = np.random.default_rng(int(chip.sum()) % 2**32).normal(0, 10, chip.shape)
    return _warp(np.clip(dark + noise, 0, 255).astype(np.uint8), 4.0, 0.92, (-0.02, 0.0))


def cold_jpeg(chip: np.ndarray) -> np.ndarray:
    """Cold cast, mirrored, JPEG at quality 12."""
    cold = np.clip(chip.astype(np.float32) * np.array([0.85, 1.0, 1.15]), 0, 255).astype(np.uint8)
    ok, data = cv2.imencode(
        ".jpg", np.ascontiguousarray(cold[:, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 12]
    )
    assert ok
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED)


LOOKS: tuple[Callable[[np.ndarray], np.ndarray], ...] = (
    grey_flat,
    warm_bright,
    blurred_low_res,
    dark_noisy,
    cold_jpeg,
)


@dataclass(frozen=True)
class Source:
    """One distractor: an LFW image key and the look applied to its chip (-1: none)."""

    key: str
    look: int


def compose(photos: dict[str, list[str]], count: int) -> list[Source]:
    """``count`` distractors from ``photos`` (person -> image keys with a face, in order).

    Round 0 takes every person's first photo; round r >= 1 takes, for each person in turn, the
    photo r if there is one, else look ``(r - photos) % len(LOOKS)`` of the first photo.
    """
    people = sorted(photos)
    chosen: list[Source] = []
    rounds = 0
    while len(chosen) < count:
        for name in people:
            keys = photos[name]
            if rounds < len(keys):
                chosen.append(Source(keys[rounds], -1))
            else:
                look = rounds - len(keys)
                if look >= len(LOOKS):
                    continue
                chosen.append(Source(keys[0], look))
            if len(chosen) == count:
                break
        rounds += 1
        if rounds > len(LOOKS) + max(len(k) for k in photos.values()):
            raise ValueError(f"{len(people)} people cannot give {count} distinct distractors")
    return chosen


def encode_sources(
    sources: list[Source],
    keys: list[str],
    single: np.ndarray,
    encode_looks: Callable[[list[Source]], np.ndarray],
) -> np.ndarray:
    """(len(sources), 128) encodings: cached ones for plain photos, ``encode_looks`` for looks."""
    index = {k: i for i, k in enumerate(keys)}
    vectors = np.empty((len(sources), single.shape[1]), np.float32)
    looks = [i for i, s in enumerate(sources) if s.look >= 0]
    for i, source in enumerate(sources):
        if source.look < 0:
            vectors[i] = single[index[source.key]]
    if looks:
        vectors[looks] = encode_looks([sources[i] for i in looks])
    return vectors


def look_cache_path(detector: str, encoder: str) -> Path:
    return OUT / f"openset-looks-{detector}-{encoder}.npz"
