"""Every LFW image's subject found once per detector and encoded once per encoder, cached.

    nice -n 10 python -m training.datasets.lfw_cache --detector yunet --encoder sface [--limit N]

Why a cache: LFW has 13,233 images; the verification, calibration, open-set and detector
benchmarks all need the same faces, and encoding them takes minutes on a small CPU. Landmarks go
to ``bench/out/lfw-landmarks-DETECTOR.npz`` and encodings to ``bench/out/lfw-DETECTOR-ENCODER.npz``
(git-ignored, outside the data). The subject of each 250x250 deep-funneled image is the face
nearest the centre among the pipeline's usable faces (landmarks, at least min_face_px), as
bench.lfw has always chosen it. Missing faces are NaN rows. Runs resume where they stopped.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

OUT = Path(__file__).resolve().parents[2] / "bench" / "out"
SAVE_EVERY = 500


def lfw_keys(data: Path) -> list[str]:
    """``Person/Person_0001.jpg`` for every LFW image, sorted."""
    from training.datasets.lfw import lfw_root

    root = lfw_root(data)
    return sorted(f"{p.parent.name}/{p.name}" for p in root.glob("*/*.jpg"))


def landmarks_path(detector: str) -> Path:
    return OUT / f"lfw-landmarks-{detector}.npz"


def encodings_path(detector: str, encoder: str, mirrored: bool = False) -> Path:
    return OUT / f"lfw-{detector}-{encoder}{'-mirrored' if mirrored else ''}.npz"


def _load(
    path: Path, field: str, keys: list[str], shape: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray]:
    values = np.full((len(keys), *shape), np.nan, np.float32)
    done = np.zeros(len(keys), bool)
    if path.exists():
        with np.load(path) as archive:  # each archive[...] reads the whole array again: once
            stored_keys, stored, stored_done = archive["keys"], archive[field], archive["done"]
        index = {k: i for i, k in enumerate(stored_keys)}
        for i, key in enumerate(keys):
            if key in index:
                values[i] = stored[index[key]]
                done[i] = stored_done[index[key]]
    return values, done


def _save(path: Path, keys: list[str], field: str, values: np.ndarray, done: np.ndarray) -> None:
    OUT.mkdir(exist_ok=True)
    temp = path.with_suffix(".tmp.npz")
    arrays: dict[str, Any] = {"keys": np.array(keys), "done": done, field: values}
    np.savez(temp, **arrays)
    os.replace(temp, path)


def subject(faces, width: int, height: int):
    """The face nearest the image centre (LFW's subject), or None."""
    if not faces:
        return None
    centre = np.array([width / 2, height / 2])
    return min(
        faces, key=lambda d: np.linalg.norm(np.array(d.box[:2]) + np.array(d.box[2:]) / 2 - centre)
    )


def find_landmarks(data: Path, detector_name: str, keys: list[str]) -> np.ndarray:
    """(N, 5, 2) landmarks of each image's subject (NaN where none), computing what is missing."""
    import cv2

    from shared.face.detection import create_detector
    from shared.settings import get_settings
    from training.datasets.lfw import lfw_root

    path = landmarks_path(detector_name)
    values, done = _load(path, "landmarks", keys, (5, 2))
    todo = np.flatnonzero(~done)
    if len(todo) == 0:
        return values
    min_face = get_settings().face.min_face_px
    detector = create_detector(detector_name, min_face_px=min_face)
    root = lfw_root(data)
    started = time.perf_counter()
    for count, i in enumerate(todo, 1):
        image = cv2.imread(str(root / keys[i]))
        faces = [
            d
            for d in detector.detect(image)
            if d.landmarks is not None and min(d.box[2], d.box[3]) >= min_face
        ]
        face = subject(faces, image.shape[1], image.shape[0])
        if face is not None:
            values[i] = face.landmarks
        done[i] = True
        if count % SAVE_EVERY == 0 or count == len(todo):
            _save(path, keys, "landmarks", values, done)
            rate = (time.perf_counter() - started) / count
            print(
                f"  {detector_name}: {count}/{len(todo)} images, {1000 * rate:.1f} ms each",
                flush=True,
            )
    return values


def encode_all(
    data: Path,
    detector_name: str,
    encoder_name: str,
    keys: list[str],
    batch: int = 32,
    mirrored: bool = False,
    only: set[str] | None = None,
) -> np.ndarray:
    """(N, 128) encodings of each image's subject (NaN where no face), computing what is missing
    (of the keys in ``only``, when given: the rest stay NaN and are computed by a later call);
    ``mirrored``: of the left-right mirrored chips (flip test-time augmentation)."""
    import cv2

    from shared.face.chip_kinds import chip_kind
    from shared.face.factory import load_face_encoder
    from shared.settings import get_settings
    from training.datasets.lfw import lfw_root

    landmarks = find_landmarks(data, detector_name, keys)
    path = encodings_path(detector_name, encoder_name, mirrored)
    values, done = _load(path, "encodings", keys, (128,))
    done |= np.isnan(landmarks).any(axis=(1, 2))  # no face: nothing to encode
    todo = np.flatnonzero(~done)
    if only is not None:
        todo = np.array([i for i in todo if keys[i] in only], int)
    if len(todo) == 0:
        return values
    settings = get_settings().model_copy(deep=True)
    settings.face.encoder = encoder_name  # type: ignore[assignment]  # checked by the loader
    encoder = load_face_encoder(settings, threads=settings.face.tf_threads)
    align = chip_kind(encoder.chip_kind).align
    root = lfw_root(data)
    started = time.perf_counter()
    for start in range(0, len(todo), batch):
        members = todo[start : start + batch]
        chips = np.stack([align(cv2.imread(str(root / keys[i])), landmarks[i]) for i in members])
        if mirrored:
            chips = chips[:, :, ::-1]
        values[members] = encoder.encode(chips)
        done[members] = True
        count = start + len(members)
        if (start // batch) % 16 == 15 or count == len(todo):
            _save(path, keys, "encodings", values, done)
            rate = (time.perf_counter() - started) / count
            print(
                f"  {encoder_name}: {count}/{len(todo)} chips, {1000 * rate:.1f} ms each",
                flush=True,
            )
    return values


def outside_devtest_keys(data: Path) -> set[str]:
    """The keys of LFW's images outside View 1 DevTest (its people and images)."""
    from training.lfw_calibration import split_images

    return {f"{p.parent.name}/{p.name}" for p in split_images(data)[0]}


FLIPPED = {"sface-flip": "sface"}
"""Flip test-time-augmented encoder -> the encoder it runs on each chip and its mirror."""


def flip_mean(single: np.ndarray, mirrored: np.ndarray) -> np.ndarray:
    """The unit mean of each chip's and its mirror's unit encodings (SFaceEncoder(flip=True))."""
    total = single + mirrored
    return total / np.linalg.norm(total, axis=1, keepdims=True)


class CachedLfw:
    """Lookup of cached encodings by image path; None where no face was found."""

    def __init__(
        self, data: Path, detector: str, encoder: str, only: set[str] | None = None
    ) -> None:
        """``only``: encode just these keys now (the open sets never read View 1 DevTest's)."""
        self.keys = lfw_keys(data)
        if encoder in FLIPPED:  # the chip's and its mirror's encodings averaged, as the encoder
            base = FLIPPED[encoder]
            single = encode_all(data, detector, base, self.keys, only=only)
            mirrored = encode_all(data, detector, base, self.keys, mirrored=True, only=only)
            self.encodings = flip_mean(single, mirrored)
        else:
            self.encodings = encode_all(data, detector, encoder, self.keys, only=only)
        self.index = {k: i for i, k in enumerate(self.keys)}
        self.name = f"{detector}+{encoder}"

    def __call__(self, path: Path) -> np.ndarray | None:
        vector = self.encodings[self.index[f"{path.parent.name}/{path.name}"]]
        return None if np.isnan(vector).any() else vector


def main() -> None:
    from shared.settings import get_settings

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="yunet")
    parser.add_argument("--encoder", default=None, help="sface | dlib-resnet; none: landmarks only")
    parser.add_argument("--limit", type=int, default=None, help="first N images only (a check)")
    parser.add_argument("--mirrored", action="store_true", help="encode the mirrored chips")
    parser.add_argument(
        "--outside-devtest", action="store_true", help="only the images the open sets use"
    )
    args = parser.parse_args()
    data = get_settings().shared_data
    keys = lfw_keys(data)[: args.limit]
    only = outside_devtest_keys(data) if args.outside_devtest else None
    if args.encoder:
        values = encode_all(
            data, args.detector, args.encoder, keys, mirrored=args.mirrored, only=only
        )
    else:
        values = find_landmarks(data, args.detector, keys)
    found = ~np.isnan(values.reshape(len(values), -1)).any(axis=1)
    print(f"{args.detector} {args.encoder or ''}: {found.sum()}/{len(keys)} images with a face")


if __name__ == "__main__":
    main()
