"""Small weight files the project trains and commits (binary heads, the fine-tuned fc layer).

One format for all of them: an uncompressed, byte-reproducible .npz (model_cache.npz_bytes) with
the arrays plus ``meta``, a JSON string holding the format version, the kind of model, how it was
trained, and the SHA-256 of the arrays' content. Loading checks all of it, so a missing,
truncated, hand-edited or wrong-kind file stops the process at start-up with a message that says
which file, what is wrong and the command that rebuilds it, instead of serving wrong decisions.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from shared.face.model_files import ModelFileError
from shared.model_cache import npz_bytes, write_atomically

WEIGHTS_DIR = Path(__file__).with_name("weights")
FORMAT_VERSION = 1


class WeightsFileError(ModelFileError):
    """A committed weights file is missing, damaged or of the wrong kind."""


def arrays_digest(arrays: Mapping[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def save_weights(
    path: Path, kind: str, arrays: Mapping[str, np.ndarray], info: dict[str, Any]
) -> None:
    arrays = {
        name: np.atleast_1d(array) for name, array in arrays.items()
    }  # as npz_bytes stores them
    meta = {"format": FORMAT_VERSION, "kind": kind, "sha256": arrays_digest(arrays), **info}
    payload = {**arrays, "meta": np.array([json.dumps(meta, sort_keys=True)])}
    write_atomically(path, npz_bytes(payload))


def load_weights(
    path: Path, kind: str, rebuild: str
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, meta) of a ``kind`` weights file; WeightsFileError saying why and what to run."""
    path = Path(path)
    fix = f"; rebuild it with `{rebuild}` or point the setting at the committed file"
    if not path.is_file():
        raise WeightsFileError(f"{kind} weights file {path} does not exist{fix}")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        meta = json.loads(str(arrays.pop("meta").reshape(-1)[0]))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as error:
        raise WeightsFileError(
            f"{kind} weights file {path} is unreadable ({error}){fix}"
        ) from error
    if meta.get("format") != FORMAT_VERSION or meta.get("kind") != kind:
        raise WeightsFileError(
            f"{path} holds {meta.get('kind')!r} weights (format {meta.get('format')}), "
            f"expected {kind!r} (format {FORMAT_VERSION}){fix}"
        )
    if arrays_digest(arrays) != meta.get("sha256"):
        raise WeightsFileError(f"{kind} weights file {path} is damaged: content hash mismatch{fix}")
    return arrays, meta
