"""Blinks per source: does every live face blink soon, and does a print never seem to?

``shared.liveness.blink`` counts a track's blinks from its eye aspect ratio. This measures, at
the pipeline's 15 frames a second, on the largest MTCNN face of each frame:

- **live** (choose): Hamilton and the five live webcam recordings of ``liveness-train/``: how
  many blinks, and the seconds to the first one (the latency a blink requirement would add);
- **real recaptures** (choose): they replay a live face, so they blink too; reported to show
  that a blink is no cue against replays;
- **synthetic prints** (choose): ``--prints`` LFW photos through ``textured_print_attack``
  (paper, bend, a trembling hand, re-compression), 64 frames each;
- **evaluation** (judge, measured once): the three stills of ``liveness/stills`` moved by hand
  (``moving_still``, 64 frames, three seeds each), the live evaluation webcam and the real replay.

The street crowd is left out: its largest face changes person from frame to frame, and its
tracks (26 frames, 40-60 px faces) are too short and too small for eyelids.

    .venv/bin/python -m bench.liveness_blink [--prints 20] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from shared.liveness.blink import BlinkCounter, EyeLandmarker
from training.liveness.training import PIPELINE_FPS, largest_face, pipeline_step

LT = "liveness-train/"
VIDEOS: list[tuple[str, str, str]] = [
    # (path under the data folder, label, role: choose or judge)
    ("video/hamilton_clip_640x360.mp4", "live", "choose"),
    (LT + "live_apfol.webm", "live", "choose"),
    (LT + "live_krzysiek354.webm", "live", "choose"),
    (LT + "live_person2.mp4", "live", "choose"),
    (LT + "live_sivakumar1982.mp4", "live", "choose"),
    (LT + "live_wolfhuo.mp4", "live", "choose"),
    (LT + "replay_attack_person2.mp4", "replay", "choose"),
    (LT + "monitor_replay_wolfhuo.mp4", "replay", "choose"),
    (LT + "monitor_replay_ashishbhatnagar022.mp4", "replay", "choose"),
    (LT + "phone_replay_apfol.webm", "replay", "choose"),
    (LT + "phone_replay_nurcanyardimci.mp4", "replay", "choose"),
    ("liveness/live_person.mov", "live", "judge"),
    ("liveness/replay_attack_same_person.mp4", "replay", "judge"),
]
STILLS = ("print_attack", "screen_replay_attack", "live")


@dataclass
class Clip:
    name: str
    label: str
    role: str
    ears: list[float | None]

    def summary(self) -> dict:
        counter, first = BlinkCounter(), None
        for index, ear in enumerate(self.ears):
            if ear is not None and counter.update(ear) and first is None:
                first = index / PIPELINE_FPS
        measured = [e for e in self.ears if e is not None]
        return {
            "source": self.name,
            "label": self.label,
            "role": self.role,
            "seconds": round(len(self.ears) / PIPELINE_FPS, 1),
            "faces": len(measured),
            "median_ear": round(float(np.median(measured)), 3) if measured else None,
            "blinks": counter.blinks,
            "first_blink_s": None if first is None else round(first, 1),
        }


def video_frames(path: Path, limit: int = 600):
    """The video's frames at the pipeline's rate (``at_pipeline_rate``'s first phase), read one
    at a time: a 1080p recording held whole would take gigabytes."""
    capture = cv2.VideoCapture(str(path))
    step, index, kept = pipeline_step(path), 0, 0
    ok, frame = capture.read()
    while ok and kept < limit:
        if index % step == 0:
            kept += 1
            yield frame
        index += 1
        ok, frame = capture.read()
    capture.release()


def clip_ears(frames, detector, eyes: EyeLandmarker) -> list[float | None]:
    """The largest face's EAR in each frame (None where no face of 40 px is found)."""
    ears: list[float | None] = []
    for frame in frames:
        face = largest_face(frame, detector)
        if face is None:
            ears.append(None)
            continue
        ears.append(eyes(cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY), face.box))
    return ears


def measure(data: Path, prints: int, detector, eyes: EyeLandmarker) -> list[Clip]:
    from training.liveness import attacks, training
    from training.liveness.evaluation import moving_still

    clips = [
        Clip(path, label, role, clip_ears(video_frames(data / path), detector, eyes))
        for path, label, role in VIDEOS
    ]
    rng = np.random.default_rng(0)
    for photo in training.lfw_people(data, "B", prints, 3):
        scene = training.backgrounds(data, 64, rng)
        frames = attacks.textured_print_attack(training._photo(photo), scene, rng)
        clips.append(
            Clip(f"print of {photo.name}", "print", "choose", clip_ears(frames, detector, eyes))
        )
    for still in STILLS:
        image = cv2.imread(str(data / "liveness" / "stills" / f"{still}.jpg"))
        for seed in range(3):
            frames = moving_still(image, np.random.default_rng(seed), 64)
            clips.append(
                Clip(
                    f"{still} still, hand {seed}", still, "judge", clip_ears(frames, detector, eyes)
                )
            )
    return clips


def cost_ms(data: Path, detector, eyes: EyeLandmarker, repeats: int = 50) -> dict:
    """Milliseconds per face of the eye landmarks, beside MTCNN's per frame, on one webcam frame."""
    import time

    frame = next(video_frames(data / LT / "live_wolfhuo.mp4"))
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    box = largest_face(frame, detector).box
    timings = {}
    for name, run in (
        ("mtcnn_frame", lambda: detector.detect(frame)),
        ("eyes_face", lambda: eyes(grey, box)),
    ):
        start = time.perf_counter()
        for _ in range(repeats):
            run()
        timings[name] = round(1000 * (time.perf_counter() - start) / repeats, 2)
    return timings


def main(argv: list[str] | None = None) -> None:
    from bench.machine import shared_data_dir
    from shared.face.detection import create_detector
    from shared.settings import get_settings

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prints", type=int, default=20, help="synthetic print clips")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    data = shared_data_dir(get_settings())
    detector, eyes = create_detector("mtcnn", min_face_px=40), EyeLandmarker()
    clips = measure(data, args.prints, detector, eyes)
    report = {"ms": cost_ms(data, detector, eyes), "clips": [clip.summary() for clip in clips]}
    print(f"cost (ms): {report['ms']}")
    for row in report["clips"]:
        print(
            f"{row['role']:6s} {row['label']:21s} {row['source'][:48]:48s} {row['seconds']:5.1f} s"
            f"  faces {row['faces']:4d}  blinks {row['blinks']:2d}  first {row['first_blink_s']}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
