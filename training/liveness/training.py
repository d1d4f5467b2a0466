"""Liveness data and training: windows of per-frame features from real and synthetic clips.

Data (``../shared/data``; ``liveness/`` is never trained on, nor used to calibrate):

- train, live: every face's track in the Hamilton clip and in ``liveness-train/live_person2.mp4``;
- train, attacks: the real replay ``liveness-train/replay_attack_person2.mp4``, prints of LFW
  people (group A), Hamilton clips replayed on a phone zoomed on the face, other LFW people (A)
  shown on a phone, all synthesised (``attacks.py``) over street-crowd and content-photo scenes;
- held-out, in a ``dev`` part (calibration) and a ``test`` part (measurement): the street crowd's
  two halves as live, LFW people of group B printed and on a phone;
- real evaluation: ``liveness/live_person.mov``, the phone's face in
  ``liveness/replay_attack_same_person.mp4``, and the three stills.

Every clip is cut at the pipeline's frame rate; an attack clip's track is the medium's face (the
largest, or the smallest where the live person stands beside the phone).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from shared.face.detection import FaceDetector
from shared.liveness.context import context_crop
from shared.liveness.features import track_features
from shared.liveness.model import WINDOW
from training.liveness import attacks
from training.liveness.metrics import LIVE

STRIDE = 4
PIPELINE_FPS = 15.0
"""The rate the ingestor samples cameras at by default: windows are cut at it, since the motion
between two frames, and so every motion feature, depends on the frame rate."""


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


def read_video(path: Path, limit: int | None = None) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    while limit is None or len(frames) < limit:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    if not frames:
        raise FileNotFoundError(f"no frames read from {path}")
    return frames


def at_pipeline_rate(path: Path, frames: Sequence[np.ndarray]) -> list[list[np.ndarray]]:
    """The clip as the pipeline would sample it: one clip per phase of the subsampling.

    A 30 fps video becomes two 15 fps clips (even and odd frames): the same motion per frame
    as the pipeline sees, and no frame thrown away.
    """
    step = pipeline_step(path)
    return [list(frames[phase::step]) for phase in range(step)]


def pipeline_step(path: Path) -> int:
    """Every how many frames of the video the pipeline's rate keeps one (2 for 30 fps)."""
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or PIPELINE_FPS
    capture.release()
    return max(1, round(fps / PIPELINE_FPS))


@dataclass
class FaceTrack:
    """What the detector publishes for one face across consecutive frames of a clip."""

    landmarks: list[np.ndarray] = field(default_factory=list)
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    contexts: list[np.ndarray] = field(default_factory=list)

    def add(self, frame: np.ndarray, face) -> None:
        self.landmarks.append(np.asarray(face.landmarks))
        x, y, w, h = (float(v) for v in face.box)
        self.boxes.append((x, y, w, h))
        self.contexts.append(context_crop(frame, face.box))

    def features(self) -> np.ndarray:
        return track_features(self.landmarks, self.boxes, self.contexts)


def _area(detection) -> float:
    return detection.box[2] * detection.box[3]


def _usable_faces(frame: np.ndarray, detector: FaceDetector, min_face_px: int) -> list:
    return [
        d
        for d in detector.detect(frame)
        if d.landmarks is not None and min(d.box[2], d.box[3]) >= min_face_px
    ]


def every_track(
    frames: Sequence[np.ndarray], detector: FaceDetector, min_face_px: int = 40
) -> list[FaceTrack]:
    """Every face's track through the clip, as the detector service's tracker links them.

    For live videos: every face in them is live, the subject's and the bystanders' alike.
    """
    from services.detector.tracker import FaceTracker, TrackIds

    tracker = FaceTracker(TrackIds())
    tracks: dict[int, FaceTrack] = {}
    for index, frame in enumerate(frames):
        faces = _usable_faces(frame, detector, min_face_px)
        for face, track_id in zip(
            faces, tracker.update([d.box for d in faces], index / PIPELINE_FPS), strict=True
        ):
            tracks.setdefault(track_id, FaceTrack()).add(frame, face)
    return list(tracks.values())


def follow_face(
    frames: Sequence[np.ndarray],
    detector: FaceDetector,
    smallest: bool = False,
    min_face_px: int = 40,
) -> FaceTrack:
    """The largest (or smallest) face of each frame that has one: the subject of the clip.

    ``smallest`` picks the face on the medium in a clip that also shows the live person holding
    it (the first seconds of ``replay_attack_same_person.mp4``).
    """
    track = FaceTrack()
    for frame in frames:
        face = largest_face(frame, detector, min_face_px, smallest)
        if face is not None:
            track.add(frame, face)
    return track


