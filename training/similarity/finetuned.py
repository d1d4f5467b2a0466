"""The fine-tuned encoder: dlib's pretrained ResNet with a triplet-fine-tuned last layer (fc).

Only the 256x128 fc kernel changes in fine-tuning (training.py says why), so only it is
committed (~130 KB); the other 29 layers come from the pretrained weights in the model cache,
which are hash-checked there. The file records the SHA-256 of the pretrained content it was
trained on, and loading refuses another base.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.face.model_files import CONTENT_SHA256
from shared.similarity.weights import WEIGHTS_DIR, WeightsFileError, load_weights, save_weights

KIND = "finetuned-fc"
FINETUNED_FILE = WEIGHTS_DIR / "finetuned_fc.npz"
REBUILD = "facestream similarity train --mode finetune --selector semi-hard"


def save_fc_kernel(path: Path, kernel: np.ndarray, info: dict | None = None) -> None:
    save_weights(
        path,
        KIND,
        {"fc/kernel": np.asarray(kernel, np.float32)},
        {"base_content_sha256": CONTENT_SHA256, **(info or {})},
    )


def load_fc_kernel(path: Path = FINETUNED_FILE) -> np.ndarray:
    arrays, meta = load_weights(path, KIND, REBUILD)
    if meta.get("base_content_sha256") != CONTENT_SHA256:
        raise WeightsFileError(
            f"{path} was fine-tuned from other pretrained weights than the cached ones"
        )
    kernel = arrays["fc/kernel"]
    if kernel.shape != (256, 128):
        raise WeightsFileError(f"{path}: fc kernel has shape {kernel.shape}, expected (256, 128)")
    return kernel


def load_finetuned_encoder(path: Path = FINETUNED_FILE, models_dir: Path | None = None):
    """A FaceEncoder whose fc layer is the fine-tuned one."""
    from shared.face.encoder import FaceEncoder, build_dlib_resnet
    from shared.face.model_files import ensure_weights
    from shared.model_cache import default_models_dir

    weights = dict(ensure_weights(models_dir or default_models_dir()))
    weights["fc/kernel"] = load_fc_kernel(path)
    return FaceEncoder(build_dlib_resnet(weights))
