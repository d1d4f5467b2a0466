"""SFace rebuilt in Keras against onnxruntime running the original ONNX graph, on real chips;
its model files; YuNet; and the chip kinds that keep an encoder from getting another's chips."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from shared.errors import ProcessingError
from shared.face.chip_kinds import ARCFACE_TEMPLATE, align_arcface, check_chip_kind
from shared.face.model_files import ModelFileError
from shared.face.sface_files import (
    SFACE_CONVERTED,
    SFACE_MANIFEST,
    SFACE_RELPATH,
    SFACE_SHA256,
    convert,
    load_sface_weights,
    source_path,
    verify_file,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("FACESTREAM_SHARED_DATA", str(ROOT.parent / "shared" / "data")))
PEOPLE = SHARED_DATA / "faces" / "people"

TOLERANCE = 2e-5
"""Largest allowed |Keras - onnxruntime| per output element (outputs are ~1 in size). Measured:
about 3e-6 (folded batch norms and oneDNN's summation order)."""


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh conversion per run, so the converter itself is tested."""
    pytest.importorskip("onnx")
    directory = tmp_path_factory.mktemp("models")
    convert(directory)
    return directory


@pytest.fixture(scope="module")
def encoder(models_dir: Path):
    from shared.face.sface import load_sface

    return load_sface(models_dir, batch_size=4)


@pytest.fixture(scope="module")
def real_chips(models_dir: Path) -> np.ndarray:
    """ArcFace chips of every face YuNet finds in the enrolment photos."""
    from shared.face.detection import create_detector

    if not PEOPLE.is_dir():
        pytest.skip(f"no face data at {PEOPLE} (set FACESTREAM_SHARED_DATA)")
    detector = create_detector("yunet", models_dir=models_dir)
    chips = []
    for path in sorted((PEOPLE / "enroll").glob("*/*")):
        image = cv2.imread(str(path))
        chips += [align_arcface(image, d.landmarks) for d in detector.detect(image)]
    assert len(chips) >= 6
    return np.stack(chips)


def test_keras_rebuild_matches_onnxruntime_on_real_chips(encoder, real_chips) -> None:
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime (the [test] extra) not installed")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(source_path(SFACE_RELPATH, SFACE_SHA256)), options)
    # OpenCV's FaceRecognizerSF feeds blobFromImage(bgr, swapRB=True): RGB, NCHW, 0..255.
    reference = np.concatenate(
        [
            session.run(None, {"data": chip.transpose(2, 0, 1)[None].astype(np.float32)})[0]
            for chip in real_chips
        ]
    )
    ours = encoder.model(real_chips.astype(np.float32), training=False).numpy()
    assert np.abs(ours - reference).max() < TOLERANCE
    unit = encoder.encode(real_chips)
    expected = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    np.testing.assert_allclose(unit, expected, atol=TOLERANCE)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, atol=1e-5)


def test_batches_give_the_same_encodings(encoder, real_chips) -> None:
    alone = np.concatenate([encoder.encode(chip[None]) for chip in real_chips])
    np.testing.assert_allclose(encoder.encode(real_chips), alone, atol=1e-5)
    assert encoder.encode(real_chips[:0]).shape == (0, 128)


def test_flip_augmentation_gives_unit_encodings_that_a_mirror_image_shares(
    models_dir: Path, encoder, real_chips
) -> None:
    """Flip TTA: the unit mean of the chip's and its mirror's encodings, so a chip and its mirror
    get the same encoding (the pair is the same two views), and it is a different encoder."""
    from shared.face.sface import FLIP_NAME, load_sface

    flip = load_sface(models_dir, batch_size=4, flip=True)
    assert flip.name == FLIP_NAME != encoder.name
    assert flip.chip_kind == encoder.chip_kind
    both = flip.encode(real_chips)
    np.testing.assert_allclose(np.linalg.norm(both, axis=1), 1.0, atol=1e-5)
    mirrored = np.ascontiguousarray(real_chips[:, :, ::-1])
    np.testing.assert_allclose(flip.encode(mirrored), both, atol=1e-5)
    total = encoder.encode(real_chips) + encoder.encode(mirrored)
    expected = total / np.linalg.norm(total, axis=1, keepdims=True)
    np.testing.assert_allclose(both, expected, atol=1e-5)
    plain = encoder.encode(real_chips)
    assert np.abs(both - plain).max() > 1e-3  # a different encoding, not the plain one


@pytest.mark.parametrize("flip", [False, True])
def test_tflite_runs_the_same_encoder(models_dir: Path, encoder, real_chips, flip: bool) -> None:
    """The recognizer's default runtime: the same unit encodings as the TensorFlow graph (so every
    calibration and stored encoding holds), with and without flip, alone and in batches."""
    from shared.face.sface import load_sface

    graph = load_sface(models_dir, batch_size=4, flip=flip)
    lite = load_sface(models_dir, batch_size=4, flip=flip, runtime="tflite")
    assert lite.lite is not None and lite.name == graph.name
    expected = graph.encode(real_chips)
    np.testing.assert_allclose(lite.encode(real_chips), expected, atol=2e-5)
    np.testing.assert_allclose(lite.encode(real_chips[:1]), expected[:1], atol=2e-5)
    assert lite.encode(real_chips[:0]).shape == (0, 128)


def test_a_damaged_tflite_file_is_converted_again_not_used(models_dir: Path) -> None:
    import hashlib

    from shared.face.sface_lite import LITE_MANIFEST, ensure_lite_model

    def recorded() -> dict:
        return json.loads((models_dir / LITE_MANIFEST).read_text())

    from shared.face.sface import build_sface

    weights = load_sface_weights(models_dir)
    model = build_sface(weights)
    path = ensure_lite_model(models_dir, weights, model)
    converted_from = recorded()["source_content_sha256"]
    damaged = path.read_bytes()[:-64] + bytes(64)  # a bad disk or a partial copy: same size
    path.write_bytes(damaged)
    assert ensure_lite_model(models_dir, weights, model).read_bytes() != damaged
    assert hashlib.sha256(path.read_bytes()).hexdigest() == recorded()["sha256"]
    changed = {**weights, "fc/bias": weights["fc/bias"] + 1.0}  # other arrays: another model
    ensure_lite_model(models_dir, changed, build_sface(changed))
    assert recorded()["source_content_sha256"] != converted_from


def test_encoder_refuses_dlib_chips(encoder) -> None:
    with pytest.raises(ValueError, match="112, 112"):
        encoder.encode(np.zeros((1, 150, 150, 3), np.uint8))


def test_arcface_chip_puts_the_landmarks_on_the_template() -> None:
    image = np.zeros((400, 300, 3), np.uint8)
    scale, angle = 2.3, np.deg2rad(12)
    rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    landmarks = ARCFACE_TEMPLATE @ rotation.T + [60.0, 80.0]
    for x, y in landmarks:
        cv2.circle(image, (round(x), round(y)), 3, (0, 0, 255), -1)
    chip = align_arcface(image, landmarks)
    assert chip.shape == (112, 112, 3)
    for x, y in ARCFACE_TEMPLATE:  # the red dots land on the template, red in RGB
        assert chip[round(y), round(x), 0] > 150 and chip[round(y), round(x), 2] < 50


def test_a_wrong_source_file_is_refused(tmp_path: Path) -> None:
    source = source_path(SFACE_RELPATH, SFACE_SHA256)
    copy = tmp_path / "sface.onnx"
    data = bytearray(source.read_bytes())
    data[-1] ^= 1
    copy.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="SHA-256"):
        verify_file(copy, SFACE_SHA256)


def test_a_damaged_converted_file_is_refused_with_the_remedy(models_dir: Path, tmp_path) -> None:
    damaged = tmp_path / "models"
    shutil.copytree(models_dir, damaged)
    data = bytearray((damaged / SFACE_CONVERTED).read_bytes())
    data[len(data) // 2] ^= 1
    (damaged / SFACE_CONVERTED).write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="models convert sface"):
        load_sface_weights(damaged)
    manifest = json.loads((damaged / SFACE_MANIFEST).read_text())
    assert manifest["source"]["sha256"] == SFACE_SHA256


def test_yunet_finds_each_enrolment_face_with_image_ordered_landmarks(models_dir: Path) -> None:
    from shared.face.detection import create_detector

    if not PEOPLE.is_dir():
        pytest.skip(f"no face data at {PEOPLE}")
    detector = create_detector("yunet", models_dir=models_dir)
    for folder in sorted((PEOPLE / "enroll").iterdir()):
        image = cv2.imread(str(next(iter(sorted(folder.iterdir())))))
        faces = detector.detect(image)
        assert faces, folder.name
        points = faces[0].landmarks
        assert points[0, 0] < points[1, 0] and points[3, 0] < points[4, 0]
        x, y, w, h = faces[0].box
        assert (x <= points[:, 0]).all() and (points[:, 0] <= x + w).all()
        assert points[2, 1] > points[:2, 1].max()  # the nose is below the eyes


def test_a_chip_of_another_kind_is_refused_with_the_reason() -> None:
    check_chip_kind("arcface112", "arcface112")
    with pytest.raises(ProcessingError) as raised:
        check_chip_kind("dlib150", "arcface112")
    assert raised.value.reason == "wrong_chip_kind"
    assert "FACESTREAM_FACE__ENCODER" in raised.value.detail


class _Sface112:
    """Stands in for SFaceEncoder where only its chip kind matters (the chip is refused first)."""

    name = "sface_2021dec"
    chip_kind = "arcface112"

    def encode(self, chips: np.ndarray) -> np.ndarray:
        raise AssertionError("a refused chip must not be encoded")


def test_recognizer_dead_letters_a_frame_of_chips_cut_for_another_encoder(tmp_path: Path) -> None:
    from services.recognizer.worker import RecognizerWorker
    from shared.bus.base import Message
    from shared.face.chips import chip_to_b64
    from shared.face.verification import Calibration
    from shared.gallery.file_store import FileGallery
    from shared.schemas import Box, DetectedFace, FacesMessage, Topics
    from shared.settings import RecognizerSettings

    calibration = Calibration(0.4, -30.0, 12.0, "test", "test", 1.0)
    worker = RecognizerWorker(
        _Sface112(), FileGallery(tmp_path), calibration, RecognizerSettings(min_frames=1)
    )
    face = DetectedFace(
        box=Box(x=0, y=0, w=100, h=100),
        score=0.99,
        track_id=1,
        chip_jpeg_b64=chip_to_b64(np.zeros((150, 150, 3), np.uint8)),
        chip_kind="dlib150",
    )
    frame = FacesMessage(
        camera_id="cam",
        seq=1,
        capture_ts=1.0,
        frame_width=640,
        frame_height=480,
        detector="mtcnn",
        faces=[face],
    )
    message = Message(Topics.FACES, frame.to_bytes(), "cam", frame.headers())
    [result] = worker.process_batch([message])
    assert isinstance(result, ProcessingError) and result.reason == "wrong_chip_kind"


def test_the_detector_sends_the_chip_kind_the_configured_encoder_takes(models_dir: Path) -> None:
    from services.detector.worker import DetectorWorker
    from shared.bus.base import Message
    from shared.face.chip_kinds import chip_kind
    from shared.face.chips import chip_from_b64
    from shared.face.detection import create_detector
    from shared.face.factory import chip_kind_for
    from shared.images import encode_jpeg
    from shared.schemas import FacesMessage, FrameMeta, Topics

    if not PEOPLE.is_dir():
        pytest.skip(f"no face data at {PEOPLE}")
    photo = cv2.imread(str(PEOPLE / "enroll" / "obama" / "obama.jpg"))
    jpeg = encode_jpeg(photo, 95)
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    meta = FrameMeta(
        camera_id="cam", seq=0, capture_ts=1.0, width=image.shape[1], height=image.shape[0]
    )
    detector = create_detector("yunet", models_dir=models_dir)
    for encoder, size in (("sface", 112), ("dlib-resnet", 150)):
        worker = DetectorWorker(detector, 40, chip=chip_kind_for(encoder))
        [[out]] = worker.process_batch([Message(Topics.FRAMES, jpeg, "cam", meta.to_headers())])
        [face] = FacesMessage.model_validate_json(out.value).faces
        assert face.chip_kind == chip_kind_for(encoder)
        chip = chip_from_b64(face.chip_jpeg_b64, chip_kind(face.chip_kind).size)
        assert chip.shape == (size, size, 3)
        if encoder == "sface":  # the sent chip is the pipeline's, up to its JPEG
            points = np.array(face.landmarks, np.float32)
            assert np.abs(chip.astype(int) - align_arcface(image, points)).mean() < 3