def largest_face(
    frame: np.ndarray, detector: FaceDetector, min_face_px: int = 40, smallest: bool = False
):
    """The frame's largest (or smallest) face of at least ``min_face_px`` with landmarks, or None."""
    faces = _usable_faces(frame, detector, min_face_px)
    return (min if smallest else max)(faces, key=_area) if faces else None


def windows_of(track: FaceTrack, label: str, stride: int = STRIDE) -> Windows:
    """Every WINDOW-frame window (every ``stride`` frames) of a face track."""
    features = track.features()
    stacked = [features[s : s + WINDOW] for s in range(0, len(features) - WINDOW + 1, stride)]
    if not stacked:
        return Windows.empty()
    return Windows(np.stack(stacked), [label] * len(stacked))


def clip_windows(frames: Sequence[np.ndarray], label: str, detector: FaceDetector) -> Windows:
    return windows_of(follow_face(frames, detector), label)


def backgrounds(shared_data: Path, count: int, rng: np.random.Generator, size=(640, 360)):
    """Scenes to hold a medium in front of: street-crowd frames or a content photo."""
    if rng.random() < 0.5:
        crowd = read_video(shared_data / "video" / "street_crowd_1080p.mp4", limit=count)
        return [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in crowd]
    photos = [cv2.imread(str(p)) for p in sorted((shared_data / "style" / "content").glob("*.jpg"))]
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


def _photo(path: Path) -> np.ndarray:
    """An LFW photo at twice its size: the face as large as a print or a phone would show it."""
    return cv2.resize(cv2.imread(str(path)), None, fx=2.0, fy=2.0, interpolation=cv2.INTER_CUBIC)


def synthetic_prints(photos: Sequence[Path], shared_data: Path, detector, seed: int) -> Windows:
    rng = np.random.default_rng(seed)
    total = Windows.empty()
    for photo in photos:
        frames = attacks.print_attack(_photo(photo), backgrounds(shared_data, 24, rng), rng)
        total = total + clip_windows(frames, attacks.PRINT, detector)
    return total


def synthetic_replays(
    clips: Iterator[list[np.ndarray]], shared_data: Path, detector, seed: int
) -> Windows:
    """Each clip replayed on a phone, zoomed on its main face as a selfie video would be."""
    rng = np.random.default_rng(seed)
    total = Windows.empty()
    for clip in clips:
        faces = _usable_faces(clip[0], detector, 40)
        if not faces:
            continue
        size = (clip[0].shape[1], clip[0].shape[0])
        region = attacks.selfie_region(max(faces, key=_area).box, size, rng)
        frames = attacks.screen_replay(
            clip, backgrounds(shared_data, len(clip), rng), rng, region=region
        )
        total = total + clip_windows(frames, attacks.SCREEN, detector)
    return total


def synthetic_photo_screens(
    photos: Sequence[Path], shared_data: Path, detector, seed: int
) -> Windows:
    """Each photo shown on a phone held to the camera: a screen attack with a still face."""
    rng = np.random.default_rng(seed)
    total = Windows.empty()
    for photo in photos:
        frames = attacks.screen_replay([_photo(photo)], backgrounds(shared_data, 24, rng), rng)
        total = total + clip_windows(frames, attacks.SCREEN, detector)
    return total


def clips_of(frames: Sequence[np.ndarray], length: int = 24, step: int = 24):
    for start in range(0, len(frames) - length + 1, step):
        yield list(frames[start : start + length])


def video(shared_data: Path, name: str) -> tuple[Path, list[np.ndarray]]:
    path = shared_data / name
    return path, read_video(path)


def live_windows(path: Path, frames: Sequence[np.ndarray], detector: FaceDetector) -> Windows:
    """Windows of every face's track of a live video, at the pipeline's rate."""
    total = Windows.empty()
    for clip in at_pipeline_rate(path, frames):
        for track in every_track(clip, detector):
            total = total + windows_of(track, LIVE)
    return total


def attack_windows(path: Path, frames, label: str, detector: FaceDetector) -> Windows:
    """Windows of the medium's face (the largest) in a real attack video, at the pipeline's rate."""
    total = Windows.empty()
    for clip in at_pipeline_rate(path, frames):
        total = total + clip_windows(clip, label, detector)
    return total


