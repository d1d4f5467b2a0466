"""Open-set identification at gallery scale on LFW: one photo enrolled per person, strangers, and
distractors up to K = 10,000, at the calibrated 1:K threshold.

    nice -n 10 python -m bench.openset [--encoders sface,dlib-resnet] [--detector yunet]

Protocol (nothing here is chosen on View 1 DevTest, whose people and images are left out):
- enrolled: ``--enrolled`` (1,000) people outside DevTest with at least two photos with a face,
  each from ONE photo (the first); probes: all their other photos;
- strangers: at least 2,000 photos of other people outside DevTest, never enrolled;
- fused probes and strangers: three photos of one person fused into one template
  (shared/face/fusion.py), as a track's best frames or a multi-photo enrollment would be;
- K = 10,000: the gallery grows with distractor identities, jittered copies
  (shared/face/jitter.py) of photos of the remaining people, who are neither probes nor strangers.
The threshold is the encoder's calibrated 1:K threshold for that K at FAR 1%
(``Calibration.identification_threshold``), read from shared/face/calibration*.json; it is also
refitted with every open-set person removed from the impostor pairs, to show the result does not
lean on the calibration having seen them. A probe is identified correctly when its nearest
enrolled person is the right one and within the threshold; a stranger is named when anyone is.
"""

from __future__ import annotations

import argparse
import os
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from shared.face.fusion import fuse_encodings  # noqa: E402
from shared.face.verification import Calibration, calibration_path, squared_distances  # noqa: E402
from shared.settings import get_settings  # noqa: E402
from training.datasets.lfw_cache import OUT, CachedLfw, find_landmarks, lfw_keys  # noqa: E402
from training.lfw_calibration import calibrate_encoder, split_images  # noqa: E402

FAR = 0.01
FUSED = 3


@dataclass
class OpenSet:
    enrolled: list[str]
    gallery: np.ndarray
    """(K, 128): one encoding per enrolled person, in ``enrolled`` order."""
    probes: list[tuple[int, np.ndarray]]
    """(enrolled index, encoding) of each other photo."""
    fused_probes: list[tuple[int, np.ndarray]]
    strangers: np.ndarray
    fused_strangers: np.ndarray
    distractor_people: list[str]
    stranger_people: list[str]


def build(
    cache: CachedLfw, data: Path, enrolled_count: int, strangers_min: int, seed: int
) -> OpenSet:
    outside, _ = split_images(data)
    photos: dict[str, list[np.ndarray]] = {}
    for img in outside:
        vector = cache(img)
        if vector is not None:
            photos.setdefault(img.parent.name, []).append(vector)
    rng = random.Random(seed)
    several = sorted(n for n, v in photos.items() if len(v) >= 2)
    enrolled = sorted(rng.sample(several, enrolled_count))
    chosen = set(enrolled)
    others = sorted(n for n in photos if n not in chosen)
    rng.shuffle(others)
    # Strangers: everyone left with 3+ photos first (so fused strangers exist), then others until
    # there are enough photos; the rest are distractor sources.
    others.sort(key=lambda n: len(photos[n]) < FUSED)
    stranger_people, count = [], 0
    for name in others:
        if count >= strangers_min:
            break
        stranger_people.append(name)
        count += len(photos[name])
    distractor_people = [n for n in others if n not in set(stranger_people)]
    gallery = np.stack([photos[n][0] for n in enrolled])
    probes = [(i, v) for i, n in enumerate(enrolled) for v in photos[n][1:]]
    fused_probes = [
        (i, fuse_encodings(np.stack(photos[n][1 + j : 1 + j + FUSED])))
        for i, n in enumerate(enrolled)
        for j in range(0, len(photos[n]) - 1 - FUSED + 1, FUSED)
    ]
    strangers = np.stack([v for n in stranger_people for v in photos[n]])
    fused_strangers = np.stack(
        [
            fuse_encodings(np.stack(photos[n][j : j + FUSED]))
            for n in stranger_people
            for j in range(0, len(photos[n]) - FUSED + 1, FUSED)
        ]
    )
    return OpenSet(
        enrolled,
        gallery,
        probes,
        fused_probes,
        strangers,
        fused_strangers,
        distractor_people,
        stranger_people,
    )


