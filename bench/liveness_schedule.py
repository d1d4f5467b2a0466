"""Liveness verdicts through the detector service's schedule: refined young faces vs detected.

    nice -n 10 .venv/bin/python -m bench.liveness_schedule [--modes refine,detect]

``bench.liveness_tracks`` judges tracks of faces MTCNN detected on every frame, as the liveness
model was trained. The detector service measures a young track (its first ``settle_frames``)
either by a full detection on every frame (``detect``: ``refine_young=false``) or, between full
detections every ``detect_every`` frames, by MTCNN's last stage on the flow-carried box
(``refine``: the default). This runs every live and attack video of the liveness evaluation
(both phases of a 30 fps video at 15 fps) through the real detector, liveness and recognizer
workers in this process (bench.tracks' chain, lin_manuel_miranda enrolled, nobody in these
videos), once per mode, and counts per source: tracks started, tracks judged an attack
(``spoof`` events), tracks whose face was named, and the full detections run. A live track
called an attack is a false reject; an attack video's track without a ``spoof`` was let through.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench.tracks import CountingDetector, Pipeline, lin_enrolled  # noqa: E402
from shared.settings import Settings  # noqa: E402

MODES = {"refine": True, "detect": False}


def run_source(pipeline: Pipeline, path: Path) -> dict:
    """Events of every 15 fps phase of the video, each phase as its own camera."""
    from training.liveness import training

    frames = training.read_video(path)
    counts = {"started": 0, "spoof": 0, "identified": 0}
    for phase, clip in enumerate(training.at_pipeline_rate(path, frames)):
        run = pipeline.run(clip, f"{path.stem}-{phase}")
        for event in run.events:
            if event.type in counts:
                counts[event.type] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="refine,detect")
    args = parser.parse_args()
    from shared.face.detection import create_detector
    from training.liveness.evaluation import ATTACK_VIDEOS, LIVE_VIDEOS

    base = Settings()
    detector = CountingDetector(
        create_detector(base.face.detector, min_face_px=base.face.min_face_px)
    )
    with tempfile.TemporaryDirectory(prefix="bench-liveness-schedule-") as tmp:
        settings, identity = lin_enrolled(base, Path(tmp))
        for mode in args.modes.split(","):
            update = {"refine_young": MODES[mode]}
            chosen = settings.model_copy(
                update={"detector": settings.detector.model_copy(update=update)}
            )
            for label, sources in (("live", LIVE_VIDEOS), ("attack", ATTACK_VIDEOS)):
                for source in sources:
                    before = detector.frames_detected
                    counts = run_source(
                        Pipeline(chosen, identity.gallery, detector), base.shared_data / source
                    )
                    counts["full_detections"] = detector.frames_detected - before
                    print(f"{mode:6s} {label:6s} {source:48s} {json.dumps(counts)}", flush=True)


if __name__ == "__main__":
    main()
