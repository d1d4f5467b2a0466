"""LFW View 1 verification, threshold calibration, and open-set identification.

    .venv/bin/python -m bench.lfw [--calibrate] [--reference] [--open-set] [--jitters N]

(``facestream calibrate`` fits and writes the calibrations with the same function,
``training/lfw_calibration.py``, without the DevTest report.)

Protocol (the standard one for View 1): tau is chosen on DevTrain only (the midpoint maximising
accuracy), accuracy is reported on DevTest (1,000 pairs, people disjoint from DevTrain). Faces are
found, aligned and encoded by the project's own pipeline; in each 250x250 deep-funneled image the
face nearest the centre is the subject. ``--reference`` runs dlib-bin's original pipeline (HOG
detector, 5-point landmarks, dlib's ResNet) on the same DevTest pairs in the same run, at dlib's
documented threshold 0.6 (squared: 0.36). ``--calibrate`` writes shared/face/calibration.json,
or with ``--jitters N`` (the mean encoding of N perturbed copies of each chip, as 1:1 verification
of two photos encodes them: shared/face/jitter.py) calibration_jitterN.json.
``--open-set`` enrolls 100 people with one image each and probes with their other images and with
1,000 images of people not enrolled: rank-1 identification rate and false-accept rate at tau.
Encodings are cached in bench/out/ so reruns are quick.
"""

from __future__ import annotations

import argparse
import os
import random
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from shared.face.verification import (  # noqa: E402
    Calibration,
    ImpostorTail,
    calibration_path,
    squared_distances,
)
from shared.gallery.base import Encoding  # noqa: E402
from shared.gallery.index import GalleryIndex  # noqa: E402
from shared.settings import get_settings  # noqa: E402
from training.calibration import (  # noqa: E402
    best_threshold,
    calibrate,
)
from training.datasets.lfw import Pair, identities, people_in, read_pairs  # noqa: E402
from training.datasets.lfw_cache import CachedLfw  # noqa: E402
from training.lfw_calibration import (  # noqa: E402
    calibrate_encoders,
    pair_distances,
)

OUT = Path(__file__).parent / "out"
DLIB_THRESHOLD = 0.6**2


class Embedder:
    """Encodes LFW images with a pipeline, caching by path; None where no face was found."""

    def __init__(self, name: str, encode_image) -> None:
        self.name = name
        self.encode_image = encode_image
        self.cache_path = OUT / f"lfw-{name}.npz"
        self.cache: dict[str, np.ndarray] = {}
        if self.cache_path.exists():
            self.cache = dict(np.load(self.cache_path))
        self.seconds = 0.0
        self.computed = 0

    def __call__(self, path: Path) -> np.ndarray | None:
        key = f"{path.parent.name}/{path.name}"
        if key not in self.cache:
            started = time.perf_counter()
            vector = self.encode_image(path)
            self.seconds += time.perf_counter() - started
            self.computed += 1
            self.cache[key] = vector if vector is not None else np.full(128, np.nan, np.float32)
        vector = self.cache[key]
        return None if np.isnan(vector).any() else vector

    def save(self) -> None:
        OUT.mkdir(exist_ok=True)
        np.savez(self.cache_path, **self.cache)


def project_embedder(jitters: int = 0) -> Embedder:
    import cv2

    from shared.face.factory import build_pipeline

    settings = get_settings().model_copy(deep=True)
    settings.face.encoder = "dlib-resnet"  # the jitter calibration is dlib-resnet's only
    pipeline = build_pipeline(settings)

    def encode(path: Path) -> np.ndarray | None:
        image = cv2.imread(str(path))
        faces = pipeline.detect(image)
        if not faces:
            return None
        centre = np.array([image.shape[1] / 2, image.shape[0] / 2])
        face = min(
            faces,
            key=lambda d: np.linalg.norm(np.array(d.box[:2]) + np.array(d.box[2:]) / 2 - centre),
        )
        return pipeline.encode(pipeline.align(image, face.landmarks)[None], jitters)[0]

    suffix = f"-jitter{jitters}" if jitters > 0 else ""
    return Embedder(f"project-{pipeline.detector.name}{suffix}", encode)


