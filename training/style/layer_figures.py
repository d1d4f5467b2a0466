"""Layer figures at scale (Zeiler and Fergus 2014): top-9 patches of units of several layers, one pass.

The single-layer tool (``facestream layers``, training/style/visualize.py) keeps patches in
memory and runs one image at a time: fine for 33 images, not for thousands. This one runs a
batch of images through the network once for all requested layers, keeps for *every* unit of
every layer only (activation, image index, position) of its nine best images (one patch per
image at most, as in the paper), and crops the patches at the end by re-reading those few
images. The units drawn are a seeded random sample of the layer's live units (those that fire
on at least one image), as the paper shows "a random subset of feature maps", not hand-picked
ones.

Two networks:

- ``sface``: the default face encoder (shared/face/sface.py) on LFW. Each image's subject is
  found by YuNet (the face nearest the centre), aligned to SFace's 112x112 ArcFace chip, and
  the activations are those after each conv's PReLU (``layerNN_prelu``).
- ``vgg16``: ImageNet VGG16 (shared/style/vgg.py) on a mixed set (LFW, frames of the videos,
  the style content photos, ...): each image resized so its shorter side is 224 and centre
  cropped to 224x224, so batches have one shape.

    python -m training.style.layer_figures --model sface --layers layer02 layer07 layer15 layer26 \\
        --images faces/lfw-deepfunneled --limit 4000 -o docs/figures/layers

Writes ``MODEL_LAYER.png`` per layer and ``MODEL.json`` (images used, seconds, receptive
fields, units drawn and their activations) into the output folder.

**Faces stay out of the repository.** Where a layer's patches are larger than
``--private-above`` pixels (default 24: an eye or a mouth corner is not a person, a 63-pixel
patch of a 112-pixel chip can be), the output folder gets each unit's *mean* of its nine
patches instead (nine different people averaged: what the unit looks for, nobody's face), and
the grid of the patches themselves goes to ``--private-output`` (default ``bench/out/layers``,
git-ignored), as the LFW grids of the single-layer tool do.

``--videos FILE ... --every-s S`` adds one frame every S seconds of each video to the images.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from training.style.visualize import (
    ReceptiveField,
    crop_patch,
    keras_spec,
    list_images,
    receptive_field,
    render_grid,
    resolve_folder,
    vgg16_spec,
)

VGG_SIDE = 224
PRIVATE_OUTPUT = Path(__file__).resolve().parents[2] / "bench" / "out" / "layers"


@dataclass
class TopK:
    """For every unit of one layer: its k best (activation, image, row, col), best first."""

    values: np.ndarray  # (C, k) float32, -inf where empty
    images: np.ndarray  # (C, k) int64, -1 where empty
    rows: np.ndarray
    cols: np.ndarray

    @classmethod
    def empty(cls, channels: int, k: int) -> TopK:
        return cls(
            np.full((channels, k), -np.inf, np.float32),
            np.full((channels, k), -1, np.int64),
            np.zeros((channels, k), np.int64),
            np.zeros((channels, k), np.int64),
        )

    def update(self, activations: np.ndarray, first_index: int) -> None:
        """Merge a batch of (B, h, w, C) activations: each image's best position per unit."""
        batch, _, width, channels = activations.shape
        flat = activations.reshape(batch, -1, channels)
        where = flat.argmax(axis=1)  # (B, C)
        best = np.take_along_axis(flat, where[:, None, :], axis=1)[:, 0, :]  # (B, C)
        k = self.values.shape[1]
        values = np.concatenate([self.values, best.T], axis=1)
        images = np.concatenate(
            [
                self.images,
                np.broadcast_to(np.arange(first_index, first_index + batch), (channels, batch)),
            ],
            axis=1,
        )
        rows = np.concatenate([self.rows, (where // width).T], axis=1)
        cols = np.concatenate([self.cols, (where % width).T], axis=1)
        # Stable descending order: among equal values the earlier image ranks higher.
        order = np.argsort(-values, axis=1, kind="stable")[:, :k]
        self.values = np.take_along_axis(values, order, axis=1)
        self.images = np.take_along_axis(images, order, axis=1)
        self.rows = np.take_along_axis(rows, order, axis=1)
        self.cols = np.take_along_axis(cols, order, axis=1)


def top_k_over(
    layers_fn: Callable[[np.ndarray], Sequence[np.ndarray]],
    batches: Iterator[np.ndarray],
    layer_names: Sequence[str],
    k: int = 9,
) -> dict[str, TopK]:
    """Run every batch once; keep each unit's k best images per layer."""
    tops: dict[str, TopK] = {}
    seen = 0
    for batch in batches:
        outputs = layers_fn(batch.astype(np.float32))
        for name, activations in zip(layer_names, outputs, strict=True):
            activations = np.asarray(activations)
            if name not in tops:
                tops[name] = TopK.empty(activations.shape[-1], k)
            tops[name].update(activations, seen)
        seen += len(batch)
    return tops


def choose_units(top: TopK, count: int, seed: int) -> list[int]:
    """A seeded random sample of the live units (best activation > 0), in index order."""
    live = np.flatnonzero(top.values[:, 0] > 0)
    rng = np.random.default_rng(seed)
    return sorted(int(u) for u in rng.choice(live, min(count, len(live)), replace=False))


def patches_of(
    top: TopK, units: Sequence[int], image_at: Callable[[int], np.ndarray], field: ReceptiveField
) -> dict[int, list[tuple[float, np.ndarray]]]:
    return {
        unit: [
            (float(v), crop_patch(image_at(int(i)), int(r), int(c), field))
            for v, i, r, c in zip(
                top.values[unit], top.images[unit], top.rows[unit], top.cols[unit], strict=True
            )
            if i >= 0
        ]
        for unit in units
    }


def mean_patches(
    patches: dict[int, list[tuple[float, np.ndarray]]],
) -> dict[int, list[tuple[float, np.ndarray]]]:
    """Each unit's nine patches averaged into one (what the unit responds to, no one's face)."""
    return {
        unit: [(float(np.mean([v for v, _ in items])), np.mean([p for _, p in items], axis=0))]
        for unit, items in patches.items()
        if items
    }


def video_frames(videos: Sequence[str], every_s: float, folder: Path) -> list[Path]:
    """One frame every ``every_s`` seconds of each video, written as JPEGs into ``folder``."""
    written = []
    for video in videos:
        path = resolve_video(video)
        capture = cv2.VideoCapture(str(path))
        step = max(1, round((capture.get(cv2.CAP_PROP_FPS) or 25.0) * every_s))
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if index % step == 0:
                out = folder / f"{path.stem}_{index:06d}.jpg"
                cv2.imwrite(str(out), frame)
                written.append(out)
            index += 1
        capture.release()
    return written


def resolve_video(video: str) -> Path:
    path = Path(video)
    if not path.exists():
        from training.style.visualize import shared_data_dir

        path = shared_data_dir() / video
    if not path.is_file():
        raise FileNotFoundError(f"video {video} not found")
    return path


def vgg_image(path: Path) -> np.ndarray | None:
    """RGB 224x224: shorter side resized to 224, centre crop."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        return None
    scale = VGG_SIDE / min(bgr.shape[:2])
    size = (max(VGG_SIDE, round(bgr.shape[1] * scale)), max(VGG_SIDE, round(bgr.shape[0] * scale)))
    bgr = cv2.resize(bgr, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    top, left = (bgr.shape[0] - VGG_SIDE) // 2, (bgr.shape[1] - VGG_SIDE) // 2
    return cv2.cvtColor(bgr[top : top + VGG_SIDE, left : left + VGG_SIDE], cv2.COLOR_BGR2RGB)


class FaceChips:
    """LFW images -> SFace's aligned 112x112 RGB chips of the face nearest the centre (YuNet)."""

    def __init__(self, models_dir: Path | None) -> None:
        from shared.face.detection import create_detector

        self.detector = create_detector("yunet", models_dir=models_dir)

    def __call__(self, path: Path) -> np.ndarray | None:
        from shared.face.chip_kinds import align_arcface

        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            return None
        faces = [f for f in self.detector.detect(bgr) if f.landmarks is not None]
        if not faces:
            return None
        centre = np.array([bgr.shape[1], bgr.shape[0]]) / 2

        def distance(face) -> float:
            x, y, w, h = face.box
            return float(np.hypot(*(np.array([x + w / 2, y + h / 2]) - centre)))

        return align_arcface(bgr, min(faces, key=distance).landmarks)


def network(model: str, layers: Sequence[str], models_dir: Path | None):
    """(function batch -> activations per layer, receptive field per layer, image loader)."""
    if model == "vgg16":
        from shared.style.vgg import feature_extractor

        extractor = feature_extractor(list(layers), models_dir)

        def vgg_fn(batch: np.ndarray) -> list[np.ndarray]:
            out = extractor(batch)
            return [out[name].numpy() for name in layers]

        return vgg_fn, {n: receptive_field(vgg16_spec(n)) for n in layers}, vgg_image
    if model == "sface":
        import keras

        from shared.face.sface import load_sface

        encoder = load_sface(models_dir, warm_up=False)
        outputs = [encoder.model.get_layer(f"{n}_prelu").output for n in layers]
        cut = keras.Model(encoder.model.input, outputs)

        def sface_fn(batch: np.ndarray) -> list[np.ndarray]:
            out = cut(batch, training=False)
            return [np.asarray(o) for o in (out if isinstance(out, list | tuple) else [out])]

        fields = {n: receptive_field(keras_spec(encoder.model, n)) for n in layers}
        return sface_fn, fields, FaceChips(models_dir)
    raise ValueError(f"unknown model {model!r}; choose sface or vgg16")


def batched(
    paths: Sequence[Path], load: Callable[[Path], np.ndarray | None], size: int, used: list[Path]
) -> Iterator[np.ndarray]:
    """Batches of loaded images; ``used`` collects the paths that loaded (their index order)."""
    batch: list[np.ndarray] = []
    for path in paths:
        image = load(path)
        if image is None:
            continue
        used.append(path)
        batch.append(image)
        if len(batch) == size:
            yield np.stack(batch)
            batch = []
            if len(used) % (size * 20) == 0:
                print(f"  {len(used)} images", file=sys.stderr, flush=True)
    if batch:
        yield np.stack(batch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.style.layer_figures")
    parser.add_argument("--model", choices=["sface", "vgg16"], required=True)
    parser.add_argument("--layers", nargs="+", required=True)
    parser.add_argument("--images", nargs="+", default=[], help="folders, recursive")
    parser.add_argument("--videos", nargs="+", default=[], help="video files: sampled frames")
    parser.add_argument("--every-s", type=float, default=2.0, help="--videos: seconds apart")
    parser.add_argument("--private-above", type=int, default=24, help="see the module doc")
    parser.add_argument("--private-output", type=Path, default=PRIVATE_OUTPUT)
    parser.add_argument("--limit", type=int, nargs="+", default=None, help="per folder")
    parser.add_argument("--units", type=int, default=8, help="units drawn per layer")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cell", type=int, default=56)
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("-o", "--output", type=Path, required=True, help="output folder")
    args = parser.parse_args(argv)
    limits = args.limit or [None]
    limits = limits * len(args.images) if len(limits) == 1 else limits
    paths = [
        p
        for folder, limit in zip(args.images, limits, strict=True)
        for p in list_images(resolve_folder(folder), limit, args.seed)
    ]
    frames_folder = tempfile.TemporaryDirectory(prefix="layer-frames-")
    paths += video_frames(args.videos, args.every_s, Path(frames_folder.name))
    layers_fn, fields, load = network(args.model, args.layers, args.models_dir)
    started = time.perf_counter()
    used: list[Path] = []
    tops = top_k_over(layers_fn, batched(paths, load, args.batch_size, used), args.layers)
    seconds = time.perf_counter() - started
    args.output.mkdir(parents=True, exist_ok=True)
    summary = {"model": args.model, "images_listed": len(paths), "images_used": len(used)}
    summary |= {
        "seconds": round(seconds, 1),
        "folders": args.images,
        "limits": limits,
        "videos": args.videos,
        "every_s": args.every_s,
        "layers": {},
    }
    for name in args.layers:
        units = choose_units(tops[name], args.units, args.seed)
        patches = patches_of(tops[name], units, lambda i: load(used[i]), fields[name])
        size, stride, _ = fields[name]
        live = int((tops[name].values[:, 0] > 0).sum())
        title = (
            f"{args.model} {name}: receptive field {size}px, stride {stride}; "
            f"{len(used)} images; {len(units)} of {live} live units"
        )
        out = args.output / f"{args.model}_{name}.png"
        if min(size, 112 if args.model == "sface" else VGG_SIDE) > args.private_above:
            args.private_output.mkdir(parents=True, exist_ok=True)
            write_png(args.private_output / out.name, render_grid(patches, title, cell=args.cell))
            title = f"{name}: mean of top 9"
            grid = render_grid(mean_patches(patches), title, cell=args.cell * 2, k=1)
        else:
            grid = render_grid(patches, title, cell=args.cell)
        write_png(out, grid)
        summary["layers"][name] = {
            "receptive_field": [size, stride, fields[name][2]],
            "units": units,
            "live_units": live,
            "channels": int(tops[name].values.shape[0]),
            "top_activations": {u: [round(float(v), 3) for v, _ in patches[u]] for u in units},
        }
        print(f"{out}: {title}")
    (args.output / f"{args.model}.json").write_text(json.dumps(summary, indent=2))
    frames_folder.cleanup()
    print(f"{len(used)} of {len(paths)} images in {seconds:.0f} s")
    return 0


def write_png(path: Path, rgb: np.ndarray) -> None:
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])


if __name__ == "__main__":
    raise SystemExit(main())
