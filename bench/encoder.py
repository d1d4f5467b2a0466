"""Per-face encode time of the project's TensorFlow encoder against dlib-bin, in the same run.

    .venv/bin/python -m bench.encoder [--repeats 5]

Both encode the same real aligned chips (150x150, from the enrollment photos) at batch 1, 8 and
32: ours with ``FaceEncoder.encode``, dlib with ``compute_face_descriptor`` on a list of chips.
Ratio = ours / dlib per face (<= 1.0: ours is no slower). Target: ratio <= 1.0 at batch 8.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from shared.settings import get_settings  # noqa: E402


def real_chips(count: int) -> np.ndarray:
    import cv2

    from shared.face.factory import build_pipeline

    pipeline = build_pipeline(get_settings())
    chips = []
    for photo in sorted((get_settings().shared_data / "faces" / "people" / "enroll").rglob("*.*")):
        image = cv2.imread(str(photo))
        if image is not None:
            chips.extend(face.chip for face in pipeline.analyze(image))
    return np.stack([chips[i % len(chips)] for i in range(count)])


def per_face_ms(encode, chips: np.ndarray, batch: int, repeats: int) -> float:
    encode(chips[:batch])  # warm-up
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        encode(chips[:batch])
        runs.append((time.perf_counter() - started) * 1000 / batch)
    return float(np.median(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import dlib
    import face_recognition_models as models

    from shared.face.encoder import load_encoder

    chips = real_chips(32)
    ours = load_encoder(get_settings().face.models_dir)
    theirs = dlib.face_recognition_model_v1(models.face_recognition_model_location())

    def dlib_encode(batch: np.ndarray):
        return theirs.compute_face_descriptor([np.ascontiguousarray(c) for c in batch])

    print(f"{'batch':>5} {'ours ms/face':>13} {'dlib ms/face':>13} {'ratio':>7}")
    for batch in (1, 8, 32):
        mine = per_face_ms(ours.encode, chips, batch, args.repeats)
        reference = per_face_ms(dlib_encode, chips, batch, args.repeats)
        print(f"{batch:>5} {mine:>13.2f} {reference:>13.2f} {mine / reference:>7.2f}")
    difference = np.abs(ours.encode(chips[:8]) - np.array(dlib_encode(chips[:8]))).max()
    print(f"max |ours - dlib| over 8 chips: {difference:.2e}")


if __name__ == "__main__":
    main()
