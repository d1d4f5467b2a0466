"""Carrying faces between detections: optical flow vs constant-velocity prediction (Kalman's model).

    .venv/bin/python -m bench.tracking [--detector yunet] [--gaps 1,2,3]

On the Hamilton clip (15 fps), the live-person and the replay clip, every frame is detected; for
each face detected on frames t - g and t (same track, by box overlap), it carries the face from
t - g to t two ways and compares the carried landmarks with the ones detected on frame t, in
inter-ocular distances (IOD): Lucas-Kanade flow frame by frame (services/detector/tracking.py, as
the detector does) and constant-velocity extrapolation from the two detections before (the motion
model of a Kalman filter, which has no measurement between detections). Also the share of faces
the flow keeps (its forwards-backwards check), and, for a detector that can refine (MTCNN), the
flow-carried face measured again by ``FaceDetector.refine`` as the service does for young tracks,
with its cost per face against a full detection's per frame. The detector choice of services/detector/
tracking.py rests on these figures (bench/README.md).
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.tracks import clip_frames  # noqa: E402
from services.detector.tracking import carry, extrapolate  # noqa: E402
from shared.face.types import box_iou as iou  # noqa: E402
from shared.settings import Settings  # noqa: E402

CLIPS = (
    ("video", "hamilton_clip_640x360.mp4"),
    ("liveness", "live_person.mov"),
    ("liveness", "replay_attack_same_person.mp4"),
)


def iod(landmarks: np.ndarray) -> float:
    return float(np.linalg.norm(landmarks[1] - landmarks[0])) + 1e-6


def same_face(detections: list, box) -> object | None:
    best = max(detections, key=lambda d: iou(d.box, box), default=None)
    return best if best is not None and iou(best.box, box) >= 0.3 else None


@dataclass
class Errors:
    """Landmark errors (IOD) against the detection on the same frame, and faces kept/tried."""

    flow: list[float] = field(default_factory=list)
    velocity: list[float] = field(default_factory=list)
    refined: list[float] = field(default_factory=list)
    refine_ms: list[float] = field(default_factory=list)
    kept: int = 0
    refined_kept: int = 0
    tried: int = 0


def measure(frames: list, found: list, gap: int, detector) -> Errors:
    """Flow, flow then ``detector.refine`` (where it can), and constant-velocity extrapolation
    over ``gap`` frames, each against the detection on the frame reached."""
    greys = [cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in frames]
    errors = Errors()
    for t in range(gap + 1, len(frames)):
        for start in found[t - gap]:
            end = same_face(found[t], start.box)
            before = same_face(found[t - gap - 1], start.box)
            if end is None or start.landmarks is None or end.landmarks is None:
                continue
            errors.tried += 1
            box, points, ok = start.box, start.landmarks, True
            for k in range(t - gap, t):
                moved = carry(greys[k], greys[k + 1], box, points)
                ok = ok and moved.ok
                box, points = moved.box, moved.landmarks
            errors.kept += ok
            scale = iod(end.landmarks)
            errors.flow.append(float(np.linalg.norm(points - end.landmarks, axis=1).mean()) / scale)
            if detector.can_refine:
                began = time.perf_counter()
                refined = detector.refine(frames[t], [box])[0]
                errors.refine_ms.append((time.perf_counter() - began) * 1000)
                if refined is not None:
                    errors.refined_kept += 1
                    error = np.linalg.norm(refined.landmarks - end.landmarks, axis=1).mean() / scale
                    errors.refined.append(float(error))
            if before is not None and before.landmarks is not None:
                step = (start.landmarks - before.landmarks).mean(axis=0)
                _, predicted = extrapolate(start.box, tuple(step * gap), start.landmarks)
                error = np.linalg.norm(predicted - end.landmarks, axis=1).mean() / scale
                errors.velocity.append(float(error))
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="yunet")
    parser.add_argument("--gaps", default="1,2,3")
    args = parser.parse_args()
    from shared.face.detection import create_detector

    settings = Settings()
    options = {"min_face_px": settings.face.min_face_px}
    if args.detector == "yunet":
        options["models_dir"] = settings.face.models_dir
    detector = create_detector(args.detector, **options)
    print(f"detector {args.detector}; landmark error in inter-ocular distances, median / p90")
    for folder, name in CLIPS:
        frames = clip_frames(settings.shared_data / folder / name)
        began = time.perf_counter()
        found = [detector.detect(f) for f in frames]
        detect_ms = (time.perf_counter() - began) * 1000 / len(frames)
        for gap in [int(g) for g in args.gaps.split(",")]:
            e = measure(frames, found, gap, detector)
            if not e.flow:
                continue
            refined = (
                f"   flow + refine {_spread(e.refined)} (kept {e.refined_kept}/{e.tried}, "
                f"{np.median(e.refine_ms):.1f} ms/face against {detect_ms:.1f} ms/frame detected)"
                if e.refine_ms
                else ""
            )
            print(
                f"  {name:32s} gap {gap}: flow {_spread(e.flow)} (kept {e.kept}/{e.tried})   "
                f"constant velocity {_spread(e.velocity)} (n={len(e.velocity)}){refined}",
                flush=True,
            )


def _spread(errors: list[float]) -> str:
    """Median / p90."""
    if not errors:
        return "- / -"
    return f"{np.median(errors):.3f} / {np.percentile(errors, 90):.3f}"


if __name__ == "__main__":
    main()
