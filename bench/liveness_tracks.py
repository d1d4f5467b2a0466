"""Liveness per track: every source's tracks through the service's cadence and the evidence policy.

    nice -n 10 .venv/bin/python -m bench.liveness_tracks [--hop 8] [--report FILE]

Per source (the real pair in ``liveness/``, each real recapture and live video in
``liveness-train/``, the Hamilton clip, the street crowd, the stills moved by hand): per-window
APCER/BPCER at the policy's threshold, and per track whether a name was ever released, whether
the track was ever called a spoof, and the stream time until it was named. The real replay is
also started at 10 offsets (the phone's face followed from there), which is how an attacker
retries. Which sources the model trained on is in its card; this bench does not train.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from shared.settings import get_settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hop", type=int, default=8)
    parser.add_argument("--report", type=Path, default=None)
    parser.add_argument("--weights", type=Path, default=None)
    args = parser.parse_args()

    from shared.face.detection import create_detector
    from shared.liveness.model import load_model
    from training.liveness.evaluation import per_track_report

    settings = get_settings()
    if settings.face.tf_threads:
        from shared.face.encoder import configure_threads

        configure_threads(settings.face.tf_threads, 1)
    data = settings.shared_data
    model = load_model(args.weights or settings.liveness.weights)
    policy = settings.liveness.policy("bench")
    detector = create_detector("mtcnn", min_face_px=settings.face.min_face_px)
    started = time.monotonic()
    report = per_track_report(model, policy, data, detector, args.hop)
    report["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(report["tracks"]), flush=True)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
