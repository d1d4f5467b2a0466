"""Per-face encode time of the encoders (SFace, SFace with flip, dlib-resnet in TensorFlow) and dlib-bin, one run.

    .venv/bin/python -m bench.encoder [--repeats 5]

Each encodes real aligned chips of the enrollment photos at batch 1, 8 and 32: SFace its 112x112
ArcFace chips, dlib-resnet and dlib-bin the same 150x150 dlib chips (dlib with
``compute_face_descriptor`` on a list of chips). Ratios are per face against dlib-bin
(<= 1.0: no slower).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from shared.settings import get_settings  # noqa: E402


def real_chips(encoder: str, count: int) -> np.ndarray:
    """``count`` chips of the kind ``encoder`` takes, from every face of the enrollment photos."""
    import cv2

    from shared.face.chip_kinds import chip_kind
    from shared.face.detection import create_detector
    from shared.face.factory import chip_kind_for

    settings = get_settings()
    detector = create_detector(settings.face.detector, min_face_px=settings.face.min_face_px)
    align = chip_kind(chip_kind_for(encoder)).align
    chips = []
    for photo in sorted((settings.shared_data / "faces" / "people" / "enroll").rglob("*.*")):
        image = cv2.imread(str(photo))
        if image is not None:
            chips.extend(align(image, d.landmarks) for d in detector.detect(image))
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
    from shared.face.sface import load_sface

    models_dir = get_settings().face.models_dir
    dlib_chips, sface_chips = real_chips("dlib-resnet", 32), real_chips("sface", 32)
    resnet, sface = load_encoder(models_dir), load_sface(models_dir)
    sface_flip = load_sface(models_dir, flip=True)
    theirs = dlib.face_recognition_model_v1(models.face_recognition_model_location())

    def dlib_encode(batch: np.ndarray):
        return theirs.compute_face_descriptor([np.ascontiguousarray(c) for c in batch])

    print(
        f"{'batch':>5} {'sface ms/face':>14} {'sface-flip ms/face':>19} {'dlib-resnet ms/face':>20} "
        f"{'dlib-bin ms/face':>17} {'sface/dlib-bin':>15} {'resnet/dlib-bin':>16}"
    )
    for batch in (1, 8, 32):
        ms_sface = per_face_ms(sface.encode, sface_chips, batch, args.repeats)
        ms_flip = per_face_ms(sface_flip.encode, sface_chips, batch, args.repeats)
        ms_resnet = per_face_ms(resnet.encode, dlib_chips, batch, args.repeats)
        reference = per_face_ms(dlib_encode, dlib_chips, batch, args.repeats)
        print(
            f"{batch:>5} {ms_sface:>14.2f} {ms_flip:>19.2f} {ms_resnet:>20.2f} {reference:>17.2f} "
            f"{ms_sface / reference:>15.2f} {ms_resnet / reference:>16.2f}"
        )
    difference = np.abs(resnet.encode(dlib_chips[:8]) - np.array(dlib_encode(dlib_chips[:8]))).max()
    print(f"max |dlib-resnet - dlib-bin| over 8 chips: {difference:.2e}")


if __name__ == "__main__":
    main()
