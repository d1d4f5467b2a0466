"""Gatys et al. neural style transfer: gradient descent on the pixels of the generated image G.

Why optimisation rather than a network: this is the method's definition and the reference that a
feed-forward (Johnson et al.) stylizer is trained to imitate; it needs no training, only VGG16, and
is slow (seconds per image), so it serves the offline CLI/API, not live video.

G lives in RGB pixel units [0, 255] and is clipped to that range after every step; VGG16's BGR mean
preprocessing is applied inside the graph, so gradients flow to the pixels. Adam is implemented
here (a few lines, so it is deterministic and has no optimiser-state surprises); L-BFGS uses ``scipy.optimize.minimize(method="L-BFGS-B")`` with box bounds [0, 255].
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, NamedTuple

import cv2
import numpy as np
import tensorflow as tf

from shared.style import costs
from shared.style.vgg import CONV_LAYERS, FeatureExtractor, feature_extractor

DEFAULT_STYLE_LAYERS: dict[str, float] = {
    "block1_conv1": 0.2,
    "block2_conv1": 0.2,
    "block3_conv1": 0.2,
    "block4_conv1": 0.2,
    "block5_conv1": 0.2,
}
"""Gatys et al.'s style layers (conv1_1 .. conv5_1) with equal weights lambda_l = 1/5: shallow
layers carry colour and fine texture, deep ones larger motifs."""

DEFAULT_CONTENT_LAYER = "block4_conv2"
"""Gatys et al.'s content layer (conv4_2): deep enough to keep objects and layout but not their
exact pixels, so the style can repaint them."""


@dataclass
class GatysConfig:
    """Options of one stylization; layers follow Gatys et al., weights were tuned by eye (docs/style.md)."""

    size: int = 256
    """Longest side of G in pixels; the content image and the painting (its own proportions) are
    resized to it."""
    iterations: int = 200
    optimizer: Literal["adam", "lbfgs"] = "adam"
    learning_rate: float = 4.0
    """Adam step in pixel units (of 255)."""
    alpha: float = 1e5
    """Content weight. Large because J_content carries 1/(4 n_H n_W n_C) (~1/1.6e6 at block4_conv2
    for a 256 px image): alpha/beta = 2500 keeps buildings recognisable (docs/style.md); the
    course's alpha=10, beta=40 lets the style wipe out the content unless G starts from C."""
    beta: float = 40.0
    tv_weight: float = 0.0
    style_layers: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_STYLE_LAYERS))
    content_layer: str = DEFAULT_CONTENT_LAYER
    init: Literal["content", "noise"] = "content"
    """``content``: G starts as C; ``noise``: G = (1 - noise_ratio) C + noise_ratio U(0, 255)."""
    noise_ratio: float = 0.6
    """1.0 is Gatys' pure white-noise start."""
    seed: int = 0

    def __post_init__(self) -> None:
        if self.size < 32:
            raise ValueError("size must be at least 32 px (VGG16 pools the image 4 times)")
        if self.iterations < 0:
            raise ValueError("iterations must be >= 0")
        if self.optimizer not in ("adam", "lbfgs"):
            raise ValueError(f"optimizer must be 'adam' or 'lbfgs', not {self.optimizer!r}")
        if self.init not in ("content", "noise"):
            raise ValueError(f"init must be 'content' or 'noise', not {self.init!r}")
        if not 0.0 <= self.noise_ratio <= 1.0:
            raise ValueError("noise_ratio must be in [0, 1]")
        unknown = [n for n in [*self.style_layers, self.content_layer] if n not in CONV_LAYERS]
        if unknown:
            raise ValueError(f"unknown VGG16 layers {unknown}; choose from {CONV_LAYERS}")
        if not self.style_layers:
            raise ValueError("at least one style layer is needed")


class CostRecord(NamedTuple):
    """The costs of G at one step (before that step's update)."""

    step: int
    total: float
    content: float
    style: float
    tv: float


class StyleResult(NamedTuple):
    """``image``: RGB uint8 at the working size; ``history``: one record per step, plus the final G."""

    image: np.ndarray
    history: list[CostRecord]


Progress = Callable[[CostRecord], None]
ValueAndGrad = Callable[[tf.Tensor], tuple[tuple[tf.Tensor, ...], tf.Tensor]]
"""G -> ((J, J_content, J_style, TV), dJ/dG)."""
Recorder = Callable[[int, tuple[tf.Tensor, ...]], None]


def resize_longest(rgb: np.ndarray, size: int) -> np.ndarray:
    """Resize so the longest side is ``size`` (area filter when shrinking)."""
    height, width = rgb.shape[:2]
    scale = size / max(height, width)
    shape = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    return cv2.resize(rgb, shape, interpolation=interpolation)


def _check_image(name: str, rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"{name} must be an (H, W, 3) RGB image, got shape {rgb.shape}")
    return rgb


def initial_image(content: np.ndarray, config: GatysConfig) -> np.ndarray:
    """G0 as float32 (H, W, 3) in [0, 255], reproducible from ``config.seed``."""
    content = content.astype(np.float32)
    if config.init == "content":
        return content.copy()
    noise = np.random.default_rng(config.seed).uniform(0.0, 255.0, content.shape)
    mixed = (1.0 - config.noise_ratio) * content + config.noise_ratio * noise.astype(np.float32)
    return np.clip(mixed, 0.0, 255.0).astype(np.float32)


