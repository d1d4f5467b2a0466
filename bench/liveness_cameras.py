"""Do the recapture model's camera-dependent cues hold on cameras it never saw?

    nice -n 10 .venv/bin/python -m bench.liveness_cameras [--faces 1500] [--json FILE]

The committed recapture model reads two cues that depend on the camera as well as on the
medium in front of it: the moire peak (a sharp spectral peak of the face's native pixels) and
the face's chroma spread (how colourful the camera renders a face). Its live training data are
eight recordings, so both were set on eight cameras. LFW's photos come from thousands of news
cameras, and the people in them are live; a seeded sample of them (MTCNN's largest face per
photo, the detector service's cues) stands in for "a camera the model never saw":

- **moire** is a per-frame value with a per-frame noise (0.2 within a window), and the rule
  compares a 16-frame mean with its ceiling. So LFW's single faces are compared with the live
  training tracks' single frames: the share above the ceiling and the quantiles. The same
  distribution means no camera in the sample sits systematically higher than the training
  cameras; the faces far above it are listed, to be looked at.
- **chroma spread** is the camera's (and the face's) colour, hardly the person's motion. Each
  LFW face's value replaces the chroma spread of every live training track (their motion
  verdicts kept), and each track goes through the model and the evidence policy as in the
  service: the share of windows judged an attack and of tracks ending ``spoof``, against the
  same tracks with their own colour. That is the model's BPCER on other cameras' colour, with
  the training people's motion.

Needs the cached tracks (``facestream liveness-model pixels extract``, about 6 minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from bench.machine import shared_data_dir  # noqa: E402
from shared.liveness.recapture import CUES, frame_cues  # noqa: E402

MOIRE, CHROMA = CUES.index("moire"), CUES.index("chroma_spread")
QUANTILES = (0.5, 0.9, 0.99)


def lfw_cues(data: Path, faces: int, seed: int) -> tuple[np.ndarray, list[str]]:
    """(N, len(CUES)) cues of the largest face in ``faces`` seeded LFW photos, and their files."""
    from bench.detectors import lfw_sample
    from shared.face.detection import MtcnnDetector

    detector = MtcnnDetector()
    rows, names = [], []
    for path in lfw_sample(data, faces, seed):
        image = cv2.imread(str(path))
        found = detector.detect(image) if image is not None else []
        if found:
            rows.append(frame_cues(image, max(found, key=lambda d: d.area).box))
            names.append(path.name)
    return np.array(rows), names


def quantiles(values: np.ndarray) -> dict[str, float]:
    return {str(q): round(float(np.quantile(values, q)), 3) for q in QUANTILES}


def moire_report(lfw: np.ndarray, names: list[str], live_frames: np.ndarray, ceiling: float):
    def summary(values: np.ndarray) -> dict:
        return {
            "faces": len(values),
            "above_ceiling": float((values > ceiling).mean()),
            "quantiles": quantiles(values),
        }

    order = np.argsort(lfw[:, MOIRE])[::-1][:5]
    return {
        "ceiling": ceiling,
        "lfw": summary(lfw[:, MOIRE]),
        "live_training_frames": summary(live_frames),
        "lfw_highest": {names[i]: round(float(lfw[i, MOIRE]), 3) for i in order},
    }


def replay_tracks(model, policy, track_features: list[np.ndarray], chroma: float | None):
    """Windows judged an attack and tracks ending ``spoof``, with every window's chroma-spread
    mean set to ``chroma`` (None: the track's own)."""
    from shared.liveness.evidence import track_states

    attack_windows = windows = spoof = 0
    for features in track_features:
        if chroma is not None:
            features = features.copy()
            features[:, CHROMA] = chroma
        p_live = model.probability_live(features)
        attack_windows += int((p_live < policy.threshold).sum())
        windows += len(p_live)
        spoof += "attack" in track_states(policy, p_live.tolist())
    return attack_windows / windows, spoof / len(track_features)


def chroma_report(model, policy, track_features: list[np.ndarray], lfw: np.ndarray) -> dict:
    own = replay_tracks(model, policy, track_features, None)
    per_face = np.array([replay_tracks(model, policy, track_features, c) for c in lfw[:, CHROMA]])
    return {
        "live_tracks": len(track_features),
        "own_colour": {"windows_judged_attack": own[0], "tracks_spoof": own[1]},
        "lfw_colours": {
            "windows_judged_attack": float(per_face[:, 0].mean()),
            "tracks_spoof": float(per_face[:, 1].mean()),
            "faces_whose_colour_spoofs_most_tracks": float((per_face[:, 1] > 0.5).mean()),
        },
        "lfw_chroma_spread_quantiles": quantiles(lfw[:, CHROMA]),
    }


def live_tracks(settings) -> list:
    from training.liveness.pixel_training import load_split

    tracks = load_split({"train", "dev", "test"}, settings.shared_data)
    return [t for t in tracks if t.label == "live"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=1500, help="LFW photos sampled")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    from shared.liveness.model import load_model
    from shared.liveness.recapture_model import load_recapture_model
    from shared.settings import get_settings
    from training.liveness.recapture_training import track_windows

    started = time.monotonic()
    settings = get_settings()
    motion_model, model = load_model(), load_recapture_model()
    tracks = live_tracks(settings)
    features = [track_windows([t], motion_model, hop_ends=True).features for t in tracks]
    features = [f for f in features if len(f)]
    lfw, names = lfw_cues(shared_data_dir(settings), args.faces, args.seed)
    live_frames = np.concatenate([t.cues[:, MOIRE] for t in tracks])
    report = {
        "model": str(model.card.get("command", "")),
        "moire": moire_report(lfw, names, live_frames, float(model.moire_ceiling or np.inf)),
        "chroma_spread": chroma_report(model, settings.liveness.policy("bench"), features, lfw),
        "seconds": round(time.monotonic() - started),
    }
    text = json.dumps(report, indent=1, default=float)
    print(text)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
