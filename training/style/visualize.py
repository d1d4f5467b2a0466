"""What the layers learn (Zeiler and Fergus 2014): the image patches that excite chosen units most.

For every image of a dataset the network is run up to one layer; for each chosen unit (channel)
the spatial position of its largest activation is mapped back to the input through the layer's
receptive field and that input patch is cropped (zero-padded where it leaves the image). The
nine strongest patches per unit over the whole dataset (one per image at most) are kept in a heap
and drawn as a grid: one row per unit, strongest patch first.

Shallow layers see a few pixels (VGG16 block1_conv1: 3 x 3), so their patches are colours and
edges; deep ones see most of the image (block5_conv3: 196 x 196 at stride 16), so theirs are
parts and objects. Command::

    facestream layers --model vgg16 --layer block1_conv1 --units 0 1 2 3 \\
        --images faces/lfw-deepfunneled style/content --limit 300 -o out.png

Relative ``--images`` folders that do not exist as given are looked up under the shared data
folder (``FACESTREAM_SHARED_DATA``, else ``../shared/data``).
"""

from __future__ import annotations

import argparse
import heapq
import math
import os
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np

LayerSpec = tuple[int, int, int]
"""(kernel size, stride, padding before the first row/column) of one conv or pool layer."""

ReceptiveField = tuple[int, int, float]
"""(size, stride, offset): output position i sees input pixels centred on offset + i * stride."""

VGG16_SPECS: dict[str, LayerSpec] = {}
for _block, _convs in enumerate((2, 2, 3, 3, 3), start=1):
    for _conv in range(1, _convs + 1):
        VGG16_SPECS[f"block{_block}_conv{_conv}"] = (3, 1, 1)  # 3x3 'same', stride 1
    VGG16_SPECS[f"block{_block}_pool"] = (2, 2, 0)  # 2x2 max pool, stride 2, 'valid'
VGG16_ORDER: tuple[str, ...] = tuple(VGG16_SPECS)
"""VGG16's conv and pool layers in network order (Keras names) and their geometry."""

FACE_CHIP = 150
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


def receptive_field(layers_spec: Sequence[LayerSpec]) -> ReceptiveField:
    """Size, stride and offset of a unit of the last layer of a stack of convs and pools.

    With jump j (input pixels between neighbouring units) and centre offset o of unit 0, a layer
    with kernel k, stride s and leading padding p gives size += (k - 1) j, o += ((k - 1) / 2 - p) j,
    j *= s. Unit i of the last layer is centred on input pixel ``offset + i * stride``.
    """
    size, stride, offset = 1, 1, 0.0
    for kernel, step, pad in layers_spec:
        size += (kernel - 1) * stride
        offset += ((kernel - 1) / 2 - pad) * stride
        stride *= step
    return size, stride, offset


def vgg16_spec(layer: str) -> list[LayerSpec]:
    """The geometry of VGG16 up to and including ``layer``."""
    if layer not in VGG16_SPECS:
        raise ValueError(f"unknown VGG16 layer {layer!r}; choose from {VGG16_ORDER}")
    return [VGG16_SPECS[name] for name in VGG16_ORDER[: VGG16_ORDER.index(layer) + 1]]


def keras_spec(model, layer: str) -> list[LayerSpec]:
    """The geometry of the main path of a Keras model up to ``layer``: its convolutions (plain
    and depthwise) and max pools, with the zero padding of a ZeroPadding2D in front of them.

    Average pools are skipped: in the face ResNet they sit on residual shortcuts, whose receptive
    field is smaller than the conv path's. 'same' pads (k - 1) // 2 first when the stride is 1
    (odd kernels); a strided 'same' layer pads unevenly and is refused (SFace pads explicitly,
    ZeroPadding2D then a 'valid' convolution, which is supported at any stride).
    """
    import keras

    specs: list[LayerSpec] = []
    pending = 0  # leading padding of a ZeroPadding2D waiting for its convolution
    kinds = keras.layers.Conv2D | keras.layers.DepthwiseConv2D | keras.layers.MaxPooling2D
    for item in model.layers:
        if isinstance(item, keras.layers.ZeroPadding2D):
            (top, _), (left, _) = item.padding
            if top != left:
                raise ValueError(f"{item.name}: only square padding is supported")
            pending += int(top)
        elif isinstance(item, kinds):
            pooling = isinstance(item, keras.layers.MaxPooling2D)
            kernel = item.pool_size if pooling else item.kernel_size
            stride = item.strides
            if kernel[0] != kernel[1] or stride[0] != stride[1]:
                raise ValueError(f"{item.name}: only square kernels and strides are supported")
            if item.padding == "valid":
                pad = pending
            elif stride[0] == 1 and kernel[0] % 2 == 1 and not pending:
                pad = (kernel[0] - 1) // 2
            else:
                raise ValueError(f"{item.name}: strided or even 'same' padding is not supported")
            pending = 0
            specs.append((int(kernel[0]), int(stride[0]), pad))
        if item.name == layer or item.name == f"{layer}_prelu":
            return specs
    raise ValueError(f"layer {layer!r} not in model {model.name}")