def replay_clips(path: Path, frames: Sequence[np.ndarray]) -> Iterator[list[np.ndarray]]:
    """Overlapping 24-frame clips of a live video at the pipeline's rate, to be replayed."""
    for phase in at_pipeline_rate(path, frames):
        yield from clips_of(phase, 24, 12)


def training_windows(shared_data: Path, detector: FaceDetector, seed: int = 0) -> Windows:
    hamilton_path, hamilton = video(shared_data, "video/hamilton_clip_640x360.mp4")
    person2_path, person2 = video(shared_data, "liveness-train/live_person2.mp4")
    replay_path, replay = video(shared_data, "liveness-train/replay_attack_person2.mp4")
    live = live_windows(hamilton_path, hamilton, detector) + live_windows(
        person2_path, person2, detector
    )
    real_replay = attack_windows(replay_path, replay, attacks.SCREEN, detector)
    prints = synthetic_prints(lfw_people(shared_data, "A", 40, seed), shared_data, detector, seed)
    replays = synthetic_replays(
        replay_clips(hamilton_path, hamilton), shared_data, detector, seed + 1
    )
    screens = synthetic_photo_screens(
        lfw_people(shared_data, "A", 60, seed)[40:], shared_data, detector, seed + 4
    )
    return live + real_replay + prints + replays + screens


def heldout_windows(shared_data: Path, detector: FaceDetector, part: str, seed: int = 0) -> Windows:
    """Held-out windows, nothing of which was trained on, in two disjoint parts.

    ``dev`` calibrates the model's probabilities, ``test`` measures it. Live: the street crowd's
    first or second half; attacks: LFW people none of whom was trained on, printed and shown on a
    phone (the crowd's faces pass by too fast to make replays of).
    """
    if part not in ("dev", "test"):
        raise ValueError(f"part is dev or test, not {part!r}")
    crowd_path, crowd = video(shared_data, "video/street_crowd_1080p.mp4")
    half = len(crowd) // 2
    live = live_windows(crowd_path, crowd[:half] if part == "dev" else crowd[half:], detector)
    people = lfw_people(shared_data, "B", 40, seed)
    offset = 0 if part == "dev" else 10
    prints = synthetic_prints(people[offset : offset + 10], shared_data, detector, seed + 2)
    screens = synthetic_photo_screens(
        people[20 + offset : 30 + offset], shared_data, detector, seed + 3
    )
    return live + prints + screens


def fit(train: Windows, seed: int = 0, epochs: int = 80):
    """Train the model on ``train`` (live = 1), balancing the classes by weight."""
    import tensorflow as tf

    from shared.liveness.model import LivenessModel, build_model

    tf.keras.utils.set_random_seed(seed)
    x = train.features.astype(np.float32)
    y = np.array([label == LIVE for label in train.labels], np.float32)
    mean = x.reshape(-1, x.shape[-1]).mean(axis=0)
    scale = x.reshape(-1, x.shape[-1]).std(axis=0) + 1e-6
    model = build_model(x.shape[1])
    model.compile(
        optimizer=tf.keras.optimizers.Adam(1e-3),
        loss=tf.keras.losses.BinaryCrossentropy(from_logits=True),
    )
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


def calibrate(model, heldout: Windows) -> None:
    """Fit the model's (a, b) on held-out windows: balanced Platt scaling of its log-odds."""
    from training.calibration import fit_logistic

    live = np.array([label == LIVE for label in heldout.labels])
    model.calibration = fit_logistic(model.logits(heldout.features), live, balanced=True)
    model.card["calibration"] = {
        "windows": {label: heldout.labels.count(label) for label in sorted(set(heldout.labels))},
        "a": model.calibration[0],
        "b": model.calibration[1],
    }


def judged_live(model, windows: Windows, threshold: float = 0.5) -> np.ndarray:
    return model.probability_live(windows.features) >= threshold


def real_windows(shared_data: Path, detector: FaceDetector) -> dict[str, Windows]:
    """The real evaluation videos, per window; never trained on nor calibrated on.

    Both are 15 fps, the pipeline's rate. The replay's first seconds also show the live person
    beside the phone: the phone's face is the smaller one, and the one evaluated.
    """
    folder = shared_data / "liveness"
    live = follow_face(read_video(folder / "live_person.mov"), detector)
    replay = follow_face(
        read_video(folder / "replay_attack_same_person.mp4"), detector, smallest=True
    )
    return {
        "live_person.mov": windows_of(live, "live"),
        "replay_attack_same_person.mp4": windows_of(replay, attacks.SCREEN),
    }
