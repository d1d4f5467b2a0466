"""Open-set identification at gallery scale on LFW: one photo enrolled per person, strangers, and
distractors up to K = 10,000, at the calibrated 1:K threshold.

    nice -n 10 python -m bench.openset [--encoders sface,dlib-resnet] [--detector yunet]

Protocol (nothing here is chosen on View 1 DevTest, whose people and images are left out):
- enrolled: ``--enrolled`` (1,000) people outside DevTest with at least two photos with a face,
  each from ONE photo (the first); probes: all their other photos;
- strangers: at least 2,000 photos of other people outside DevTest, never enrolled;
- fused probes and strangers: three photos of one person fused into one template
  (shared/face/fusion.py), as a track's best frames or a multi-photo enrollment would be;
- K = 10,000: the gallery grows with distractor identities from the remaining people, who are
  neither probes nor strangers (bench/distractors.py): every one of them once (about 2,800
  distinct people), then other photos of them and one distinct strong augmentation ("look") per
  copy up to 9,000; the run prints the composition.
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

from bench.distractors import LOOKS, Source, compose, encode_sources, look_cache_path  # noqa: E402
from shared.face.fusion import fuse_encodings  # noqa: E402
from shared.face.verification import Calibration, calibration_path, squared_distances  # noqa: E402
from shared.settings import get_settings  # noqa: E402
from training.calibration import TAIL_RATE  # noqa: E402
from training.datasets.lfw_cache import (  # noqa: E402
    FLIPPED,
    OUT,
    CachedLfw,
    find_landmarks,
    flip_mean,
    lfw_keys,
    outside_devtest_keys,
)
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
    distractor_people: dict[str, list[str]]
    """Person -> image keys with a face, of everyone who may be a distractor."""
    stranger_people: list[str]


def build(
    cache: CachedLfw,
    data: Path,
    enrolled_count: int,
    strangers_min: int,
    seed: int,
    pool: set[str] | None = None,
    distractor_pool: set[str] | None = None,
) -> OpenSet:
    """The open set among LFW's images outside DevTest: enrolled people and strangers from
    ``pool`` (default: everyone there), distractor people from ``distractor_pool`` (default: the
    pool's remaining people)."""
    outside, _ = split_images(data)
    photos: dict[str, list[np.ndarray]] = {}
    keys: dict[str, list[str]] = {}
    for img in outside:
        vector = cache(img)
        if vector is not None:
            photos.setdefault(img.parent.name, []).append(vector)
            keys.setdefault(img.parent.name, []).append(f"{img.parent.name}/{img.name}")
    rng = random.Random(seed)
    candidates = sorted(photos) if pool is None else sorted(n for n in photos if n in pool)
    several = [n for n in candidates if len(photos[n]) >= 2]
    enrolled = sorted(rng.sample(several, enrolled_count))
    chosen = set(enrolled)
    others = [n for n in candidates if n not in chosen]
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
    taken = chosen | set(stranger_people)
    if distractor_pool is None:
        distractor_people = [n for n in others if n not in taken]
    else:
        distractor_people = sorted(n for n in photos if n in distractor_pool and n not in taken)
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
        {n: keys[n] for n in distractor_people},
        stranger_people,
    )


def distractors(
    cache: CachedLfw,
    data: Path,
    detector: str,
    encoder_name: str,
    people: dict[str, list[str]],
    count: int,
) -> tuple[np.ndarray, list[Source]]:
    """``count`` distractor identities from ``people`` (person -> image keys with a face), as
    bench/distractors.py composes them. The looks' encodings are cached by image and look, per
    base encoder: a flip-augmented encoder's are the unit mean of the look's and its mirror's,
    like ``CachedLfw``'s, so SFace with and without flip share the encoder runs."""
    sources = compose(people, count)
    base = FLIPPED.get(encoder_name, encoder_name)
    views = (False, True) if encoder_name in FLIPPED else (False,)

    def encode_looks(wanted: list[Source]) -> np.ndarray:
        found = []
        for mirrored in views:  # one file per view: the two can be computed side by side
            path = look_cache_path(detector, base + ("-mirrored" if mirrored else ""))
            cached = dict(np.load(path)) if path.exists() else {}
            missing = [s for s in wanted if f"{s.key}|{s.look}" not in cached]
            if missing:
                [vectors] = _encode_looks(data, detector, base, missing, (mirrored,))
                cached.update(
                    (f"{s.key}|{s.look}", v) for s, v in zip(missing, vectors, strict=True)
                )
                OUT.mkdir(exist_ok=True)
                np.savez(path, **cached)
            found.append(np.stack([cached[f"{s.key}|{s.look}"] for s in wanted]))
        return flip_mean(*found) if len(found) == 2 else found[0]

    return encode_sources(sources, cache.keys, cache.encodings, encode_looks), sources