def crop_patch(image: np.ndarray, row: int, col: int, field: ReceptiveField) -> np.ndarray:
    """The input patch seen by output position (row, col); zeros where it leaves the image.

    A field larger than the image (the face ResNet's last layers see 899 pixels of a 150-pixel
    chip) is cut to the image's longer side, still centred on the unit, so the grid shows the
    image rather than a dot in a black square.
    """
    size, stride, offset = field
    size = min(size, max(image.shape[:2]))
    out = np.zeros((size, size, image.shape[2]), dtype=image.dtype)
    top = math.floor(offset + row * stride - (size - 1) / 2 + 0.5)
    left = math.floor(offset + col * stride - (size - 1) / 2 + 0.5)
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + size, image.shape[0]), min(left + size, image.shape[1])
    if y1 > y0 and x1 > x0:
        out[y0 - top : y1 - top, x0 - left : x1 - left] = image[y0:y1, x0:x1]
    return out


def top_patches(
    model_layer_fn: Callable[[np.ndarray], object],
    images: Iterable[np.ndarray],
    units: Sequence[int],
    receptive_field: ReceptiveField,
    k: int = 9,
) -> dict[int, list[tuple[float, np.ndarray]]]:
    """The ``k`` input patches (one per image at most) that excite each unit most, strongest first.

    ``model_layer_fn`` maps a (1, H, W, 3) float32 RGB batch in [0, 255] to (1, h, w, C)
    activations (numpy or tensor); ``images`` are (H, W, 3) RGB arrays. Ties keep the earlier image.
    """
    heaps: dict[int, list[tuple[float, int, np.ndarray]]] = {int(u): [] for u in units}
    for index, image in enumerate(images):
        activations = np.asarray(model_layer_fn(image[None].astype(np.float32)))[0]
        if activations.ndim != 3:
            raise ValueError(f"expected (1, h, w, c) activations, got {activations.shape}")
        width = activations.shape[1]
        if index == 0 and max(heaps) >= activations.shape[-1]:
            raise ValueError(f"units {sorted(heaps)}: the layer has {activations.shape[-1]}")
        for unit, heap in heaps.items():
            plane = activations[..., unit]
            flat = int(np.argmax(plane))
            value = float(plane.flat[flat])
            # (value, -index): among equal values the earlier image ranks higher.
            key = (value, -index)
            if len(heap) == k and key <= heap[0][:2]:
                continue
            patch = crop_patch(image, flat // width, flat % width, receptive_field)
            item = (value, -index, patch)
            if len(heap) < k:
                heapq.heappush(heap, item)
            else:
                heapq.heapreplace(heap, item)
    return {
        unit: [
            (value, patch) for value, _, patch in sorted(heap, key=lambda t: t[:2], reverse=True)
        ]
        for unit, heap in heaps.items()
    }


def render_grid(
    results: dict[int, list[tuple[float, np.ndarray]]],
    title: str = "",
    cell: int = 64,
    k: int = 9,
    gap: int = 2,
    label_width: int = 56,
    title_height: int = 20,
) -> np.ndarray:
    """An RGB uint8 image: a title bar, then one row per unit (label, then ``k`` patches).

    Patches are resized to ``cell`` pixels (nearest neighbour when enlarging, so a 3 x 3 patch
    shows its nine pixels); missing patches stay dark grey.
    """
    rows = len(results)
    height = title_height + rows * (cell + gap) + gap
    width = label_width + k * (cell + gap) + gap
    grid = np.full((height, width, 3), 255, dtype=np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    if title:
        cv2.putText(grid, title, (4, title_height - 6), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for r, (unit, patches) in enumerate(results.items()):
        y = title_height + gap + r * (cell + gap)
        cv2.putText(
            grid, f"unit {unit}", (4, y + cell // 2 + 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA
        )
        for c in range(k):
            x = label_width + gap + c * (cell + gap)
            if c >= len(patches):
                grid[y : y + cell, x : x + cell] = 64
                continue
            patch = np.clip(np.asarray(patches[c][1]), 0, 255).astype(np.uint8)
            interp = cv2.INTER_NEAREST if patch.shape[0] < cell else cv2.INTER_AREA
            grid[y : y + cell, x : x + cell] = cv2.resize(patch, (cell, cell), interpolation=interp)
    return grid


def shared_data_dir() -> Path:
    """``FACESTREAM_SHARED_DATA``, else ``../shared/data`` next to the repository."""
    root = Path(__file__).resolve().parents[2]
    return Path(os.environ.get("FACESTREAM_SHARED_DATA", str(root.parent / "shared" / "data")))


def resolve_folder(folder: str | Path) -> Path:
    path = Path(folder)
    if not path.exists() and not path.is_absolute():
        path = shared_data_dir() / path
    if not path.is_dir():
        raise FileNotFoundError(f"image folder {folder} not found (nor under {shared_data_dir()})")
    return path


def list_images(folder: Path, limit: int | None = None, seed: int = 0) -> list[Path]:
    """The folder's images (recursive), sorted; a seeded sample of ``limit`` of them if given."""
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if limit is not None and len(files) > limit:
        files = sorted(random.Random(seed).sample(files, limit))
    return files


def load_rgb(path: Path, longest: int) -> np.ndarray | None:
    """An RGB uint8 image resized so its longest side is ``longest``; None if unreadable."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        return None
    scale = longest / max(bgr.shape[:2])
    size = (max(1, round(bgr.shape[1] * scale)), max(1, round(bgr.shape[0] * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.cvtColor(cv2.resize(bgr, size, interpolation=interp), cv2.COLOR_BGR2RGB)


def face_chip(rgb: np.ndarray, fraction: float = 0.6) -> np.ndarray:
    """A centred square crop of ``fraction`` of the shorter side, resized to 150 x 150.

    LFW deep-funneled images are 250 x 250 with the face centred; their middle 150 pixels frame
    the face about as dlib's 150-pixel chips (padding 0.25) do.
    """
    side = int(round(min(rgb.shape[:2]) * fraction))
    top, left = (rgb.shape[0] - side) // 2, (rgb.shape[1] - side) // 2
    crop = rgb[top : top + side, left : left + side]
    return cv2.resize(crop, (FACE_CHIP, FACE_CHIP), interpolation=cv2.INTER_AREA)


def iter_images(paths: Sequence[Path], model: str, longest: int) -> Iterator[np.ndarray]:
    for path in paths:
        image = load_rgb(path, 250 if model == "face" else longest)
        if image is None:
            print(f"skipped unreadable {path}", file=sys.stderr)
            continue
        yield face_chip(image) if model == "face" else image


def layer_function(
    model: str, layer: str, models_dir: Path | None = None
) -> tuple[Callable[[np.ndarray], object], ReceptiveField]:
    """The network cut at ``layer`` and that layer's receptive field, for 'vgg16' or 'face'."""
    if model == "vgg16":
        from shared.style.vgg import feature_extractor

        if layer not in VGG16_SPECS or "pool" in layer:
            from shared.style.vgg import CONV_LAYERS

            raise ValueError(f"unknown VGG16 conv layer {layer!r}; choose from {CONV_LAYERS}")
        extractor = feature_extractor([layer], models_dir)  # applies vgg.preprocess itself
        return (lambda batch: extractor(batch)[layer]), receptive_field(vgg16_spec(layer))
    if model == "face":
        import keras

        from shared.face.encoder import load_encoder

        encoder = load_encoder(models_dir, warm_up=False)
        cut = keras.Model(encoder.model.input, encoder.model.get_layer(layer).output)
        return (lambda batch: cut(batch, training=False)), receptive_field(
            keras_spec(encoder.model, layer)
        )
    raise ValueError(f"unknown model {model!r}; choose vgg16 or face")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="facestream layers",
        description="Zeiler-Fergus grid: the image patches that excite chosen units most.",
    )
    parser.add_argument("--model", choices=["vgg16", "face"], default="vgg16")
    parser.add_argument("--layer", required=True, help="e.g. block1_conv1 (vgg16), con00 (face)")
    parser.add_argument("--units", type=int, nargs="+", required=True)
    parser.add_argument(
        "--images",
        nargs="+",
        required=True,
        help="image folders (recursive); relative ones are also looked up under the shared data",
    )
    parser.add_argument("--limit", type=int, default=None, help="sample at most N per folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--size", type=int, default=224, help="longest side of each image (vgg16)")
    parser.add_argument("--k", type=int, default=9)
    parser.add_argument("--cell", type=int, default=64, help="patch size in the grid, pixels")
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)

    try:
        paths = [
            p
            for folder in args.images
            for p in list_images(resolve_folder(folder), args.limit, args.seed)
        ]
        if not paths:
            raise FileNotFoundError(f"no images in {args.images}")
        fn, field = layer_function(args.model, args.layer, args.models_dir)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    start = time.perf_counter()
    try:
        images = iter_images(paths, args.model, args.size)
        results = top_patches(fn, images, args.units, field, args.k)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    elapsed = time.perf_counter() - start
    size, stride, _ = field
    title = f"{args.model} {args.layer}  (receptive field {size}px, stride {stride}; {len(paths)} images)"
    grid = render_grid(results, title, cell=args.cell, k=args.k)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(
        str(args.output),
        cv2.cvtColor(grid, cv2.COLOR_RGB2BGR),
        [cv2.IMWRITE_PNG_COMPRESSION, 9],
    )
    print(f"{args.output}: {len(paths)} images in {elapsed:.1f} s, receptive field {field}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
