"""Liveness per track: every source's tracks through the service's cadence and the evidence policy.

    nice -n 10 .venv/bin/python -m bench.liveness_tracks [--hop 8] [--refine-every K] [--report FILE]

Per source (the real pair in ``liveness/``, each real recapture and live video in
``liveness-train/``, the Hamilton clip, the street crowd, the stills moved by hand): per-window
APCER/BPCER at the policy's threshold, and per track whether a name was ever released, whether
the track was ever called a spoof, and the stream time until it was named. The real replay is
also started at 10 offsets (the phone's face followed from there), which is how an attacker
retries. Which sources the model trained on is in its card; this bench does not train.

``--refine-every K``: the faces come as the detector service measures them between two full
detections: a full MTCNN detection on every K-th frame, and on the frames between, each face
carried by optical flow and measured again by MTCNN's last stage (``FaceDetector.refine``). It
shows whether the liveness model judges refined landmarks as it judges detected ones.
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

from services.detector.tracking import carry  # noqa: E402
from shared.settings import get_settings  # noqa: E402


class RefiningDetector:
    """A full detection every ``every`` frames; between them the last faces carried by flow and
    refined (a face the refinement loses is dropped; none left: a full detection at once)."""

    def __init__(self, detector, every: int) -> None:
        self.detector, self.every = detector, every
        self.faces: list = []
        self.grey: np.ndarray | None = None
        self.since = 0

    def detect(self, frame: np.ndarray) -> list:
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        faces: list = []
        same_clip = self.grey is not None and self.grey.shape == grey.shape
        if self.faces and same_clip and self.since < self.every - 1:
            boxes = [carry(self.grey, grey, f.box, f.landmarks).box for f in self.faces]
            faces = [f for f in self.detector.refine(frame, boxes) if f is not None]
            self.since += 1
        if not faces:
            faces, self.since = self.detector.detect(frame), 0
        self.faces, self.grey = [f for f in faces if f.landmarks is not None], grey
        return faces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hop", type=int, default=8)
    parser.add_argument("--report", type=Path, default=None)
    parser.add_argument("--weights", type=Path, default=None)
    parser.add_argument("--refine-every", type=int, default=1)
    args = parser.parse_args()

    from shared.face.detection import create_detector
    from shared.liveness.model import load_model
    from training.liveness.evaluation import per_track_report

    settings = get_settings()
    if settings.face.tf_threads:
        from shared.face.encoder import configure_threads

        configure_threads(settings.face.tf_threads, 1)
    data = settings.shared_data
    model = load_model(args.weights) if args.weights else load_model()
    policy = settings.liveness.policy("bench")
    detector = create_detector("mtcnn", min_face_px=settings.face.min_face_px)
    if args.refine_every > 1:
        detector = RefiningDetector(detector, args.refine_every)
    started = time.monotonic()
    report = per_track_report(model, policy, data, detector, args.hop)
    report["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(report["tracks"]), flush=True)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
