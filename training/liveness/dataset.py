"""Face tracks of every liveness source, with their pixels, detected once and cached.

The pixel model (``pixels.py``) learns from what the detector sends per face: the aligned chip
(colour) and the context crop (grey), beside the landmarks and box the motion features use. MTCNN
over every source is the slow part (minutes on two cores), so each source's tracks are detected
once and cached under ``~/.cache/facestream/liveness-tracks/`` (a cache of derived data, never
committed; rebuilt when missing).

Every source has one split, and everything made from a source stays in its split (a synthetic
replay of a live video belongs where that video does), so no person or recording is on both
sides. ``liveness/`` (the real evaluation pair and the stills) is never a training source.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from shared.face.alignment import align_face
from shared.liveness.context import context_crop
from shared.liveness.features import track_features
from shared.liveness.pixels import chip_centre
from shared.liveness.recapture import frame_cues
from training.liveness import attacks, training
from training.liveness.metrics import LIVE

CACHE = Path.home() / ".cache" / "facestream" / "liveness-tracks-3"
"""Derived data, never committed; it holds face chips (biometric data), so it stays on this
machine (``-3``: tracks with the recapture cues of issue 19, ``moire`` among them)."""
MIN_TRACK = 16


def small_chip(frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The chip the pixel model sees for a face of a BGR frame with these landmarks."""
    return chip_centre(align_face(frame, landmarks))


@dataclass
class Track:
    """One face's track through a clip: what the detector would send for it, frame by frame."""

    source: str
    label: str
    landmarks: np.ndarray
    """(T, 5, 2)"""
    boxes: np.ndarray
    """(T, 4)"""
    contexts: np.ndarray
    """(T, 96, 96) uint8 grey"""
    chips: np.ndarray
    """(T, CHIP, CHIP, 3) uint8 RGB"""
    cues: np.ndarray | None = None
    """(T, len(recapture.CUES)) float32: the recapture cues from the full frame"""

    def from_frame(self, start: int) -> Track:
        """The same track from its frame ``start`` on (a track first seen later)."""
        return Track(
            self.source,
            self.label,
            self.landmarks[start:],
            self.boxes[start:],
            self.contexts[start:],
            self.chips[start:],
            None if self.cues is None else self.cues[start:],
        )

    def motion(self) -> np.ndarray:
        """(T, FEATURES): the sequence model's per-frame features."""
        return track_features(list(self.landmarks), list(self.boxes), list(self.contexts))

    def __len__(self) -> int:
        return len(self.boxes)


def _faces(frame, detector):
    return [
        d
        for d in detector.detect(frame)
        if d.landmarks is not None and min(d.box[2], d.box[3]) >= 40
    ]


def detect_tracks(
    frames: Sequence[np.ndarray], detector, source: str, label: str, mode: str
) -> list[Track]:
    """``mode`` ``every``: every face's track (the tracker's ids); ``largest``/``smallest``: the
    medium's face in each frame that has one."""
    from services.detector.tracker import FaceTracker, TrackIds

    tracker = FaceTracker(TrackIds())
    rows: dict[int, list] = {}
    for index, frame in enumerate(frames):
        faces = _faces(frame, detector)
        if mode == "every":
            ids = tracker.update([d.box for d in faces], index / training.PIPELINE_FPS)
            chosen = list(zip(faces, ids, strict=True))
        elif faces:
            pick = min if mode == "smallest" else max
            chosen = [(pick(faces, key=lambda d: d.box[2] * d.box[3]), 0)]
        else:
            chosen = []
        for face, track_id in chosen:
            landmarks = np.asarray(face.landmarks, np.float32)
            rows.setdefault(track_id, []).append(
                (
                    landmarks,
                    np.asarray(face.box, np.float32),
                    context_crop(frame, face.box),
                    small_chip(frame, landmarks),
                    frame_cues(frame, face.box),
                )
            )
    return [
        Track(source, label, *(np.stack(column) for column in zip(*row, strict=True)))
        for row in rows.values()
        if len(row) >= MIN_TRACK
    ]


