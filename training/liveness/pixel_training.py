"""Training and measuring the pixel liveness model on the cached tracks of every source.

    nice -n 10 .venv/bin/facestream liveness-model pixels extract   # MTCNN, cached
    nice -n 10 .venv/bin/facestream liveness-model pixels train [--out PATH]
    nice -n 10 .venv/bin/facestream liveness-model pixels loso     # leave one source out
    nice -n 10 .venv/bin/facestream liveness-model pixels evaluate [--report FILE]
    nice -n 10 .venv/bin/facestream liveness-model pixels motion [--report FILE]  # default model

Windows are cut every ``STRIDE`` frames of each track (16 frames of motion features, the chips
of 4 of them). Training uses the ``train`` sources; the ``dev`` sources calibrate (balanced
Platt scaling, as the issue-5 model); ``test`` and ``eval`` sources are only measured.

Over 400 lines for a reason: the windows, the augmentations, the fit, the calibration and
the per-source reports read one data layout (``PixelWindows``); apart, each would re-derive it.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training.liveness.metrics import LIVE, error_rates

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

STRIDE = 4
CLIP = 10.0
"""Log-odds beyond this count as this for calibration."""


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
    from training.liveness.dataset import SOURCES, source_tracks

    splits = {split} if isinstance(split, str) else split
    tracks = []
    for source in SOURCES:
        if source.split in splits:
            tracks += source_tracks(source, data, detector)
    return tracks


def _low_res(chips: np.ndarray, rng: np.random.Generator, share: float) -> np.ndarray:
    """A ``share`` of the windows, of every class alike, as a small face's chips: scaled down to
    14-32 px and back up. A live face far from the camera is as blurry as a recapture; without
    this the network learns "blurry = attack" and rejects every small live face (the street
    crowd), and it must find the recapture in colour, tone, grid and glare instead."""
    import cv2

    out = chips.copy()
    side = chips.shape[-2]
    for i in np.flatnonzero(rng.random(len(chips)) < share):
        small = int(rng.integers(14, 33))
        for j in range(chips.shape[1]):
            tiny = cv2.resize(chips[i, j], (small, small), interpolation=cv2.INTER_AREA)
            out[i, j] = cv2.resize(tiny, (side, side), interpolation=cv2.INTER_LINEAR)
    return out


def _photometric(chips: np.ndarray, rng: np.random.Generator, share: float) -> np.ndarray:
    """A ``share`` of the windows, of every class alike, under another tone curve and, for a
    third of them, with a specular highlight (glasses, a shiny forehead). The synthetic attacks
    get gamma and glare from ``attacks.py``; live faces must get them too, or the network learns
    "glare or odd gamma = attack", a property of the synthesis, not of a recapture."""
    out = chips.astype(np.float32)
    side = chips.shape[-2]
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    for i in np.flatnonzero(rng.random(len(chips)) < share):
        out[i] = 255.0 * (out[i] / 255.0) ** rng.uniform(0.7, 1.4)
        if rng.random() < 0.35:
            cx, cy = rng.uniform(8, side - 8, 2)
            radius = rng.uniform(2, 7)
            spot = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * radius**2))
            out[i] += rng.uniform(60, 160) * spot[None, :, :, None]
    return np.clip(out, 0, 255).astype(np.uint8)


def fit(
    train: PixelWindows,
    seed: int = 0,
    epochs: int = 25,
    low_res: float = 0.0,
    photometric: float = 0.0,
    **options,
):
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
    model = build_pixel_model(**options)
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
        if low_res:
            chips = _low_res(chips, rng, low_res)
        if photometric:
            chips = _photometric(chips, rng, photometric)
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
        "options": options,
        "low_res_share": low_res,
        "photometric_share": photometric,
        "final_loss": losses[-1],
    }
    return PixelLivenessModel(model, mean, scale, card)


def calibrate(model, dev: PixelWindows) -> None:
    from training.calibration import fit_logistic

    # clipped: windows the network is sure of (a print at -60) would set the slope alone
    logits = np.clip(model.logits(dev.motion, dev.chips), -CLIP, CLIP)
    model.calibration = fit_logistic(logits, dev.live, balanced=True)
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


def _rates(labels, p, threshold) -> dict:
    live = np.array([label == LIVE for label in labels])
    if not live.any() or live.all():
        judged = p >= threshold
        return {"correct": float((judged == live).mean()), "windows": len(p)}
    rates = error_rates(labels, (p >= threshold).tolist())
    return {"apcer": rates.apcer, "bpcer": rates.bpcer, "acer": rates.acer, "counts": rates.counts}


def _track_states(model, track, policy, start: int = 0):
    from shared.liveness.evidence import track_states

    if start:
        track = track.from_frame(start)
    windows = track_windows([track], hop_ends=True)
    if not windows.labels:
        return []
    return track_states(policy, model.probability_live(windows.motion, windows.chips).tolist())


def evaluate(model, data: Path, policy, detector=None, offsets: int = 10) -> dict:
    """Per window (APCER per attack type, BPCER, ACER) at P(live) = 0.5 and at the threshold
    that gives BPCER 5% on the dev live windows; per track under the evidence policy (ever
    named, ever spoof), and the real replay started at ``offsets`` points."""
    from training.liveness.dataset import SOURCES, STILLS, source_tracks

    dev = track_windows(load_split("dev", data, detector))
    p_dev = model.probability_live(dev.motion, dev.chips)
    at_bpcer5 = float(np.quantile(p_dev[dev.live], 0.05))
    report: dict = {"threshold_bpcer5_on_dev": at_bpcer5}
    print(f"threshold giving BPCER 5% on the dev live windows: P(live) {at_bpcer5:.3f}")
    parts = {
        "synthetic+real test": [s for s in SOURCES if s.split == "test"],
        "real pair (liveness/)": [s for s in SOURCES if s.split == "eval"],
        "stills moved by hand": STILLS,
        "hamilton (trained on) + crowd": [
            s for s in SOURCES if s.name in ("hamilton", "crowd_a", "crowd_b")
        ],
    }
    for part, sources in parts.items():
        tracks = [t for s in sources for t in source_tracks(s, data, detector)]
        windows = track_windows(tracks)
        p = model.probability_live(windows.motion, windows.chips)
        entry: dict[str, Any] = {
            "at_0.5": _rates(windows.labels, p, 0.5),
            "at_bpcer5_dev": _rates(windows.labels, p, at_bpcer5),
            "per_source_correct_at_0.5": {
                name: float(
                    np.mean(
                        [
                            (pi >= 0.5) == (label == LIVE)
                            for pi, src, label in zip(
                                p, windows.sources, windows.labels, strict=True
                            )
                            if src == name
                        ]
                    )
                )
                for name in sorted(set(windows.sources))
            },
        }
        states = [(t.source, t.label, _track_states(model, t, policy)) for t in tracks]
        entry["tracks"] = [
            {
                "source": src,
                "label": label,
                "windows": len(st),
                "ever_named": "live" in st,
                "ever_spoof": "attack" in st,
                "final": st[-1] if st else None,
            }
            for src, label, st in states
        ]
        report[part] = entry
        print(part, json.dumps({k: v for k, v in entry.items() if k != "tracks"}, default=float))
        for t in entry["tracks"]:
            print("   track", json.dumps(t))
    replay = [t for t in source_tracks(SOURCES[-1], data, detector)]
    retries = []
    for track in replay:
        for k in range(offsets):
            states = _track_states(model, track, policy, k * len(track) // (offsets + 2))
            retries.append(
                {
                    "offset": k,
                    "ever_named": "live" in states,
                    "final": states[-1] if states else None,
                }
            )
    report["replay at offsets"] = retries
    print("replay at offsets:", json.dumps(retries))
    return report


def motion_report(data: Path, policy, detector=None, offsets: int = 10) -> dict:
    """The default (motion-only) model under the evidence policy on every cached source: per
    window (stride 4) the share judged right at P(live) >= 0.5, per track (service cadence)
    how many were ever named and ever spoof, and the real replay started at ``offsets``."""
    from shared.liveness.features import track_features
    from shared.liveness.model import WINDOW, load_model
    from training.liveness.dataset import SOURCES, STILLS, source_tracks
    from training.liveness.evaluation import track_outcome

    model = load_model()
    report: dict = {}
    for source in SOURCES + STILLS:
        tracks = source_tracks(source, data, detector)
        if not tracks:
            continue
        outcomes = [track_outcome(model, policy, t.motion(), t.label, 8) for t in tracks]
        windows = [
            t.motion()[i : i + WINDOW] for t in tracks for i in range(0, len(t) - WINDOW + 1, 4)
        ]
        p = model.probability_live(np.stack(windows))
        entry = {
            "split": source.split,
            "label": tracks[0].label,
            "tracks": len(outcomes),
            "windows": len(p),
            "window_correct": float(((p >= 0.5) == (tracks[0].label == LIVE)).mean()),
            "ever_named": sum(o.ever_live for o in outcomes),
            "ever_spoof": sum(o.spoofed for o in outcomes),
        }
        if source.name == "eval_replay":
            track, retries = tracks[0], []
            for k in range(offsets):
                start = k * len(track) // (offsets + 2)
                features = track_features(
                    list(track.landmarks[start:]),
                    list(track.boxes[start:]),
                    list(track.contexts[start:]),
                )
                outcome = track_outcome(model, policy, features, track.label, 8)
                retries.append(
                    {"start": start, "ever_named": outcome.ever_live, "final": outcome.final}
                )
            entry["offsets"] = retries
        report[source.name] = entry
        print(source.name, json.dumps(entry), flush=True)
    return report


def run(action: str, args: Any, settings: Any) -> None:
    """``facestream liveness-model pixels ACTION``: extract the tracks, train, leave one source
    out, evaluate or report the motion model on the same tracks (docs/liveness.md)."""
    if settings.face.tf_threads:
        from shared.face.encoder import configure_threads

        configure_threads(settings.face.tf_threads, 1)
    data = settings.shared_data
    if action == "extract":
        extract(data, settings.face.min_face_px)
    elif action == "motion":
        _write(motion_report(data, settings.liveness.policy("evaluate")), args.report)
    elif action == "evaluate":
        from shared.face.detection import create_detector
        from shared.liveness.pixels import PIXEL_WEIGHTS, load_pixel_model

        model = load_pixel_model(args.model or PIXEL_WEIGHTS)
        detector = create_detector("mtcnn", min_face_px=settings.face.min_face_px)
        report = evaluate(model, data, settings.liveness.policy("evaluate"), detector)
        _write(report, args.report)
    elif action == "train":
        train_and_save(data, args.out, args.seed, args.epochs, args.low_res, args.photometric)
    else:
        leave_one_source_out(data, args.seed, args.epochs, args.low_res, args.photometric)


def _write(report: dict, path: Path | None) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1, default=float) + "\n")


def extract(data: Path, min_face_px: int) -> None:
    """Detect and cache every source's tracks (MTCNN: the slow part, done once)."""
    from shared.face.detection import create_detector
    from training.liveness.dataset import SOURCES, STILLS, source_tracks

    started = time.monotonic()
    detector = create_detector("mtcnn", min_face_px=min_face_px)
    for source in SOURCES + STILLS:
        tracks = source_tracks(source, data, detector)
        frames = sum(len(t) for t in tracks)
        print(
            f"{source.name} ({source.split}): {len(tracks)} tracks, {frames} frames, "
            f"{time.monotonic() - started:.0f} s",
            flush=True,
        )


