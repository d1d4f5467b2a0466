"""Does the face's surround move with it? A cue for prints held by hand, measured and not used.

    nice -n 10 .venv/bin/python -m bench.liveness_surround

A photo held to a fixed camera moves as one plane: its surround (the print around the face) moves
exactly as the face does, while a live person's room stays still as the head moves. The detector
already sends what this needs: each face's box and its context crop (``shared/liveness/
context.py``, 2.5 box sides, 96 px, centred on the box). Per pair of consecutive frames of a
track, Farneback's optical flow between the two crops gives the median flow of the textured
face centre and of the textured surround (``context.SURROUND``), and the box change gives where
the surround would go if the scene stood still. ``follows`` = (a - b) / (a + b + 0.3) with a the
surround's distance from standing still and b its distance from the face's motion: +1 the
surround moves with the face (a plane), -1 it stands still (a head before a fixed room). Pairs
where the two predictions lie under ``MIN_SEPARATION`` crop px apart say nothing and are
skipped; a window (16 frames, every 8) needs three pairs that speak.

It prints, per source of ``training/liveness/evaluation.py`` (every live video's tracks of 16
frames or more at the pipeline's rate, each attack video's medium, the three stills moved by
hand as ``moving_still`` does), the window means' 5th/50th/95th percentiles and largest value
and the share of windows above 0.2. docs/liveness.md ("The surround's motion") has the run and
why the cue is not used.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from shared.liveness.context import CONTEXT_SIZE, SURROUND, crop_transform  # noqa: E402

MIN_SEPARATION = 0.7
"""Crop px between 'stands still' and 'moves with the face' below which a pair says nothing."""
TEXTURE = 40.0
"""Sobel magnitude a pixel needs for its flow to count (flat walls carry no motion)."""
_CENTRE = (CONTEXT_SIZE - 1) / 2
_Y, _X = np.mgrid[0:CONTEXT_SIZE, 0:CONTEXT_SIZE] - _CENTRE
FACE_CENTRE = np.maximum(np.abs(_X), np.abs(_Y)) < 0.45 * CONTEXT_SIZE / 2.5
PIXELS = np.stack([_X + _CENTRE, _Y + _CENTRE], axis=-1)


def _homogeneous(affine: np.ndarray) -> np.ndarray:
    return np.vstack([affine, [0.0, 0.0, 1.0]])


def follows(before: np.ndarray, after: np.ndarray, box_before, box_after) -> float | None:
    """How much the surround moved with the face between two context crops, or None."""
    flow = cv2.calcOpticalFlowFarneback(before, after, None, 0.5, 3, 11, 3, 5, 1.1, 0)
    still = (
        _homogeneous(crop_transform(box_after))
        @ np.linalg.inv(_homogeneous(crop_transform(box_before)))
    )[:2]
    standing = PIXELS @ still[:, :2].T + still[:, 2] - PIXELS
    gradient = np.hypot(cv2.Sobel(before, cv2.CV_32F, 1, 0), cv2.Sobel(before, cv2.CV_32F, 0, 1))
    textured = gradient > TEXTURE
    surround, face = SURROUND & textured, FACE_CENTRE & textured
    if surround.sum() < 50 or face.sum() < 20:
        return None
    face_motion = np.median(flow[face], axis=0)
    surround_motion = np.median(flow[surround], axis=0)
    standing_motion = np.median(standing[surround], axis=0)
    if np.linalg.norm(face_motion - standing_motion) < MIN_SEPARATION:
        return None
    a = float(np.linalg.norm(surround_motion - standing_motion))
    b = float(np.linalg.norm(surround_motion - face_motion))
    return (a - b) / (a + b + 0.3)


def window_means(track, window: int = 16, hop: int = 8) -> list[float]:
    """The mean of ``follows`` over each window's speaking pairs (windows with under 3 skipped)."""
    pairs = [
        follows(track.contexts[i - 1], track.contexts[i], track.boxes[i - 1], track.boxes[i])
        for i in range(1, len(track.boxes))
    ]
    means = []
    for start in range(0, len(pairs) - (window - 1) + 1, hop):
        speaking = [p for p in pairs[start : start + window - 1] if p is not None]
        if len(speaking) >= 3:
            means.append(float(np.mean(speaking)))
    return means


def main() -> None:
    from bench.machine import shared_data_dir
    from shared.face.detection import create_detector
    from training.liveness import training
    from training.liveness.evaluation import ATTACK_VIDEOS, LIVE_VIDEOS, STILLS, moving_still

    data = shared_data_dir()
    detector = create_detector("mtcnn", min_face_px=40)
    sources: list[tuple[str, str, list]] = []
    for name in LIVE_VIDEOS + ATTACK_VIDEOS:
        frames = training.read_video(data / name)
        clips = training.at_pipeline_rate(data / name, frames)
        if name in LIVE_VIDEOS:
            tracks = [t for c in clips for t in training.every_track(c, detector)]
            sources.append(("live", name, [t for t in tracks if len(t.boxes) >= 16]))
        else:
            small = name.startswith("liveness/")  # the live person stands beside the phone
            tracks = [training.follow_face(c, detector, smallest=small) for c in clips]
            sources.append(("attack", name, tracks))
    rng = np.random.default_rng(0)
    for still, label in STILLS.items():
        image = cv2.imread(str(data / "liveness" / "stills" / still))
        tracks = [training.follow_face(moving_still(image, rng, 48), detector) for _ in range(5)]
        sources.append((f"still, {label}", still, tracks))
    for label, name, tracks in sources:
        means = np.array([m for t in tracks for m in window_means(t)])
        if not len(means):
            print(f"{label:13s} {name:52s} no window with motion to read")
            continue
        p5, p50, p95 = np.percentile(means, [5, 50, 95])
        print(
            f"{label:13s} {name:52s} windows {len(means):3d}  p5 {p5:+.2f}  median {p50:+.2f}"
            f"  p95 {p95:+.2f}  max {means.max():+.2f}  above 0.2: {np.mean(means > 0.2):.0%}",
            flush=True,
        )


if __name__ == "__main__":
    main()