def save_tracks(tracks: list[Track], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {
        "labels": np.array([t.label for t in tracks] or [""]),
        "count": len(tracks),
    }
    for i, t in enumerate(tracks):
        for name in ("landmarks", "boxes", "contexts", "chips", "cues"):
            arrays[f"{i}/{name}"] = getattr(t, name)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    path.write_bytes(buffer.getvalue())


def load_tracks(path: Path, source: str) -> list[Track]:
    with np.load(path, allow_pickle=False) as archive:
        count = int(archive["count"])
        labels = archive["labels"].tolist()
        return [
            Track(
                source,
                labels[i],
                archive[f"{i}/landmarks"],
                archive[f"{i}/boxes"],
                archive[f"{i}/contexts"],
                archive[f"{i}/chips"],
                archive[f"{i}/cues"],
            )
            for i in range(count)
        ]


@dataclass(frozen=True)
class Source:
    name: str
    split: str
    """train, dev or test; ``eval`` for the real evaluation pair (never trained on)."""
    make: Callable[[Path, object], list[Track]]


def _shrink(frames: list[np.ndarray], max_width: int | None) -> list[np.ndarray]:
    """Frames wider than ``max_width`` scaled down (MTCNN's time grows with the pixels)."""
    if max_width is None or frames[0].shape[1] <= max_width:
        return frames
    scale = max_width / frames[0].shape[1]
    return [cv2.resize(f, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) for f in frames]


def _video_tracks(
    relative: str, label: str, mode: str, part: slice | None = None, max_width: int | None = 960
):
    """One clip of the video at the pipeline's rate (its first phase: the second of a 30 fps
    video is nearly the same clip and would double the detector's time)."""

    def make(data: Path, detector) -> list[Track]:
        path = data / relative
        frames = training.read_video(path)
        frames = frames[part] if part is not None else frames
        clip = _shrink(training.at_pipeline_rate(path, frames)[0], max_width)
        return detect_tracks(clip, detector, relative, label, mode)

    return make


def _replays(relative: str, kind: str, seed: int, part: slice | None = None, clips: int = 4):
    """A live video's clips replayed as attacks: ``fullview`` (a screen filling the view) or
    ``phone`` (a phone with its bezel in front of a scene, a selfie-style crop)."""

    def make(data: Path, detector) -> list[Track]:
        rng = np.random.default_rng(seed)
        path = data / relative
        frames = training.read_video(path)
        frames = frames[part] if part is not None else frames
        phase = _shrink(training.at_pipeline_rate(path, frames)[0], 640)
        starts = np.linspace(0, max(0, len(phase) - 32), clips).astype(int)
        tracks = []
        for start in starts:
            clip = phase[start : start + 32]
            if kind == "fullview":
                shown = attacks.fullview_replay(clip, rng)
            else:
                faces = _faces(clip[0], detector)
                if not faces:
                    continue
                size = (clip[0].shape[1], clip[0].shape[0])
                region = attacks.selfie_region(
                    max(faces, key=lambda d: d.box[2] * d.box[3]).box, size, rng
                )
                scene = training.backgrounds(data, len(clip), rng)
                shown = attacks.screen_replay(clip, scene, rng, region=region)
            tracks += detect_tracks(
                shown, detector, f"{relative}:{kind}", attacks.SCREEN, "largest"
            )
        return tracks

    return make


def _prints(group: str, first: int, count: int, seed: int, textured: bool):
    def make(data: Path, detector) -> list[Track]:
        rng = np.random.default_rng(seed)
        tracks = []
        for photo in training.lfw_people(data, group, first + count, 0)[first:]:
            image = training._photo(photo)
            scene = training.backgrounds(data, 32, rng)
            frames = (
                attacks.textured_print_attack(image, scene, rng)
                if textured
                else attacks.print_attack(image, scene, rng)
            )
            tracks += detect_tracks(frames, detector, f"lfw-{group}", attacks.PRINT, "largest")
        return tracks

    return make


def _photo_screens(group: str, first: int, count: int, seed: int):
    def make(data: Path, detector) -> list[Track]:
        rng = np.random.default_rng(seed)
        tracks = []
        for photo in training.lfw_people(data, group, first + count, 0)[first:]:
            scene = training.backgrounds(data, 32, rng)
            frames = attacks.screen_replay([training._photo(photo)], scene, rng)
            tracks += detect_tracks(frames, detector, f"lfw-{group}", attacks.SCREEN, "largest")
        return tracks

    return make


CROWD = "video/street_crowd_1080p.mp4"
FIRST_HALF, SECOND_HALF = slice(0, 52), slice(52, None)
LT = "liveness-train/"

SOURCES: list[Source] = [
    # live, real
    Source("hamilton", "train", _video_tracks("video/hamilton_clip_640x360.mp4", LIVE, "every")),
    Source("live_person2", "train", _video_tracks(LT + "live_person2.mp4", LIVE, "every")),
    Source("live_apfol", "train", _video_tracks(LT + "live_apfol.webm", LIVE, "every")),
    Source("live_sivakumar", "train", _video_tracks(LT + "live_sivakumar1982.mp4", LIVE, "every")),
    Source("live_wolfhuo", "train", _video_tracks(LT + "live_wolfhuo.mp4", LIVE, "every")),
    Source("live_krzysiek", "dev", _video_tracks(LT + "live_krzysiek354.webm", LIVE, "every")),
    Source("crowd_a", "dev", _video_tracks(CROWD, LIVE, "every", FIRST_HALF, None)),
    Source("crowd_b", "test", _video_tracks(CROWD, LIVE, "every", SECOND_HALF, None)),
    # attacks, real recaptures (SOURCES.md)
    Source(
        "replay_person2",
        "train",
        _video_tracks(LT + "replay_attack_person2.mp4", "screen", "largest"),
    ),
    Source(
        "monitor_wolfhuo",
        "train",
        _video_tracks(LT + "monitor_replay_wolfhuo.mp4", "screen", "largest"),
    ),
    Source(
        "phone_apfol", "train", _video_tracks(LT + "phone_replay_apfol.webm", "screen", "largest")
    ),
    Source(
        "monitor_ashish",
        "dev",
        _video_tracks(LT + "monitor_replay_ashishbhatnagar022.mp4", "screen", "largest"),
    ),
    Source(
        "phone_nurcan",
        "test",
        _video_tracks(LT + "phone_replay_nurcanyardimci.mp4", "screen", "largest"),
    ),
    # attacks, synthetic, each in the split of the source it was made from
    Source(
        "fullview_hamilton", "train", _replays("video/hamilton_clip_640x360.mp4", "fullview", 11)
    ),
    Source("fullview_sivakumar", "train", _replays(LT + "live_sivakumar1982.mp4", "fullview", 12)),
    Source("fullview_apfol", "train", _replays(LT + "live_apfol.webm", "fullview", 13)),
    Source("phone_hamilton", "train", _replays("video/hamilton_clip_640x360.mp4", "phone", 14)),
    Source("phone_sivakumar", "train", _replays(LT + "live_sivakumar1982.mp4", "phone", 15)),
    Source("prints_a", "train", _prints("A", 0, 10, 16, textured=False)),
    Source("textured_prints_a", "train", _prints("A", 16, 10, 17, textured=True)),
    Source("screens_a", "train", _photo_screens("A", 32, 8, 18)),
    Source("fullview_krzysiek", "dev", _replays(LT + "live_krzysiek354.webm", "fullview", 21)),
    Source("prints_b_dev", "dev", _prints("B", 0, 6, 22, textured=True)),
    Source("screens_b_dev", "dev", _photo_screens("B", 8, 6, 23)),
    Source("prints_b_test", "test", _prints("B", 16, 6, 31, textured=True)),
    Source("screens_b_test", "test", _photo_screens("B", 24, 6, 32)),
    Source("fullview_crowd_b", "test", _replays(CROWD, "fullview", 33, SECOND_HALF, clips=2)),
    # the real evaluation pair: measured, never trained or calibrated on
    Source("eval_live_person", "eval", _video_tracks("liveness/live_person.mov", LIVE, "largest")),
    Source(
        "eval_replay",
        "eval",
        _video_tracks("liveness/replay_attack_same_person.mp4", "screen", "smallest"),
    ),
]


def _moving_stills(name: str, label: str, clips: int = 3, frames: int = 32):
    """A still as clips of a hand holding it (``evaluation.moving_still``), one seed per clip."""

    def make(data: Path, detector) -> list[Track]:
        from training.liveness.evaluation import moving_still

        image = cv2.imread(str(data / "liveness" / "stills" / name))
        rng = np.random.default_rng(40)
        tracks = []
        for _ in range(clips):
            clip = moving_still(image, rng, frames)
            tracks += detect_tracks(clip, detector, f"still {name}", label, "largest")
        return tracks

    return make


STILLS = [
    Source("still_live", "stills", _moving_stills("live.jpg", LIVE)),
    Source("still_print", "stills", _moving_stills("print_attack.jpg", attacks.PRINT)),
    Source("still_screen", "stills", _moving_stills("screen_replay_attack.jpg", attacks.SCREEN)),
]
"""The evaluation stills made into short clips: measured only, like ``eval``."""


def source_tracks(source: Source, data: Path, detector, cache: Path = CACHE) -> list[Track]:
    """The source's tracks, from the cache or detected now (and cached)."""
    path = cache / f"{source.name}.npz"
    if path.exists():
        return load_tracks(path, source.name)
    tracks = source.make(data, detector)
    for track in tracks:
        track.source = source.name
    save_tracks(tracks, path)
    return tracks
