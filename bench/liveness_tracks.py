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

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from shared.settings import get_settings  # noqa: E402

LIVE_VIDEOS = [
    "liveness/live_person.mov",
    "liveness-train/live_person2.mp4",
    "liveness-train/live_apfol.webm",
    "liveness-train/live_krzysiek354.webm",
    "liveness-train/live_sivakumar1982.mp4",
    "liveness-train/live_wolfhuo.mp4",
    "video/hamilton_clip_640x360.mp4",
    "video/street_crowd_1080p.mp4",
]
ATTACK_VIDEOS = [
    "liveness/replay_attack_same_person.mp4",
    "liveness-train/replay_attack_person2.mp4",
    "liveness-train/monitor_replay_wolfhuo.mp4",
    "liveness-train/monitor_replay_ashishbhatnagar022.mp4",
    "liveness-train/phone_replay_apfol.webm",
    "liveness-train/phone_replay_nurcanyardimci.mp4",
]
STILLS = {"live.jpg": "live", "print_attack.jpg": "print", "screen_replay_attack.jpg": "screen"}
OFFSETS = 10


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hop", type=int, default=8)
    parser.add_argument("--report", type=Path, default=None)
    parser.add_argument("--weights", type=Path, default=None)
    args = parser.parse_args()

    import cv2

    from shared.face.detection import create_detector
    from shared.liveness import training
    from shared.liveness.evaluation import moving_still, track_outcome, track_rates
    from shared.liveness.model import load_model

    settings = get_settings()
    if settings.face.tf_threads:
        from shared.face.encoder import configure_threads

        configure_threads(settings.face.tf_threads, 1)
    data = settings.shared_data
    model = load_model(args.weights or settings.liveness.weights)
    policy = settings.liveness.policy("bench")
    detector = create_detector("mtcnn", min_face_px=settings.face.min_face_px)
    report: dict = {"policy": policy.__dict__, "hop": args.hop, "sources": {}}
    every: list = []

    def record(name: str, outcomes: list) -> None:
        every.extend(outcomes)
        scores = [s for o in outcomes for s in o.scores]
        label = outcomes[0].label if outcomes else "?"
        right = [
            (s >= policy.threshold) == (label == "live") for o in outcomes for s in o.scores
        ]
        states = [o.final for o in outcomes]
        latencies = [o.seconds_to_live(args.hop) for o in outcomes if o.ever_live]
        entry = {
            "label": label,
            "tracks": len(outcomes),
            "windows": len(scores),
            "window_correct": float(np.mean(right)) if right else None,
            "ever_named": sum(o.ever_live for o in outcomes),
            "ever_spoof": sum(o.spoofed for o in outcomes),
            "final_states": {s: states.count(s) for s in set(states) if s},
            "seconds_to_name": [round(v, 2) for v in latencies],
        }
        report["sources"][name] = entry
        print(name, json.dumps(entry), flush=True)

    started = time.monotonic()
    for name in LIVE_VIDEOS:
        path = data / name
        frames = training.read_video(path)
        tracks = [
            t
            for clip in training.at_pipeline_rate(path, frames)
            for t in training.every_track(clip, detector)
        ]
        record(
            name,
            [
                track_outcome(model, policy, t.features(), "live", args.hop)
                for t in tracks
                if len(t.boxes) >= 16
            ],
        )
    for name in ATTACK_VIDEOS:
        path = data / name
        frames = training.read_video(path)
        smallest = name.startswith("liveness/")  # the live person stands beside the phone
        outcomes, offsets = [], []
        for clip in training.at_pipeline_rate(path, frames):
            track = training.follow_face(clip, detector, smallest=smallest)
            outcomes.append(track_outcome(model, policy, track.features(), "screen", args.hop))
            if smallest and not offsets:
                for k in range(OFFSETS):  # the attacker's retries: new tracks from later frames
                    start = k * len(track.boxes) // (OFFSETS + 2)
                    cut = training.FaceTrack(
                        track.landmarks[start:], track.boxes[start:], track.contexts[start:]
                    )
                    offsets.append(
                        track_outcome(model, policy, cut.features(), "screen", args.hop)
                    )
        record(name, outcomes)
        if offsets:
            record(f"{name} at {OFFSETS} offsets", offsets)
    rng = np.random.default_rng(0)
    for still, label in STILLS.items():
        image = cv2.imread(str(data / "liveness" / "stills" / still))
        outcomes = []
        for _ in range(5):  # five hands
            track = training.follow_face(moving_still(image, rng, 48), detector)
            outcomes.append(track_outcome(model, policy, track.features(), label, args.hop))
        record(f"still {still} moved by hand (5 clips of 48 frames)", outcomes)
    report["tracks"] = track_rates(every)
    report["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(report["tracks"]), flush=True)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(report, indent=2, default=float) + "\n")


if __name__ == "__main__":
    main()