def train_and_save(
    data: Path, out: Path | None, seed: int, epochs: int, low_res: float, photometric: float
) -> None:
    """Fit on the train sources, calibrate on dev, print dev's figures, save to ``out``."""
    started = time.monotonic()
    train = track_windows(load_split("train", data))
    dev = track_windows(load_split("dev", data))
    model = fit(train, seed, epochs, low_res=low_res, photometric=photometric)
    calibrate(model, dev)
    model.card["command"] = (
        "nice -n 10 facestream liveness-model pixels train "
        f"--epochs {epochs} --low-res {low_res} --photometric {photometric} --seed {seed}"
    )
    model.card["train_seconds"] = round(time.monotonic() - started, 1)
    report = {"dev": per_source(model, dev)}  # test and eval: measured once, by evaluate
    model.card["dev"] = report["dev"]
    print(json.dumps(report, indent=1, default=float))
    if out:
        model.save(out)


def leave_one_source_out(
    data: Path, seed: int, epochs: int, low_res: float, photometric: float
) -> None:
    """Each real attack source left out: trained without it, calibrated on dev, measured on it."""
    train = track_windows(load_split("train", data))
    dev = track_windows(load_split("dev", data))
    real_attacks = ["replay_person2", "monitor_wolfhuo", "phone_apfol"]
    everything = track_windows(load_split({"train", "dev", "test"}, data))
    for left_out in real_attacks:
        kept = train.subset(np.array(train.sources) != left_out)
        model = fit(kept, seed, epochs, low_res=low_res, photometric=photometric)
        calibrate(model, dev)
        held = everything.subset(np.array(everything.sources) == left_out)
        p = model.probability_live(held.motion, held.chips)
        print(
            f"left out {left_out}: {float((p < 0.5).mean()):.1%} of {len(p)} windows judged "
            f"an attack",
            flush=True,
        )
