"""Training and measuring the pixel liveness model on the cached tracks of every source.

    nice -n 10 .venv/bin/python -m shared.liveness.pixel_training extract   # MTCNN, cached
    nice -n 10 .venv/bin/python -m shared.liveness.pixel_training train [--out PATH]
    nice -n 10 .venv/bin/python -m shared.liveness.pixel_training loso     # leave one source out

Windows are cut every ``STRIDE`` frames of each track (16 frames of motion features, the chips
of 4 of them). Training uses the ``train`` sources; the ``dev`` sources calibrate (balanced
Platt scaling, as the issue-5 model); ``test`` and ``eval`` sources are only measured.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.liveness.metrics import LIVE, error_rates

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

STRIDE = 4


@dataclass
class PixelWindows:
    motion: np.ndarray
    chips: np.ndarray
    labels: list[str]
    sources: list[str]

    def subset(self, keep: np.ndarray) -> PixelWindows:
        idx = np.flatnonzero(keep)
        return PixelWindows(
            self.motion[idx],
            self.chips[idx],
            [self.labels[i] for i in idx],
            [self.sources[i] for i in idx],
        )

    @property
    def live(self) -> np.ndarray:
        return np.array([label == LIVE for label in self.labels])


def track_windows(tracks, stride: int = STRIDE, hop_ends: bool = False) -> PixelWindows:
    """Windows of every track; ``hop_ends``: the windows the service judges (ends every 8)."""
    from shared.liveness.model import WINDOW
    from shared.liveness.pixels import PIXEL_FRAMES

    motion, chips, labels, sources = [], [], [], []
    for track in tracks:
        features = track.motion()
        starts = range(0, len(track) - WINDOW + 1, 8 if hop_ends else stride)
        for s in starts:
            motion.append(features[s : s + WINDOW])
            chips.append(track.chips[[s + f for f in PIXEL_FRAMES]])
            labels.append(track.label)
            sources.append(track.source)
    if not motion:
        return PixelWindows(np.empty((0, WINDOW, 4), np.float32), np.empty((0,)), [], [])
    return PixelWindows(np.stack(motion), np.stack(chips), labels, sources)


def load_split(split: str | set[str], data: Path, detector=None) -> list:
    from shared.liveness.dataset import SOURCES, source_tracks

    splits = {split} if isinstance(split, str) else split
    tracks = []
    for source in SOURCES:
        if source.split in splits:
            tracks += source_tracks(source, data, detector)
    return tracks


def fit(train: PixelWindows, seed: int = 0, epochs: int = 25):
    import tensorflow as tf

    from shared.liveness.pixels import PixelLivenessModel, build_pixel_model

    tf.keras.utils.set_random_seed(seed)
    x = train.motion.astype(np.float32)
    mean = x.reshape(-1, x.shape[-1]).mean(axis=0)
    scale = x.reshape(-1, x.shape[-1]).std(axis=0) + 1e-6
    y = train.live.astype(np.float32)
    # every source weighs the same within its class: a long video must not drown a short one
    weights = np.ones(len(y), np.float32)
    for cls in (True, False):
        in_class = train.live == cls
        names = sorted({s for s, c in zip(train.sources, in_class, strict=True) if c})
        for name in names:
            member = in_class & (np.array(train.sources) == name)
            weights[member] = 1.0 / (member.sum() * len(names))
    weights *= len(y) / weights.sum()
    model = build_pixel_model()
    model.compile(
        optimizer=tf.keras.optimizers.Adam(1e-3),
        loss=tf.keras.losses.BinaryCrossentropy(from_logits=True),
    )
    rng = np.random.default_rng(seed)
    losses = []
    for _epoch in range(epochs):
        chips = train.chips.copy()
        flip = rng.random(len(chips)) < 0.5  # a mirrored face is as live as the face
        chips[flip] = chips[flip][:, :, :, ::-1]
        history = model.fit(
            [(x - mean) / scale, chips],
            y,
            sample_weight=weights,
            epochs=1,
            batch_size=32,
            shuffle=True,
            verbose=0,
        )
        losses.append(float(history.history["loss"][-1]))
    card = {
        "windows": {label: train.labels.count(label) for label in sorted(set(train.labels))},
        "sources": sorted(set(train.sources)),
        "epochs": epochs,
        "seed": seed,
        "final_loss": losses[-1],
    }
    return PixelLivenessModel(model, mean, scale, card)


def calibrate(model, dev: PixelWindows) -> None:
    from shared.face.verification import fit_logistic

    model.calibration = fit_logistic(model.logits(dev.motion, dev.chips), dev.live, balanced=True)
    model.card["calibration"] = {
        "sources": sorted(set(dev.sources)),
        "a": model.calibration[0],
        "b": model.calibration[1],
    }


def per_source(model, windows: PixelWindows, threshold: float = 0.5) -> dict:
    p = model.probability_live(windows.motion, windows.chips)
    report = {}
    for name in sorted(set(windows.sources)):
        member = np.array(windows.sources) == name
        label = windows.labels[int(np.flatnonzero(member)[0])]
        judged_live = p[member] >= threshold
        correct = judged_live if label == LIVE else ~judged_live
        report[name] = {
            "label": label,
            "windows": int(member.sum()),
            "correct": float(correct.mean()),
        }
    if windows.live.any() and (~windows.live).any():
        rates = error_rates(windows.labels, (p >= threshold).tolist())
        report["_rates"] = rates.__dict__
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["extract", "train", "loso"])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from shared.settings import get_settings

    settings = get_settings()
    if settings.face.tf_threads:
        from shared.face.encoder import configure_threads

        configure_threads(settings.face.tf_threads, 1)
    data = settings.shared_data
    started = time.monotonic()
    if args.action == "extract":
        from shared.face.detection import create_detector
        from shared.liveness.dataset import SOURCES, source_tracks

        detector = create_detector("mtcnn", min_face_px=settings.face.min_face_px)
        for source in SOURCES:
            tracks = source_tracks(source, data, detector)
            frames = sum(len(t) for t in tracks)
            print(
                f"{source.name} ({source.split}): {len(tracks)} tracks, {frames} frames, "
                f"{time.monotonic() - started:.0f} s",
                flush=True,
            )
        return
    train = track_windows(load_split("train", data))
    dev = track_windows(load_split("dev", data))
    test = track_windows(load_split({"test", "eval"}, data), hop_ends=True)
    if args.action == "train":
        model = fit(train, args.seed, args.epochs)
        calibrate(model, dev)
        model.card["train_seconds"] = round(time.monotonic() - started, 1)
        report = {"dev": per_source(model, dev), "test": per_source(model, test)}
        model.card["measured"] = report
        print(json.dumps(report, indent=1, default=float))
        if args.out:
            model.save(args.out)
        return
    # leave one real attack source out: trained without it, calibrated on dev, measured on it
    real_attacks = ["replay_person2", "monitor_wolfhuo", "phone_apfol"]
    everything = track_windows(load_split({"train", "dev", "test"}, data))
    for left_out in real_attacks:
        kept = train.subset(np.array(train.sources) != left_out)
        model = fit(kept, args.seed, args.epochs)
        calibrate(model, dev)
        held = everything.subset(np.array(everything.sources) == left_out)
        p = model.probability_live(held.motion, held.chips)
        print(
            f"left out {left_out}: {float((p < 0.5).mean()):.1%} of {len(p)} windows judged "
            f"an attack",
            flush=True,
        )


if __name__ == "__main__":
    main()
