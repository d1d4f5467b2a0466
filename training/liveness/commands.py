"""What ``facestream liveness ...`` runs: train and evaluate.

Both work on the project's data recipe (``training.py``: real live videos, real and synthesised
attacks) or on a user's own folders laid out the way public anti-spoofing sets are::

    FOLDER/live/*.mp4        bona fide videos
    FOLDER/print/*.mp4       one folder per attack type (print, screen, mask, ...)

Every clip is cut into windows of its main face's track; error rates are per window
(ISO/IEC 30107-3: APCER per attack type, BPCER, ACER).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np

from shared.face.detection import FaceDetector
from shared.liveness.model import WINDOW, LivenessModel
from training.liveness import training
from training.liveness.metrics import LIVE, ErrorRates, error_rates

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".mkv", ".webm"}
STILLS = {"live.jpg": LIVE, "print_attack.jpg": "print", "screen_replay_attack.jpg": "screen"}


def folder_windows(root: Path, detector: FaceDetector) -> training.Windows:
    """Windows of every video under ``root/LABEL/``, at the pipeline's rate; the folder names
    the label. Every face of a live video is live; an attack video's track is its largest face."""
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    videos = [
        (v, f.name)
        for f in folders
        for v in sorted(f.iterdir())
        if v.suffix.lower() in VIDEO_SUFFIXES
    ]
    if not any(label == LIVE for _, label in videos) or all(label == LIVE for _, label in videos):
        raise ValueError(f"{root} needs a live/ folder and at least one attack folder of videos")
    total = training.Windows.empty()
    for video, label in videos:
        frames = training.read_video(video)
        total = total + (
            training.live_windows(video, frames, detector)
            if label == LIVE
            else training.attack_windows(video, frames, label, detector)
        )
    return total


def train(
    shared_data: Path,
    out: Path,
    seed: int,
    folders: Path | None,
    dev_folders: Path | None,
    detector,
) -> LivenessModel:
    """Train on ``folders`` or on the project's recipe, calibrate, save weights and card to ``out``.

    Calibration uses held-out windows: the recipe's ``dev`` part, or ``dev_folders`` (same
    layout as ``folders``; without it the training windows themselves, which is overconfident).
    """
    started = time.monotonic()
    if folders:
        windows = folder_windows(folders, detector)
        dev = folder_windows(dev_folders, detector) if dev_folders else windows
    else:
        windows = training.training_windows(shared_data, detector, seed)
        dev = training.heldout_windows(shared_data, detector, "dev", seed)
    model = training.fit(windows, seed)
    training.calibrate(model, dev)
    model.card["data"] = (
        str(folders) if folders else "project recipe (training/liveness/training.py)"
    )
    model.card["train_seconds"] = round(time.monotonic() - started, 1)
    model.save(out)
    return model


def rates_text(rates: ErrorRates) -> str:
    apcer = ", ".join(f"APCER[{k}] {v:.1%}" for k, v in rates.apcer.items())
    return f"{apcer}, BPCER {rates.bpcer:.1%}, ACER {rates.acer:.1%} (windows: {rates.counts})"


def still_windows(shared_data: Path, detector) -> dict[str, tuple[str, np.ndarray | None]]:
    """Each still as a frozen 16-frame clip: texture and framing only, no motion to see."""
    found = {}
    for name, label in STILLS.items():
        image = cv2.imread(str(shared_data / "liveness" / "stills" / name))
        windows = training.clip_windows([image] * WINDOW, label, detector)
        found[name] = (label, windows.features[0] if windows.labels else None)
    return found


def evaluate(model: LivenessModel, shared_data: Path, folders: Path | None, detector) -> dict:
    """Error rates on held-out data; prints them and returns them for a report."""
    if folders:
        windows = folder_windows(folders, detector)
        rates = error_rates(windows.labels, training.judged_live(model, windows))
        print(f"{folders}: {rates_text(rates)}")
        return {"folders": str(folders), "rates": rates.__dict__}
    report: dict = {}
    heldout = training.heldout_windows(shared_data, detector, "test")
    rates = error_rates(heldout.labels, training.judged_live(model, heldout))
    print(f"held-out test windows: {rates_text(rates)}")
    report["heldout_test"] = rates.__dict__
    for name, windows in training.real_windows(shared_data, detector).items():
        live = training.judged_live(model, windows)
        attack = windows.labels[0] != LIVE
        right = float((~live if attack else live).mean())
        print(
            f"{name}: {right:.1%} of {len(live)} windows judged {'an attack' if attack else 'live'}"
        )
        report[name] = {"windows": len(live), "correct": right}
    for name, (label, window) in still_windows(shared_data, detector).items():
        score = None if window is None else float(model.probability_live(window[None])[0])
        verdict = "no face" if score is None else f"P(live) {score:.2f}"
        print(f"still {name} ({label}): {verdict}")
        report[f"still {name}"] = {"label": label, "p_live": score}
    return report


def save_report(report: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, default=float) + "\n")
