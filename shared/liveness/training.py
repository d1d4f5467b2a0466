"""Liveness data, training and evaluation: windows of per-frame features from real and synthetic clips.

Data (``../shared/data``; ``liveness/`` is never trained on):

- live: the Hamilton clip and the first half of ``liveness-train/live_person2.mp4``;
- attacks for training: the real replay ``liveness-train/replay_attack_person2.mp4``, screen
  replays of Hamilton clips and printed LFW photos (people A), both synthesised (``attacks.py``)
  over street-crowd and content-photo backgrounds;
- held-out synthetic evaluation: screen replays of ``live_person2.mp4`` (a video not replayed in
  training), prints of other LFW people (B), and the second half of ``live_person2.mp4`` as live;
- real evaluation: ``liveness/live_person.mov``, ``liveness/replay_attack_same_person.mp4`` and
  the three stills, per window.

In every clip the track is the largest face of each frame (the subject; bystanders and the
street crowd are smaller), frames without a face are skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from shared.face.alignment import align_face
from shared.face.detection import FaceDetector
from shared.liveness import attacks
from shared.liveness.features import track_features
from shared.liveness.model import WINDOW

log = logging.getLogger(__name__)

STRIDE = 4


@dataclass
class Windows:
    features: np.ndarray
    """(N, window, FEATURES)"""
    labels: list[str]
    """``live`` or the attack type, per window."""

    @classmethod
    def empty(cls) -> Windows:
        return cls(np.empty((0, WINDOW, 0), np.float32), [])

    def __add__(self, other: Windows) -> Windows:
        if not self.labels:
            return other
        if not other.labels:
            return self
        return Windows(np.concatenate([self.features, other.features]), self.labels + other.labels)


def read_video(path: Path, limit: int | None = None, start: int = 0) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    index = 0
    while limit is None or len(frames) < limit:
        ok, frame = capture.read()
        if not ok:
            break
        if index >= start:
            frames.append(frame)
        index += 1
    capture.release()
    if not frames:
        raise FileNotFoundError(f"no frames read from {path}")
    return frames


def main_face_track(frames: Sequence[np.ndarray], detector: FaceDetector, min_face_px: int = 40):
    """Chips, landmarks and boxes of the largest face in each frame that has one."""
    chips, points, boxes = [], [], []
    for frame in frames:
        faces = [
            d
            for d in detector.detect(frame)
            if d.landmarks is not None and min(d.box[2], d.box[3]) >= min_face_px
        ]
        if not faces:
            continue
        face = max(faces, key=lambda d: d.box[2] * d.box[3])
        chips.append(align_face(frame, face.landmarks))
        points.append(np.asarray(face.landmarks))
        boxes.append(face.box)
    return chips, points, boxes


def windows_of(frames: Sequence[np.ndarray], label: str, detector: FaceDetector) -> Windows:
    """Every WINDOW-frame window (stride STRIDE) of the clip's main face track."""
    features = track_features(*main_face_track(frames, detector))
    starts = range(0, len(features) - WINDOW + 1, STRIDE)
    stacked = [features[s : s + WINDOW] for s in starts]
    if not stacked:
        return Windows.empty()
    return Windows(np.stack(stacked), [label] * len(stacked))


def backgrounds(shared_data: Path, count: int, rng: np.random.Generator, size=(640, 360)):
    """Scenes to hold a medium in front of: street-crowd frames or a content photo."""
    crowd = read_video(shared_data / "video" / "street_crowd_1080p.mp4", limit=count, start=0)
    photos = [cv2.imread(str(p)) for p in sorted((shared_data / "style" / "content").glob("*.jpg"))]
    if rng.random() < 0.5:
        return [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in crowd]
    still = cv2.resize(photos[int(rng.integers(len(photos)))], size, interpolation=cv2.INTER_AREA)
    return [still] * count


def lfw_people(shared_data: Path, group: str, count: int, seed: int) -> list[Path]:
    """One photo each of ``count`` LFW people; group A and B never share a person."""
    people = sorted((shared_data / "faces" / "lfw-deepfunneled").iterdir())
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(people))
    half = len(order) // 2
    chosen = order[:half] if group == "A" else order[half:]
    return [sorted(people[i].glob("*.jpg"))[0] for i in chosen[:count]]


def synthetic_prints(photos: Sequence[Path], shared_data: Path, detector, seed: int) -> Windows:
    rng = np.random.default_rng(seed)
    total = Windows.empty()
    for photo in photos:
        image = cv2.imread(str(photo))
        image = cv2.resize(image, None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC)
        frames = attacks.print_attack(image, backgrounds(shared_data, 24, rng), rng)
        total = total + windows_of(frames, attacks.PRINT, detector)
    return total