def _encode_looks(
    data: Path, detector: str, encoder_name: str, sources: list[Source], views: tuple[bool, ...]
) -> list[np.ndarray]:
    """Encodings of each source's look chip (and of its mirror when ``views`` has True)."""
    import cv2

    from shared.face.chip_kinds import chip_kind
    from shared.face.factory import load_face_encoder
    from training.datasets.lfw import lfw_root

    keys = lfw_keys(data)
    landmarks = find_landmarks(data, detector, keys)
    index = {k: i for i, k in enumerate(keys)}
    settings = get_settings().model_copy(deep=True)
    settings.face.encoder = encoder_name
    encoder = load_face_encoder(settings, threads=settings.face.tf_threads)
    align = chip_kind(encoder.chip_kind).align
    root = lfw_root(data)
    found: list[list[np.ndarray]] = [[] for _ in views]
    for start in range(0, len(sources), 256):
        chips = np.stack(
            [
                LOOKS[s.look](align(cv2.imread(str(root / s.key)), landmarks[index[s.key]]))
                for s in sources[start : start + 256]
            ]
        )
        for i, mirrored in enumerate(views):
            found[i].append(
                encoder.encode(np.ascontiguousarray(chips[:, :, ::-1]) if mirrored else chips)
            )
        print(f"  looks: {start + len(chips)}/{len(sources)} encoded", flush=True)
    return [np.concatenate(f) for f in found]


def composition(extra: np.ndarray, sources: list[Source]) -> str:
    """What the distractors are, and how far each kind of copy sits from its person's first
    photo (mean squared distance; other photos of the same person for comparison)."""
    firsts: dict[str, np.ndarray] = {}
    kinds: dict[str, list[float]] = {}
    for vector, source in zip(extra, sources, strict=True):
        person = source.key.split("/")[0]
        if person not in firsts:  # compose's first round: each person's first photo
            firsts[person] = vector
            kinds.setdefault("distinct people", []).append(0.0)
            continue
        kind = "other photo of the person" if source.look < 0 else LOOKS[source.look].__name__
        kinds.setdefault(kind, []).append(float(np.sum((vector - firsts[person]) ** 2)))
    return "; ".join(
        f"{kind} {len(d):,}" + (f" (mean distance {np.mean(d):.3f})" if any(d) else "")
        for kind, d in kinds.items()
    )


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
    cache = CachedLfw(data, detector, encoder, only=outside_devtest_keys(data))
    path = calibration_path(0, encoder)
    if args.tail_rate is None and path.is_file():
        calibration = Calibration.load(path)
    else:  # a design not shipped yet: fitted here exactly as facestream calibrate would
        rate = args.tail_rate or TAIL_RATE
        calibration = calibrate_encoder(cache, data, encoder, "bench.openset", tail_rate=rate)
        print(f"\n(calibration fitted in the benchmark, tail anchor at {rate:.0e})")
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
        tail_rate=args.tail_rate or TAIL_RATE,
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
        extra, sources = distractors(
            cache, data, detector, encoder, bench.distractor_people, args.distractors - k
        )
        big = np.concatenate([bench.gallery, extra])
        print(
            f" K = {len(big):,}: {len(extra):,} distractor identities from "
            f"{len(bench.distractor_people):,} other people: {composition(extra, sources)}"
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
    parser.add_argument(
        "--tail-rate",
        type=float,
        default=None,
        help="fit the calibration here with the tail anchored at this per-pair rate "
        "(default: the shipped calibration file)",
    )
    args = parser.parse_args()
    detector = args.detector or get_settings().face.detector
    for encoder in args.encoders.split(","):
        run(encoder, detector, args)


if __name__ == "__main__":
    main()