def stylize(
    content_rgb: np.ndarray,
    style_rgb: np.ndarray,
    config: GatysConfig | None = None,
    progress: Progress | None = None,
    *,
    extractor: FeatureExtractor | None = None,
    models_dir: Path | None = None,
) -> StyleResult:
    """Paint ``content_rgb`` in the style of ``style_rgb`` by minimising J(G) over G's pixels.

    Both inputs are RGB uint8 (H, W, 3). ``extractor`` lets a caller reuse one VGG16 across calls
    (it must expose the content and style layers); otherwise one is built from the checked weights
    in ``models_dir`` (the project's models dir by default), raising ``StyleModelError`` when they
    are missing or wrong.
    """
    config = config or GatysConfig()
    content = resize_longest(_check_image("content_rgb", content_rgb), config.size)
    style = resize_longest(_check_image("style_rgb", style_rgb), config.size)
    layers = [config.content_layer, *config.style_layers]
    if extractor is None:
        extractor = feature_extractor(layers, models_dir)
    missing = [name for name in layers if name not in extractor.layers]
    if missing:
        raise ValueError(f"the extractor does not expose layers {missing}")

    of_content = extractor(tf.constant(content[None].astype(np.float32)))
    a_C = of_content[config.content_layer]  # noqa: N806
    a_S = costs.per_position(  # noqa: N806
        extractor(tf.constant(style[None].astype(np.float32))),
        of_content,
        list(config.style_layers),
    )
    weights = dict(config.style_layers)

    def costs_of(image: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
        a_G = extractor(image)  # noqa: N806
        j_content = costs.content_cost(a_C, a_G[config.content_layer])
        j_style = costs.style_cost(a_S, a_G, weights)
        tv = costs.total_variation(image)
        total = costs.total_cost(
            j_content, j_style, config.alpha, config.beta, tv, config.tv_weight
        )
        return total, j_content, j_style, tv

    @tf.function(reduce_retracing=True)
    def value_and_grad(image: tf.Tensor) -> tuple[tuple[tf.Tensor, ...], tf.Tensor]:
        with tf.GradientTape() as tape:
            tape.watch(image)
            values = costs_of(image)
        return values, tape.gradient(values[0], image)

    start = initial_image(content, config)[None]
    history: list[CostRecord] = []

    def record(step: int, values: tuple[tf.Tensor, ...]) -> None:
        entry = CostRecord(step, *(float(v) for v in values))
        history.append(entry)
        if progress is not None:
            progress(entry)

    if config.optimizer == "adam":
        final = _adam(start, value_and_grad, config, record)
    else:
        final = _lbfgs(start, value_and_grad, config, record)
    values, _ = value_and_grad(tf.constant(final))
    record(len(history), values)
    image = np.clip(np.rint(final[0]), 0, 255).astype(np.uint8)
    return StyleResult(image, history)


def _adam(
    start: np.ndarray, value_and_grad: ValueAndGrad, config: GatysConfig, record: Recorder
) -> np.ndarray:
    """Plain Adam (beta1 0.9, beta2 0.999, eps 1e-8) with a projection onto [0, 255] per step."""
    image = tf.Variable(start)
    m = tf.zeros_like(start)
    v = tf.zeros_like(start)
    lr, beta1, beta2, eps = config.learning_rate, 0.9, 0.999, 1e-8
    for step in range(config.iterations):
        values, grad = value_and_grad(tf.convert_to_tensor(image))
        record(step, values)
        m = beta1 * m + (1 - beta1) * grad
        v = beta2 * v + (1 - beta2) * tf.square(grad)
        m_hat = m / (1 - beta1 ** (step + 1))
        v_hat = v / (1 - beta2 ** (step + 1))
        image.assign(tf.clip_by_value(image - lr * m_hat / (tf.sqrt(v_hat) + eps), 0.0, 255.0))
    return image.numpy()


def _lbfgs(
    start: np.ndarray, value_and_grad: ValueAndGrad, config: GatysConfig, record: Recorder
) -> np.ndarray:
    """SciPy's L-BFGS-B with bounds [0, 255]; ``iterations`` caps the cost evaluations."""
    from scipy.optimize import Bounds, minimize

    shape = start.shape
    step = 0

    def fun(flat: np.ndarray) -> tuple[float, np.ndarray]:
        nonlocal step
        values, grad = value_and_grad(tf.constant(flat.reshape(shape).astype(np.float32)))
        record(step, values)
        step += 1
        return float(values[0]), grad.numpy().astype(np.float64).ravel()

    if config.iterations == 0:
        return start
    result = minimize(
        fun,
        start.astype(np.float64).ravel(),
        jac=True,
        method="L-BFGS-B",
        bounds=Bounds(0.0, 255.0),
        options={"maxfun": config.iterations, "maxiter": config.iterations},
    )
    return result.x.reshape(shape).astype(np.float32)