def dlib_embedder() -> Embedder:
    import dlib
    import face_recognition_models as models

    detector = dlib.get_frontal_face_detector()
    shapes = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
    encoder = dlib.face_recognition_model_v1(models.face_recognition_model_location())

    def encode(path: Path) -> np.ndarray | None:
        rgb = dlib.load_rgb_image(str(path))
        boxes = detector(rgb, 1)
        if not boxes:
            return None
        centre = dlib.point(rgb.shape[1] // 2, rgb.shape[0] // 2)
        box = min(boxes, key=lambda b: (b.center() - centre).x ** 2 + (b.center() - centre).y ** 2)
        return np.array(encoder.compute_face_descriptor(rgb, shapes(rgb, box)), np.float32)

    return Embedder("dlib-reference", encode)


def accuracy(distances: np.ndarray, same: np.ndarray, threshold: float) -> float:
    return float(np.mean((distances <= threshold) == same))


def impostor_distances(pairs: list[Pair], embed: Embedder) -> np.ndarray:
    """Distances of every pair of images of different people among the images of ``pairs``."""
    images = sorted({p.first for p in pairs} | {p.second for p in pairs})
    found = [(path.parent.name, embed(path)) for path in images]
    names = np.array([name for name, v in found if v is not None])
    vectors = np.stack([v for _, v in found if v is not None])
    chunks = []
    for start in range(0, len(vectors), 512):
        block = squared_distances(vectors[start : start + 512], vectors)
        different = names[start : start + 512, None] != names[None, :]
        upper = np.arange(start, start + len(block))[:, None] < np.arange(len(vectors))[None, :]
        chunks.append(block[different & upper])
    return np.concatenate(chunks)


def verification(embed: Embedder, data: Path, save_to: Path | None, command: str) -> Calibration:
    """tau and the confidence curve on DevTrain, accuracy on DevTest; saved to ``save_to``."""
    train, test = read_pairs(data, "DevTrain"), read_pairs(data, "DevTest")
    d_train, y_train, miss_train = pair_distances(train, embed)
    finite = np.isfinite(d_train)
    impostors = impostor_distances(train, embed)
    fitted = calibrate(
        d_train[finite],
        y_train[finite],
        model=embed.name,
        source=f"LFW View 1 DevTrain, {finite.sum()} pairs with both faces found ({miss_train} missed), "
        f"{len(impostors):,} impostor pairs among its images; {command}",
        impostor_distances=impostors,
    )
    d_test, y_test, miss_test = pair_distances(test, embed)
    print(f"\n{embed.name}")
    print(
        f"  DevTrain: tau = {fitted.threshold:.4f} (accuracy {fitted.train_accuracy:.4f}), {miss_train} pairs missed a face"
    )
    print(
        f"  DevTest accuracy at tau:           {accuracy(d_test, y_test, fitted.threshold):.4f}  ({miss_test} pairs missed a face, counted as 'different')"
    )
    print(f"  DevTest accuracy at dlib's 0.36:   {accuracy(d_test, y_test, DLIB_THRESHOLD):.4f}")
    print(
        f"  DevTest best possible (oracle tau): {best_threshold(np.nan_to_num(d_test, posinf=9), y_test)[1]:.4f}"
    )
    if save_to is not None:
        fitted.save(save_to)
        print(f"  wrote {save_to}")
    return fitted


def reference(embed: Embedder, data: Path) -> None:
    d_test, y_test, misses = pair_distances(read_pairs(data, "DevTest"), embed)
    print(f"\n{embed.name} (dlib-bin, the original)")
    print(
        f"  DevTest accuracy at 0.36 (dlib's 0.6 L2): {accuracy(d_test, y_test, DLIB_THRESHOLD):.4f}  ({misses} pairs missed a face)"
    )


def open_set(embed: Embedder, data: Path, calibration: Calibration, seed: int = 0) -> None:
    excluded = people_in(read_pairs(data, "DevTrain"))
    rng = random.Random(seed)
    people = identities(data)
    candidates = sorted(n for n, images in people.items() if len(images) >= 2 and n not in excluded)
    enrolled = rng.sample(candidates, 100)
    others = [img for n, images in people.items() if n not in enrolled for img in images]
    impostors = rng.sample(sorted(others), 1000)
    index = GalleryIndex()
    rows = [(name, embed(people[name][0])) for name in enrolled]
    index.add_local([Encoding(name, name, v) for name, v in rows if v is not None])
    genuine = [(name, img) for name in enrolled for img in people[name][1:11]]
    genuine_best = [
        (name, index.search(v)[0][0])
        for name, v in ((n, embed(i)) for n, i in genuine)
        if v is not None
    ]
    impostor_best = [index.search(v)[0][0] for v in map(embed, impostors) if v is not None]
    print(f"\nopen set, {embed.name}: 100 people enrolled from one image each (seed {seed})")
    print(
        f"  genuine probes: {len(genuine)} ({len(genuine_best)} with a face found); impostor probes: 1000 ({len(impostor_best)} with a face found)"
    )
    rank1 = sum(m.person_id == name for name, m in genuine_best) / len(genuine)
    print(f"  rank-1 identification rate (no threshold): {rank1:.4f}")
    tau_k = calibration.identification_threshold(100, 0.01)
    for label, threshold in (
        ("1:1 tau", calibration.threshold),
        ("1:K tau (K=100, FAR 1%)", tau_k),
    ):
        hits = sum(m.person_id == name and m.distance <= threshold for name, m in genuine_best)
        accepts = sum(m.distance <= threshold for m in impostor_best)
        print(
            f"  at {label} = {threshold:.4f}: identification rate {hits / len(genuine):.4f}, "
            f"false-accept rate {accepts / 1000:.4f}"
        )


def tar_at_far(d_same: np.ndarray, impostors: np.ndarray, far: float) -> tuple[float, float]:
    """(TAR, threshold): the fraction of same pairs at or below the distance only ``far`` of
    impostor pairs undercut."""
    threshold = float(np.quantile(impostors, far))
    return float(np.mean(d_same <= threshold)), threshold


def auc(d_same: np.ndarray, d_diff: np.ndarray) -> float:
    """P(a same pair is closer than a different pair), ties half (Mann-Whitney)."""
    scores = np.concatenate([d_same, d_diff])
    ranks = np.argsort(np.argsort(scores)) + 1.0
    r_same = ranks[: len(d_same)].sum()
    return float(1 - (r_same - len(d_same) * (len(d_same) + 1) / 2) / (len(d_same) * len(d_diff)))


def devtest_report(cache: CachedLfw, data: Path, fitted: Calibration) -> None:
    """DevTest, once per design: accuracy at DevTrain's tau, AUC, TAR at FAR 1e-3 / 1e-4 (the
    FAR over every pair of different people among DevTest's images, ~1e6 pairs: the 500
    different pairs alone cannot resolve 1e-3)."""
    test = read_pairs(data, "DevTest")
    d_test, y_test, miss = pair_distances(test, cache)
    d_test = np.nan_to_num(d_test, posinf=9.0)
    impostors = impostor_distances(test, cache)
    print(f"\n{fitted.model} ({cache.name})")
    print(f"  DevTrain: tau = {fitted.threshold:.4f} (accuracy {fitted.train_accuracy:.4f})")
    print(
        f"  DevTest accuracy at tau:  {accuracy(d_test, y_test, fitted.threshold):.4f}  ({miss} pairs missed a face, counted as 'different')"
    )
    print(f"  DevTest AUC:              {auc(d_test[y_test], d_test[~y_test]):.4f}")
    for far in (1e-3, 1e-4):
        tar, at = tar_at_far(d_test[y_test], impostors, far)
        print(
            f"  DevTest TAR@FAR{far:.0e}:     {tar:.4f}  (distance {at:.4f}, {len(impostors):,} impostor pairs)"
        )
    tail = ImpostorTail(**fitted.impostor_tail) if fitted.impostor_tail else None
    if tail is not None:
        for k in (100, 1_000, 10_000, 100_000, 1_000_000):
            print(
                f"  1:K threshold at FAR 1%, K = {k:>9,}: {fitted.identification_threshold(k, 0.01):.4f}"
            )
        # The tail's promise checked on pairs it never saw: DevTest's impostors.
        for rate in (1e-4, 1e-5):
            at = fitted.impostor_distance(rate)
            print(
                f"  DevTest impostor pairs below the fitted {rate:.0e} distance {at:.4f}: {np.mean(impostors <= at):.2e}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--calibrate",
        action="store_true",
        help="write each encoder's shared/face/calibration*.json",
    )
    parser.add_argument("--reference", action="store_true", help="also run dlib-bin's pipeline")
    parser.add_argument("--open-set", action="store_true")
    parser.add_argument(
        "--jitters",
        type=int,
        default=0,
        help="dlib-resnet: encode the mean of N perturbed copies of each chip",
    )
    parser.add_argument("--detector", default=None, help="default: the setting face.detector")
    parser.add_argument(
        "--encoders", default="sface,dlib-resnet", help="comma-separated, reported side by side"
    )
    parser.add_argument(
        "--no-devtest", action="store_true", help="calibrate only: DevTest is not even read"
    )
    args = parser.parse_args()
    settings = get_settings()
    data = settings.shared_data
    if args.jitters > 0:
        return jittered(args, data)
    detector = args.detector or settings.face.detector
    encoders = args.encoders.split(",")
    for cache, fitted in calibrate_encoders(data, detector, encoders, write=args.calibrate):
        if not args.no_devtest:
            devtest_report(cache, data, fitted)
        if args.open_set:
            open_set(cache, data, fitted)
    if args.reference:
        theirs = dlib_embedder()
        try:
            reference(theirs, data)
        finally:
            theirs.save()


def jittered(args, data: Path) -> None:
    """The dlib-resnet jitter calibration, as before (project pipeline with dlib-resnet)."""
    ours = project_embedder(args.jitters)
    try:
        save_to = calibration_path(args.jitters) if args.calibrate else None
        command = f"python -m bench.lfw --calibrate --jitters {args.jitters}"
        verification(ours, data, save_to, command)
    finally:
        ours.save()
    if ours.computed:
        print(
            f"\n{ours.name}: {ours.computed} images encoded, {1000 * ours.seconds / ours.computed:.1f} ms per image"
        )


if __name__ == "__main__":
    main()