def distractors(
    data: Path, detector: str, encoder_name: str, people: list[str], count: int, seed: int
) -> np.ndarray:
    """``count`` distractor identities: jittered copies of the photos of ``people`` (cached)."""
    path = OUT / f"openset-distractors-{detector}-{encoder_name}-{count}-{seed}.npy"
    if path.exists():
        return np.load(path)
    import cv2

    from shared.face.chip_kinds import chip_kind
    from shared.face.factory import load_face_encoder
    from shared.face.jitter import jittered_copies
    from training.datasets.lfw import lfw_root

    keys = lfw_keys(data)
    landmarks = find_landmarks(data, detector, keys)
    index = {k: i for i, k in enumerate(keys)}
    allowed = set(people)
    sources = [
        k for k in keys if k.split("/")[0] in allowed and not np.isnan(landmarks[index[k]]).any()
    ]
    copies = -(-count // len(sources))
    settings = get_settings().model_copy(deep=True)
    settings.face.encoder = encoder_name
    encoder = load_face_encoder(settings, threads=settings.face.tf_threads)
    align = chip_kind(encoder.chip_kind).align
    root = lfw_root(data)
    found = []
    for number, key in enumerate(sources):
        chip = align(cv2.imread(str(root / key)), landmarks[index[key]])
        found.append(encoder.encode(jittered_copies(chip, copies, seed=seed + number)))
        if sum(len(f) for f in found) >= count:
            break
    vectors = np.concatenate(found)[:count]
    OUT.mkdir(exist_ok=True)
    np.save(path, vectors)
    return vectors


def nearest(queries: np.ndarray, gallery: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index and squared distance of each query's nearest gallery entry."""
    best_i, best_d = [], []
    for start in range(0, len(queries), 1024):
        d = squared_distances(queries[start : start + 1024], gallery)
        i = d.argmin(axis=1)
        best_i.append(i)
        best_d.append(d[np.arange(len(i)), i])
    return np.concatenate(best_i), np.concatenate(best_d)


def rates(
    gallery: np.ndarray,
    probes: list[tuple[int, np.ndarray]],
    strangers: np.ndarray,
    threshold: float,
) -> tuple[float, float, float]:
    """(identified correctly, rank-1 without threshold, strangers named)."""
    truth = np.array([i for i, _ in probes])
    index, distance = nearest(np.stack([v for _, v in probes]), gallery)
    _, stranger_distance = nearest(strangers, gallery)
    correct = (index == truth) & (distance <= threshold)
    return (
        float(correct.mean()),
        float((index == truth).mean()),
        float((stranger_distance <= threshold).mean()),
    )


def report(title: str, gallery, probes, strangers, threshold: float) -> None:
    identified, rank1, named = rates(gallery, probes, strangers, threshold)
    print(
        f"  {title:<44} threshold {threshold:.4f}: identified {identified:.4f} "
        f"(rank-1 {rank1:.4f}), strangers named {named:.4f}"
    )


def run(encoder: str, detector: str, args: argparse.Namespace) -> None:
    data = get_settings().shared_data
    cache = CachedLfw(data, detector, encoder)
    calibration = Calibration.load(calibration_path(0, encoder))
    bench = build(cache, data, args.enrolled, args.strangers, args.seed)
    k = len(bench.enrolled)
    print(f"\n{calibration.model} ({cache.name}), seed {args.seed}")
    print(
        f"  enrolled {k} people from one photo each; {len(bench.probes)} probe photos, "
        f"{len(bench.fused_probes)} fused probes ({FUSED} photos each); "
        f"{len(bench.strangers)} stranger photos of {len(bench.stranger_people)} people, "
        f"{len(bench.fused_strangers)} fused strangers"
    )
    held_out = calibrate_encoder(
        cache,
        data,
        encoder,
        "bench.openset held-out refit",
        exclude=set(bench.enrolled) | set(bench.stranger_people),
    )
    for label, cal in (
        ("shipped calibration", calibration),
        ("open-set people held out", held_out),
    ):
        print(f" {label}:")
        tau_k = cal.identification_threshold(k, FAR)
        report(f"K = {k}, single photos", bench.gallery, bench.probes, bench.strangers, tau_k)
        report(
            f"K = {k}, fused probes and strangers",
            bench.gallery,
            bench.fused_probes,
            bench.fused_strangers,
            tau_k,
        )
    if args.distractors:
        extra = distractors(
            data, detector, encoder, bench.distractor_people, args.distractors - k, args.seed
        )
        big = np.concatenate([bench.gallery, extra])
        print(
            f" K = {len(big):,}: {len(extra):,} distractor identities (jittered copies of photos of "
            f"{len(bench.distractor_people)} other people)"
        )
        for label, cal in (
            ("shipped calibration", calibration),
            ("open-set people held out", held_out),
        ):
            tau_k = cal.identification_threshold(len(big), FAR)
            report(f"{label}, single photos", big, bench.probes, bench.strangers, tau_k)
            report(f"{label}, fused", big, bench.fused_probes, bench.fused_strangers, tau_k)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoders", default="sface,dlib-resnet")
    parser.add_argument("--detector", default=None, help="default: the setting face.detector")
    parser.add_argument("--enrolled", type=int, default=1000)
    parser.add_argument("--strangers", type=int, default=2000, help="at least this many photos")
    parser.add_argument("--distractors", type=int, default=10_000, help="K to grow to; 0: skip")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    detector = args.detector or get_settings().face.detector
    for encoder in args.encoders.split(","):
        run(encoder, detector, args)


if __name__ == "__main__":
    main()