def synthetic_replays(
    clips: Iterator[list[np.ndarray]], shared_data: Path, detector, seed: int
) -> Windows:
    rng = np.random.default_rng(seed)
    total = Windows.empty()
    for clip in clips:
        frames = attacks.screen_replay(clip, backgrounds(shared_data, len(clip), rng), rng)
        total = total + windows_of(frames, attacks.SCREEN, detector)
    return total


def clips_of(frames: Sequence[np.ndarray], length: int = 24, step: int = 24):
    for start in range(0, len(frames) - length + 1, step):
        yield list(frames[start : start + length])


def training_windows(shared_data: Path, detector: FaceDetector, seed: int = 0) -> Windows:
    hamilton = read_video(shared_data / "video" / "hamilton_clip_640x360.mp4")
    person2 = read_video(shared_data / "liveness-train" / "live_person2.mp4")
    live = windows_of(hamilton, "live", detector) + windows_of(person2[:56], "live", detector)
    real_replay = windows_of(
        read_video(shared_data / "liveness-train" / "replay_attack_person2.mp4"),
        attacks.SCREEN,
        detector,
    )
    prints = synthetic_prints(lfw_people(shared_data, "A", 40, seed), shared_data, detector, seed)
    replays = synthetic_replays(clips_of(hamilton), shared_data, detector, seed + 1)
    return live + real_replay + prints + replays


def heldout_windows(shared_data: Path, detector: FaceDetector, seed: int = 0) -> Windows:
    person2 = read_video(shared_data / "liveness-train" / "live_person2.mp4")
    live = windows_of(person2[56:], "live", detector)
    prints = synthetic_prints(
        lfw_people(shared_data, "B", 20, seed), shared_data, detector, seed + 2
    )
    replays = synthetic_replays(clips_of(person2, 24, 12), shared_data, detector, seed + 3)
    return live + prints + replays


def fit(train: Windows, seed: int = 0, epochs: int = 80):
    """Train the model on ``train`` (live = 1), balancing the classes by weight."""
    import tensorflow as tf

    from shared.liveness.model import LivenessModel, build_model

    tf.keras.utils.set_random_seed(seed)
    x = train.features.astype(np.float32)
    y = np.array([label == "live" for label in train.labels], np.float32)
    mean = x.reshape(-1, x.shape[-1]).mean(axis=0)
    scale = x.reshape(-1, x.shape[-1]).std(axis=0) + 1e-6
    model = build_model(x.shape[1])
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    positives = max(float(y.sum()), 1.0)
    weights = {1: len(y) / (2 * positives), 0: len(y) / (2 * max(len(y) - positives, 1.0))}
    history = model.fit(
        (x - mean) / scale, y, epochs=epochs, batch_size=32, class_weight=weights, verbose=0
    )
    card = {
        "windows": {label: train.labels.count(label) for label in sorted(set(train.labels))},
        "epochs": epochs,
        "seed": seed,
        "final_loss": float(history.history["loss"][-1]),
    }
    return LivenessModel(model, mean, scale, card)


def judged_live(model, windows: Windows, threshold: float = 0.5) -> np.ndarray:
    return model.probability_live(windows.features) >= threshold


def main(argv: list[str] | None = None) -> int:
    """Build the windows, train, and report held-out synthetic and real error rates."""
    import argparse

    from shared.face.detection import create_detector
    from shared.liveness.metrics import error_rates
    from shared.settings import get_settings

    parser = argparse.ArgumentParser(prog="python -m shared.liveness.training")
    parser.add_argument("--out", type=Path, required=True, help="where to write the model")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = get_settings().shared_data
    detector = create_detector("mtcnn", min_face_px=40)
    train = training_windows(data, detector, args.seed)
    model = fit(train, args.seed)
    model.save(args.out)
    heldout = heldout_windows(data, detector, args.seed)
    rates = error_rates(heldout.labels, judged_live(model, heldout))
    print(f"trained on {model.card['windows']}; held-out synthetic {rates}")
    for name, label in (("live_person.mov", "live"), ("replay_attack_same_person.mp4", "screen")):
        windows = windows_of(read_video(data / "liveness" / name), label, detector)
        live = judged_live(model, windows)
        right = live if label == "live" else ~live
        verdict = "live" if label == "live" else "an attack"
        print(f"{name}: {right.mean():.1%} of {len(live)} windows judged {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
