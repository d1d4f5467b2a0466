"""Any painting as a style: the rebuilt arbitrary-style networks against onnxruntime, and their files.

The TensorFlow rebuild (shared/style/onnx_graph.py) emulates the graphs' int8 activation steps;
float32 sums in another order flip an occasional rounding step, and flips compound through ~200
quantizers, so the transformer agrees with onnxruntime to a few grey levels on average, not to
the bit (docs/style.md has the figures). The bounds below are well under what a change of
painting, or any mistake in a layer, does to the output (checked in the same tests).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf

from shared.style.arbitrary import ArbitraryStylizer, style_input
from shared.style.arbitrary_files import (
    FILES,
    PREDICT_FILE,
    TRANSFORM_FILE,
    ArbitraryModelError,
    model_path,
)
from shared.style.onnx_graph import OnnxGraph, OnnxGraphError
from shared.style.paintings import content_hash

pytestmark = pytest.mark.data


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def stylizer() -> ArbitraryStylizer:
    return ArbitraryStylizer()


@pytest.fixture(scope="module")
def sessions():
    ort = pytest.importorskip("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return {
        name: ort.InferenceSession(str(model_path(name)), options)
        for name in (PREDICT_FILE, TRANSFORM_FILE)
    }


def ort_vector(sessions, painting: np.ndarray) -> np.ndarray:
    session = sessions[PREDICT_FILE]
    return session.run(None, {session.get_inputs()[0].name: style_input(painting)[None]})[0]


def ort_paint(sessions, content: np.ndarray, vector: np.ndarray) -> np.ndarray:
    session = sessions[TRANSFORM_FILE]
    names = [i.name for i in session.get_inputs()]
    return session.run(None, {names[0]: content, names[1]: vector})[0]


def square(rgb: np.ndarray, side: int = 384) -> np.ndarray:
    """(1, side, side, 3) float32 in [0, 1]: the ONNX transformer's fixed input."""
    resized = cv2.resize(rgb, (side, side), interpolation=cv2.INTER_AREA)
    return resized[None].astype(np.float32) / 255.0


def test_the_style_bottleneck_matches_onnxruntime(
    stylizer: ArbitraryStylizer, sessions, shared_data: Path
) -> None:
    paintings = shared_data / "style" / "paintings"
    vectors = {}
    for name in ("starry_night", "great_wave", "the_scream"):
        painting = read_rgb(paintings / f"{name}.jpg")
        ours, reference = stylizer.style_vector(painting), ort_vector(sessions, painting).ravel()
        # One output quantization step is ~0.02: at most two steps apart, most numbers equal.
        difference = np.abs(ours - reference)
        assert difference.max() <= 0.041 and np.mean(difference < 1e-6) > 0.5, name
        vectors[name] = ours
    # Different paintings are far apart in the bottleneck, so the bound above is a real check.
    assert np.abs(vectors["starry_night"] - vectors["great_wave"]).mean() > 0.2


def test_the_transformer_matches_onnxruntime(
    stylizer: ArbitraryStylizer, sessions, shared_data: Path
) -> None:
    content = square(read_rgb(shared_data / "style" / "content" / "tubingen.jpg"))
    paintings = shared_data / "style" / "paintings"
    starry = ort_vector(sessions, read_rgb(paintings / "starry_night.jpg"))
    wave = ort_vector(sessions, read_rgb(paintings / "great_wave.jpg"))
    reference = ort_paint(sessions, content, starry)
    ours = stylizer.transformer(tf.constant(content), tf.constant(starry)).numpy()
    difference = np.abs(ours - reference)
    assert difference.mean() < 0.04  # measured 0.026: ~7 grey levels of 255
    assert np.percentile(difference, 50) < 0.03  # measured 0.023
    other = np.abs(ort_paint(sessions, content, wave) - reference).mean()
    assert other > 3 * difference.mean()  # another painting moves the output much further
    assert np.abs(reference - content).mean() > 0.1  # and the output is repainted, not the photo


def test_frames_of_any_size_keep_their_size_and_change_with_the_painting(
    stylizer: ArbitraryStylizer, shared_data: Path
) -> None:
    frame = cv2.resize(read_rgb(shared_data / "style" / "content" / "golden_gate.jpg"), (330, 187))
    paintings = shared_data / "style" / "paintings"
    starry = stylizer.style_vector(read_rgb(paintings / "starry_night.jpg"))
    wave = stylizer.style_vector(read_rgb(paintings / "great_wave.jpg"))
    painted = stylizer.stylize_batch(np.stack([frame, frame]), starry)
    assert painted.shape == (2, 187, 330, 3) and painted.dtype == np.uint8
    assert np.array_equal(painted[0], painted[1])
    other = stylizer.stylize(frame, wave)
    assert np.abs(other.astype(int) - painted[0]).mean() > 10
    # strength 0 paints with the photo's own bottleneck: closer to the photo than strength 1.
    faint = stylizer.stylize(frame, starry, strength=0.0)
    assert np.abs(faint.astype(int) - frame).mean() < np.abs(painted[0].astype(int) - frame).mean()
    with pytest.raises(ValueError, match="strength"):
        stylizer.stylize(frame, starry, strength=1.5)


def test_a_damaged_model_file_is_refused(tmp_path: Path) -> None:
    data = bytearray(model_path(PREDICT_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (tmp_path / PREDICT_FILE).write_bytes(bytes(data))
    with pytest.raises(ArbitraryModelError, match="SHA-256"):
        model_path(PREDICT_FILE, tmp_path)
    with pytest.raises(ArbitraryModelError, match="not found"):
        model_path(TRANSFORM_FILE, tmp_path)
    assert set(FILES) == {PREDICT_FILE, TRANSFORM_FILE}


def test_an_op_the_rebuild_does_not_know_is_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("Softmax", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    path = tmp_path / "softmax.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(OnnxGraphError, match="Softmax"):
        OnnxGraph(path)


def test_a_paintings_key_is_its_content_hash() -> None:
    assert content_hash(b"abc") == content_hash(b"abc") != content_hash(b"abd")
