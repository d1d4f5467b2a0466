"""Training the style networks on an accelerator: the same network, cost and data in JAX.

Why: a step of ``training.style.training`` takes ~3.2 s on a 2-core CPU, so every network shipped
before 2026-12-04 had seen 2,800 steps of 4 crops, a tenth of Johnson et al.'s 40,000 steps of 4.
When a GPU machine is lent for a few minutes (it has JAX and no TensorFlow), this module trains
several networks there at once, then hands their weights back in the project's ``.npz`` layout;
``facestream style-accelerated finish`` gives them their cards here, and they are kept only if the
dev frames say so (``bench.style_dev``), as every network is.

Nothing here imports TensorFlow, which the GPU machine lacks (``shared.style.vgg``, whose layer
names and mean it takes, needs only numpy). The network (``shared.style.fast.build_network``),
VGG16's preprocessing and layers and Gatys' J (``shared.style.costs``, averaged over a batch as
``training.style.training`` does) are written again in ``jax.numpy``, in TensorFlow's NHWC/HWIO
layouts so that the weights move without a transpose. ``tests/test_style_accelerated.py`` checks
that both give the same painted image and the same J on the same batch, so the two cannot drift
apart.

Differences from the CPU recipe, none in J:

- the content images travel as one bundle (``prepare_bundle``): squares of ``POOL_SIDE`` px (800
  LFW faces, the street-crowd frames as three squares each, and the landscape training photos as
  up to three squares each, after the others), JPEG-compressed to fit a device call; a job's
  ``landscape_share`` of its crops comes from the landscape squares, as ``--landscape-share``
  does on the CPU (by photo there, by square here); each square's face mask (``LFW_FACE_BOX`` on
  the LFW squares, none elsewhere) travels beside it as a PNG and rides through the crops as a
  fourth channel, for a job's ``face_weight``;
- with a job's ``edge_weight``, every crop is cut ``RunConfig.edge_margin`` px wider on each side
  (the pool square shrunk to ``crop`` + 2 margin .. ``POOL_SIDE``; the CPU clips its scale there);
- crops are cut on the accelerator (``jax.image.scale_and_translate``, antialiased): a random
  square of the pool image shrunk to a side of ``crop`` .. ``POOL_SIDE``, as the CPU recipe shrinks
  the short side to ``crop`` .. 1.5 ``crop``, and mirrored half the time;
- several networks (a painting each, or one painting under different weights) train in one
  program, each on its own crops, each with its own Adam (Keras' update, epsilon 1e-7);
- a run is bounded by time, not steps, and its learning rates fall over its second half
  (``RunConfig.decay_from``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from shared.model_cache import npz_bytes, sha256_file, write_atomically
from shared.style.vgg import CAFFE_BGR_MEAN, CONV_LAYERS
from training.style.crops import crop_weights, ring_weights
from training.style.deepening import residual_blocks_in, with_identity_blocks

POOL_SIDE = 288
"""Side of the stored content squares: 1.5 x the 192 px crop, the CPU recipe's largest scale."""

VGG_LAYERS = CONV_LAYERS[: CONV_LAYERS.index("block5_conv1") + 1]
"""VGG16's convolutions up to Gatys' deepest style layer: all that J needs."""

STYLE_LAYERS = {f"block{i}_conv1": 0.2 for i in range(1, 6)}
"""``shared.style.gatys.DEFAULT_STYLE_LAYERS`` (that module imports TensorFlow)."""
DOWNSAMPLINGS = 3


@dataclass(frozen=True)
class Job:
    """One network to train: where it starts and the weights of its J."""

    name: str
    painting: str
    """A key of the bundle's paintings (the file's stem)."""
    start: str
    """The network (``NETWORKS_DIR/START.npz``) to continue from: networks learn to keep the
    content first, on the CPU recipe's block2_conv2 phase (docs/style.md)."""
    alpha: float = 2e5
    beta: float = 40.0
    tv_weight: float = 50.0
    learning_rate: float = 1e-3
    residual_blocks: int | None = None
    """More than the start network's grow it, each new block the identity (``deepening``); None
    keeps the start's. The jobs of one run are one batch, so their networks must agree."""
    landscape_share: float = 0.0
    """The share of this job's crops cut from the bundle's landscape squares; 0 leaves them out."""
    face_weight: float = 0.0
    """``TrainingConfig.face_weight``: J gains ``alpha * face_weight * J_face``."""
    edge_weight: float = 0.0
    """``TrainingConfig.edge_weight``: J gains ``edge_weight * edge`` (``edge_cost``)."""


# --- the bundle: everything the accelerator needs, made here, read there ------------------------


def prepare_bundle(
    shared_data: Path,
    vgg_weights: Mapping[str, np.ndarray],
    paintings: Sequence[Path],
    output: Path,
    lfw_images: int = 800,
    seed: int = 0,
    style_side: int = 256,
    quality: int = 88,
    landscapes: Sequence[np.ndarray] = (),
) -> dict[str, int]:
    """Write ``output`` (an ``.npz``): VGG16's layers in float16, each painting at ``style_side``
    (``training.style.training.painting_at``, as ``PerceptualLoss`` sees it), the content
    squares as JPEG, ``landscapes``' squares last (``content/landscapes`` counts them), and each
    square's face mask as PNG (``content/face_png``). Returns counts for the log."""
    import cv2

    from training.style.training import content_images, painting_at, with_face_channel

    arrays: dict[str, np.ndarray] = {}
    for name in VGG_LAYERS:
        arrays[f"vgg/{name}/kernel"] = np.asarray(vgg_weights[f"{name}/kernel"], np.float16)
        arrays[f"vgg/{name}/bias"] = np.asarray(vgg_weights[f"{name}/bias"], np.float16)
    for path in paintings:
        arrays[f"painting/{path.stem}"] = painting_at(path, style_side)

    def encoded(images: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """(JPEG of the RGB, PNG of the face channel) per pool square of RGB + face images."""
        options = [cv2.IMWRITE_JPEG_QUALITY, quality]
        pairs = []
        for image in images:
            for square in pool_squares(image):
                rgb = cv2.cvtColor(square[..., :3], cv2.COLOR_RGB2BGR)
                face = np.ascontiguousarray(square[..., 3])
                pairs.append(
                    (
                        cv2.imencode(".jpg", rgb, options)[1].ravel(),
                        cv2.imencode(".png", face)[1].ravel(),
                    )
                )
        return pairs

    content = encoded(content_images(shared_data, lfw_images, seed, face_channel=True))
    landscape = encoded([with_face_channel(image, None) for image in landscapes])
    for index, (key, ends_key) in enumerate(_ENCODED):
        pieces = [square[index] for square in content + landscape]
        arrays[key] = np.concatenate(pieces)
        arrays[ends_key] = np.cumsum([len(p) for p in pieces]).astype(np.int64)
    arrays["content/landscapes"] = np.asarray([len(landscape)], np.int64)
    write_atomically(output, npz_bytes(arrays))
    return {
        "content_squares": len(content),
        "landscape_squares": len(landscape),
        "bytes": output.stat().st_size,
    }


_ENCODED = (("content/jpeg", "content/ends"), ("content/face_png", "content/face_ends"))
"""The bundle's (bytes, ends) keys: the squares' RGB as JPEG, their face masks as PNG."""


def pool_squares(image: np.ndarray) -> list[np.ndarray]:
    """``POOL_SIDE`` squares covering an RGB image: its short side shrunk (or grown) to
    ``POOL_SIDE``, then squares at the start, middle and end of the long side (one if square)."""
    import cv2

    height, width = image.shape[:2]
    scale = POOL_SIDE / min(height, width)
    size = (max(POOL_SIDE, round(width * scale)), max(POOL_SIDE, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(image, size, interpolation=interpolation)
    long_side = max(resized.shape[:2]) - POOL_SIDE
    starts = (
        sorted({0, long_side // 2, long_side}) if long_side > POOL_SIDE // 4 else [long_side // 2]
    )
    if resized.shape[0] >= resized.shape[1]:
        return [resized[s : s + POOL_SIDE, :POOL_SIDE] for s in starts]
    return [resized[:POOL_SIDE, s : s + POOL_SIDE] for s in starts]


def read_bundle(
    path: Path,
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray, int]:
    """(VGG16 weights as float32, paintings, content squares (N, POOL_SIDE, POOL_SIDE, 4) uint8
    with the face mask as the fourth channel (3 channels in a bundle made before masks were), how
    many of the last squares are landscapes (0 in a bundle made before they were))."""
    import cv2

    with np.load(path, allow_pickle=False) as archive:
        data = {key: archive[key] for key in archive.files}
    vgg = {k[4:]: v.astype(np.float32) for k, v in data.items() if k.startswith("vgg/")}
    paintings = {k[9:]: v for k, v in data.items() if k.startswith("painting/")}
    (jpeg, jpeg_ends), (png, png_ends) = _ENCODED

    def decoded(key: str, ends_key: str, flag: int) -> list[np.ndarray]:
        ends = data[ends_key]
        starts = np.concatenate([[0], ends[:-1]])
        return [cv2.imdecode(data[key][s:e], flag) for s, e in zip(starts, ends, strict=True)]

    squares = np.stack([image[..., ::-1] for image in decoded(jpeg, jpeg_ends, cv2.IMREAD_COLOR)])
    if png in data:
        masks = decoded(png, png_ends, cv2.IMREAD_GRAYSCALE)
        squares = np.concatenate([squares, np.stack(masks)[..., None]], axis=-1)
    landscapes = int(data["content/landscapes"][0]) if "content/landscapes" in data else 0
    return vgg, paintings, squares, landscapes


# --- the network and J in jax.numpy -------------------------------------------------------------


def _conv(x, kernel, stride: int, reflect: bool):
    """``shared.style.fast._conv``: "same" output size; a reflected margin or zeros."""
    import jax

    if reflect:
        total = kernel.shape[0] - stride
        edges = (total // 2, total - total // 2)
        x = jax.numpy.pad(x, ((0, 0), edges, edges, (0, 0)), mode="reflect")
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        (stride, stride),
        "VALID" if reflect else "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


def _instance_norm(x, scale, offset):
    """``shared.style.fast.InstanceNormalization`` for a batch: each image's own moments."""
    import jax
    import jax.numpy as jnp

    mean = jnp.mean(x, axis=(1, 2), keepdims=True)
    variance = jnp.mean(jnp.square(x - mean), axis=(1, 2), keepdims=True)
    gain = scale * jax.lax.rsqrt(variance + 1e-5)
    return x * gain + (offset - mean * gain)


def _conv_norm(params, x, name: str, stride: int, reflect: bool, relu: bool = True):
    import jax

    x = _conv(x, params[f"{name}_conv/kernel"], stride, reflect)
    x = _instance_norm(x, params[f"{name}_norm/scale"], params[f"{name}_norm/offset"])
    return jax.nn.relu(x) if relu else x


def stylize(params: Mapping, rgb, reflect: bool = True):
    """``shared.style.fast.build_network``'s forward pass: (B, H, W, 3) in [0, 255], H and W
    multiples of 8 -> painted (B, H, W, 3) in [0, 255]; as many residual blocks as ``params``
    hold."""
    import jax
    import jax.numpy as jnp

    x = rgb / 127.5 - 1.0
    x = _conv_norm(params, x, "in", 1, reflect)
    for level in range(1, DOWNSAMPLINGS + 1):
        x = _conv_norm(params, x, f"down{level}", 2, reflect)
    for block in range(residual_blocks_in(params)):
        y = _conv_norm(params, x, f"res{block}a", 1, reflect)
        x = x + _conv_norm(params, y, f"res{block}b", 1, reflect, relu=False)
    for level in range(DOWNSAMPLINGS - 1, -1, -1):
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        x = _conv_norm(params, x, f"up{level}", 1, reflect and level > 0)
    x = _conv(x, params["out_conv/kernel"], 1, False) + params["out_conv/bias"]
    return jax.numpy.tanh(x) * 127.5 + 127.5


def vgg_features(vgg: Mapping, rgb, layers: Sequence[str]) -> dict:
    """``shared.style.vgg.FeatureExtractor``: ReLU activations of ``layers`` for RGB in [0, 255]."""
    import jax

    x = rgb[..., ::-1] - CAFFE_BGR_MEAN
    deepest = max(VGG_LAYERS.index(name) for name in layers)
    found = {}
    for index, name in enumerate(VGG_LAYERS[: deepest + 1]):
        if index and name.endswith("conv1"):
            x = jax.lax.reduce_window(
                x, -jax.numpy.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID"
            )
        x = jax.nn.relu(_conv(x, vgg[f"{name}/kernel"], 1, False) + vgg[f"{name}/bias"])
        if name in layers:
            found[name] = x
    return found


def gram(activation):
    """Per image: (B, h, w, c) -> (B, c, c), sums over positions (``costs.gram_matrix``)."""
    import jax.numpy as jnp

    return jnp.einsum("bhwc,bhwd->bcd", activation, activation)


def style_grams(vgg: Mapping, painting: np.ndarray, crop: int, layers: Sequence[str]) -> dict:
    """The painting's Gram matrices counted at a crop's positions (``costs.per_position``)."""
    import jax.numpy as jnp

    features = vgg_features(vgg, jnp.asarray(painting[None], jnp.float32), layers)
    crop_like = vgg_features(vgg, jnp.zeros((1, crop, crop, 3)), layers)
    grams = {}
    for name in layers:
        positions_s = features[name].shape[1] * features[name].shape[2]
        positions_g = crop_like[name].shape[1] * crop_like[name].shape[2]
        grams[name] = gram(features[name])[0] * (positions_g / positions_s)
    return grams


def perceptual_loss(
    vgg,
    content,
    generated,
    grams,
    alpha,
    beta,
    tv_weight,
    content_layer,
    style_layers,
    face=None,
    face_weight=0.0,
):
    """Batch means of (J, J_content, J_style, TV) and J_face (0 without ``face``):
    ``training.style.training.PerceptualLoss``, ``face_content_cost`` included."""
    import jax.numpy as jnp

    a_C = vgg_features(vgg, content, [content_layer])[content_layer]  # noqa: N806
    a_G = vgg_features(vgg, generated, [content_layer, *style_layers])  # noqa: N806
    _, h, w, c = a_G[content_layer].shape
    j_content = jnp.sum(jnp.square(a_C - a_G[content_layer]), axis=(1, 2, 3)) / (4.0 * h * w * c)
    j_style = 0.0
    for name, weight in style_layers.items():
        _, h, w, c = a_G[name].shape
        difference = grams[name][None] - gram(a_G[name])
        j_style = j_style + weight * jnp.sum(jnp.square(difference), axis=(1, 2)) / float(
            (2 * h * w * c) ** 2
        )
    tv = jnp.sum(jnp.abs(generated[:, 1:] - generated[:, :-1]), axis=(1, 2, 3)) + jnp.sum(
        jnp.abs(generated[:, :, 1:] - generated[:, :, :-1]), axis=(1, 2, 3)
    )
    total = alpha * j_content + beta * j_style + tv_weight * tv
    means = [jnp.mean(v) for v in (total, j_content, j_style, tv)]
    j_face = 0.0 if face is None else face_cost(a_C, a_G[content_layer], face)
    return (means[0] + alpha * face_weight * j_face, *means[1:], jnp.asarray(j_face))


def face_cost(a_C, a_G, face):  # noqa: N803
    """``training.style.training.face_content_cost``: the face mask (B, H, W, 1, in [0, 1]) area-
    averaged to the layer's grid (H a multiple of it, as VGG's pools make it), J_content over it."""
    import jax.numpy as jnp

    b, h, w, _ = a_G.shape
    factor = face.shape[1] // h
    if face.shape[1] != h * factor or face.shape[2] != w * factor:
        raise ValueError(f"a {face.shape[1:3]} mask does not tile the {(h, w)} grid")
    weights = face.reshape(b, h, factor, w, factor, 1).mean(axis=(2, 4))
    squared = jnp.mean(jnp.square(a_C - a_G), axis=-1, keepdims=True)
    return jnp.sum(weights * squared) / (4.0 * jnp.maximum(jnp.sum(weights), 1e-6))


# --- training --------------------------------------------------------------------------------------


@dataclass
class RunConfig:
    """How one device call trains its jobs (the same for all of them)."""

    crop: int = 192
    batch_size: int = 4
    seconds: float = 300.0
    """Wall-clock training budget (a device call is bounded): steps are counted, not fixed."""
    checkpoints: int = 2
    """Checkpoints at equal fractions of ``seconds``; the dev frames choose between them."""
    content_layer: str = "block4_conv2"
    seed: int = 0
    decay_from: float = 0.5
    """Fraction of ``seconds`` after which every learning rate falls linearly, to ``decay_to``
    times itself at the end: the last steps settle instead of wandering with Adam's noise."""
    decay_to: float = 0.1
    log_every: int = 100
    """Steps between a log line and a look at the clock (each waits for the accelerator)."""
    edge_ring: int = 16
    """``TrainingConfig.edge_ring``, for the jobs with an ``edge_weight``."""
    edge_margin: int = 24
    """``TrainingConfig.edge_margin``; crops are this much wider only when a job has an
    ``edge_weight`` (the jobs of a run are one batch, so they share the crops' size)."""


def random_crops(key, pool, count: int, crop: int, probabilities=None, margin: int = 0):
    """``count`` antialiased crops: a pool square (drawn by ``probabilities``, uniform if None)
    shrunk to ``crop`` + 2 ``margin`` .. ``POOL_SIDE``, a random square of ``crop`` + 2 ``margin``
    of that, mirrored half the time; every channel of the pool (a face mask too) is cut alike."""
    import jax
    import jax.numpy as jnp

    k_index, k_scale, k_top, k_left, k_flip = jax.random.split(key, 5)
    if probabilities is None:
        index = jax.random.randint(k_index, (count,), 0, pool.shape[0])
    else:
        index = jax.random.choice(k_index, pool.shape[0], (count,), p=probabilities)
    wide = crop + 2 * margin
    side = jax.random.uniform(k_scale, (count,), minval=wide, maxval=POOL_SIDE)
    top = jax.random.uniform(k_top, (count,)) * (side - wide)
    left = jax.random.uniform(k_left, (count,)) * (side - wide)
    flip = jax.random.bernoulli(k_flip, 0.5, (count,))

    def one(image_index, image_side, crop_top, crop_left, mirrored):
        image = pool[image_index].astype(jnp.float32)
        scale = jnp.stack([image_side / POOL_SIDE, image_side / POOL_SIDE])
        shift = jnp.stack([-crop_top, -crop_left])
        cropped = jax.image.scale_and_translate(
            image, (wide, wide, image.shape[-1]), (0, 1), scale, shift, "linear", antialias=True
        )
        return jnp.where(mirrored, cropped[:, ::-1], cropped)

    return jax.vmap(one)(index, side, top, left, flip)


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key].astype(np.float32) for key in archive.files}


def grown_start(path: Path, residual_blocks: int | None, seed: int) -> dict[str, np.ndarray]:
    """A job's start network, grown to ``residual_blocks`` (None: as it is)."""
    start = load_npz(path)
    return with_identity_blocks(start, residual_blocks or residual_blocks_in(start), seed)


def train_jobs(
    jobs: Sequence[Job],
    bundle: Path,
    networks_dir: Path,
    output_dir: Path,
    config: RunConfig,
    log=print,
) -> list[dict]:
    """Train every job at once for ``config.seconds``; write ``checkpoint-K-G.npz`` at each
    checkpoint (``save_checkpoint``) and ``run.json`` (jobs, config, device, loss curve, and each
    start network's SHA-256, which ``finish`` checks before it writes a card)."""
    import jax
    import jax.numpy as jnp

    started = time.perf_counter()
    start_paths = {job.start: networks_dir / f"{job.start}.npz" for job in jobs}
    starts = [grown_start(start_paths[job.start], job.residual_blocks, config.seed) for job in jobs]
    if len({frozenset(start) for start in starts}) > 1:
        raise ValueError("the jobs of one run train as one batch: give them one residual_blocks")
    vgg_np, paintings, pool_np, landscapes = read_bundle(bundle)
    log(f"bundle read: {pool_np.shape[0]} squares ({landscapes} landscapes), {jax.devices()}")
    probabilities = jnp.asarray(
        np.stack([square_weights(job, pool_np.shape[0], landscapes) for job in jobs])
    )
    if pool_np.shape[-1] < 4 and any(job.face_weight > 0 for job in jobs):
        raise ValueError("a job has a face_weight; the bundle has no face masks (make it again)")
    margin = config.edge_margin if any(job.edge_weight > 0 for job in jobs) else 0
    if margin % 8 or (margin and margin <= config.edge_ring):
        raise ValueError(f"edge_margin {margin} must be a multiple of 8 wider than the ring")
    vgg = {k: jnp.asarray(v) for k, v in vgg_np.items()}
    pool = jnp.asarray(pool_np)
    params = {k: jnp.stack([s[k] for s in starts]) for k in starts[0]}
    grams = [style_grams(vgg, paintings[job.painting], config.crop, STYLE_LAYERS) for job in jobs]
    grams = {name: jnp.stack([g[name] for g in grams]) for name in STYLE_LAYERS}
    weights = {
        field: jnp.asarray([getattr(job, field) for job in jobs], jnp.float32)
        for field in ("alpha", "beta", "tv_weight", "face_weight", "edge_weight", "learning_rate")
    }
    step = make_step(vgg, pool, probabilities, config, margin)
    moments = (jax.tree.map(jnp.zeros_like, params), jax.tree.map(jnp.zeros_like, params))
    key = jax.random.PRNGKey(config.seed)
    curve: list[list[float]] = []
    records: list[dict] = []
    boundaries = [config.seconds * (k + 1) / config.checkpoints for k in range(config.checkpoints)]
    count, elapsed, train_started = 0, 0.0, 0.0
    while boundaries:
        key, sub = jax.random.split(key)
        rates = weights["learning_rate"] * learning_rate_scale(elapsed / config.seconds, config)
        params, moments, values = step(
            params, moments, count + 1, sub, grams, {**weights, "learning_rate": rates}
        )
        count += 1
        if count == 1:  # the first step compiles; the budget counts from its end
            values[0].block_until_ready()
            train_started = time.perf_counter()
            log(f"compiled in {train_started - started:.1f} s")
        elapsed = time.perf_counter() - train_started
        if count % config.log_every:
            continue
        curve.append([count, *np.asarray(jnp.stack(values)).T.tolist()])
        log(f"step {count} {elapsed:.1f} s J {np.asarray(values[0]).round(-3).tolist()}")
        if elapsed >= boundaries[0]:
            boundaries.pop(0)
            index = config.checkpoints - len(boundaries)
            save_checkpoint(output_dir, f"checkpoint-{index}", jobs, params)
            records.append({"checkpoint": index, "steps": count, "seconds": round(elapsed, 1)})
    summary = {
        "jobs": [asdict(job) for job in jobs],
        "config": asdict(config),
        "devices": [f"{d.device_kind} ({d})" for d in jax.devices()],
        "checkpoints": records,
        "curve": curve,
        "content_squares": int(pool_np.shape[0]) - landscapes,
        "landscape_squares": landscapes,
        "start_sha256": {name: sha256_file(path) for name, path in start_paths.items()},
    }
    (output_dir / "run.json").write_text(json.dumps(summary))
    return records


def edge_cost(painted, painted_wider, ring):
    """``training.style.training.edge_difference``: the mean squared difference over ``ring``'s
    pixels, the batch and the channels, between a crop painted alone and inside its wider view."""
    import jax.numpy as jnp

    return jnp.sum(ring * jnp.mean(jnp.square(painted - painted_wider), axis=(0, 3)))


def square_weights(job: Job, squares: int, landscapes: int) -> np.ndarray:
    """The job's probability of drawing each pool square: the last ``landscapes`` share
    ``job.landscape_share`` of the crops (``crop_weights``), the others the rest."""
    if landscapes == 0:
        if job.landscape_share > 0:
            raise ValueError(f"{job.name} asks for landscape crops; the bundle has none")
        return np.full(squares, 1.0 / squares, np.float32)
    shares = (1.0 - job.landscape_share, job.landscape_share)
    return crop_weights((squares - landscapes, landscapes), shares).astype(np.float32)


def learning_rate_scale(progress: float, config: RunConfig) -> float:
    """1 until ``decay_from``, then linearly down to ``decay_to`` at the end of the budget."""
    if progress <= config.decay_from:
        return 1.0
    fraction = min(1.0, (progress - config.decay_from) / (1.0 - config.decay_from))
    return 1.0 + fraction * (config.decay_to - 1.0)


def make_step(vgg, pool, probabilities, config: RunConfig, margin: int = 0):
    """One jitted step of every network: crops (each job's by its row of ``probabilities``; with a
    ``margin``, that much wider for the edge term), J, gradients and Keras' Adam update."""
    import jax
    import jax.numpy as jnp

    inner = slice(margin, margin + config.crop)
    ring = jnp.asarray(ring_weights(config.crop, config.edge_ring))

    def loss_one(params, crops, grams, weights):
        content = crops[:, inner, inner, :3]
        face = crops[:, inner, inner, 3:] / 255.0 if crops.shape[-1] == 4 else None
        generated = stylize(params, content)
        values = perceptual_loss(
            vgg,
            content,
            generated,
            grams,
            weights["alpha"],
            weights["beta"],
            weights["tv_weight"],
            config.content_layer,
            STYLE_LAYERS,
            face,
            weights["face_weight"],
        )
        edge = jnp.asarray(0.0)
        if margin:  # the wider view is the target, not trained through
            wider = jax.lax.stop_gradient(stylize(params, crops[..., :3]))
            edge = edge_cost(generated, wider[:, inner, inner], ring)
        total = values[0] + weights["edge_weight"] * edge
        return total, jnp.stack([total, *values[1:], edge])

    grad_one = jax.grad(loss_one, has_aux=True)

    def train_one(params, m, v, t, key, grams, weights, squares_p):
        crops = random_crops(key, pool, config.batch_size, config.crop, squares_p, margin)
        grads, values = grad_one(params, crops, grams, weights)
        b1, b2, eps = 0.9, 0.999, 1e-7
        m = jax.tree.map(lambda m_, g: b1 * m_ + (1 - b1) * g, m, grads)
        v = jax.tree.map(lambda v_, g: b2 * v_ + (1 - b2) * g * g, v, grads)
        rate = weights["learning_rate"] * jnp.sqrt(1 - b2**t) / (1 - b1**t)
        params = jax.tree.map(lambda p, m_, v_: p - rate * m_ / (jnp.sqrt(v_) + eps), params, m, v)
        return params, m, v, values

    @jax.jit
    def step(params, moments, t, key, grams, weights):
        m, v = moments
        keys = jax.random.split(key, weights["alpha"].shape[0])
        params, m, v, values = jax.vmap(train_one, in_axes=(0, 0, 0, None, 0, 0, 0, 0))(
            params, m, v, t, keys, grams, weights, probabilities
        )
        return params, (m, v), tuple(values.T)

    return step


def save_checkpoint(
    directory: Path, stem: str, jobs: Sequence[Job], params: Mapping, per_file: int = 4
) -> None:
    """``STEM-G.npz``: the weights of ``per_file`` jobs each, as ``JOB/VARIABLE`` float16 (a device
    call returns files of at most 16 MiB; a network is 2.8 MB)."""
    for group, first in enumerate(range(0, len(jobs), per_file)):
        arrays = {
            f"{job.name}/{name}": np.asarray(value[first + i]).astype(np.float16)
            for name, value in params.items()
            for i, job in enumerate(jobs[first : first + per_file])
        }
        write_atomically(directory / f"{stem}-{group}.npz", npz_bytes(arrays))


def finish(
    run_dir: Path, checkpoint: int, job_name: str, networks_dir: Path, output_dir: Path, name: str
) -> Path:
    """Give one job's weights at ``checkpoint`` their network card, here (TensorFlow builds the
    network, so a weight the architecture lacks fails now): ``OUTPUT_DIR/NAME.{npz,json}``.

    The card's ``resumed_from`` chain is read from the start network in ``networks_dir``, so that
    network must be the one the run started from: once a run's results are copied into
    ``shared/style/networks``, a later ``finish`` would otherwise chain a card to its own
    successor. Runs made before the hash was recorded are not checked."""
    from shared.style.fast import Architecture, assign_weights, build_network, save_network
    from training.style.training import HELD_OUT, LFW_FACE_BOX, resumed_from

    run = json.loads((run_dir / "run.json").read_text())
    index = [fields["name"] for fields in run["jobs"]].index(job_name)
    job = Job(**run["jobs"][index])
    record = next(r for r in run["checkpoints"] if r["checkpoint"] == checkpoint)
    weights = {}
    for path in sorted(run_dir.glob(f"checkpoint-{checkpoint}-*.npz")):
        weights |= {
            k.split("/", 1)[1]: v for k, v in load_npz(path).items() if k.startswith(f"{job_name}/")
        }
    start = networks_dir / f"{job.start}.npz"
    recorded = run.get("start_sha256", {}).get(job.start)
    if recorded is not None and sha256_file(start) != recorded:
        raise ValueError(
            f"{start} is not the network {job_name} started from (its SHA-256 differs from "
            f"{run_dir}/run.json's): pass --start-dir with the networks the run started from"
        )
    start_card = json.loads(start.with_suffix(".json").read_text())
    architecture = replace(  # blocks as trained: a job may have grown its start
        Architecture.from_json(start_card["architecture"]),
        residual_blocks=residual_blocks_in(weights),
    )
    model = build_network(architecture)
    assign_weights(model, weights, f"{run_dir} {job_name}")
    config = run["config"]
    steps = record["steps"]
    last = [row[1 + index] for row in run["curve"] if steps - 500 < row[0] <= steps]
    resumed = resumed_from(start)
    card = {
        **{k: start_card[k] for k in ("method", "style_image")},
        "held_out": HELD_OUT,
        "content_data": f"{run['content_squares']} squares of {POOL_SIDE} px (an LFW "
        "deep-funneled sample and three squares per frame of street_crowd_1080p.mp4), random "
        "crops cut on the accelerator"
        + (
            f"; {job.landscape_share:.0%} of crops from {run['landscape_squares']} squares of the "
            "landscape training photos (training.style.landscapes)"
            if job.landscape_share > 0
            else ""
        ),
        "name": name,
        "trained_on": f"{', '.join(run['devices'])} (training.style.accelerated, JAX), "
        f"{len(run['jobs'])} networks at once",
        "crop": config["crop"],
        "batch_size": config["batch_size"],
        "steps": steps,
        "total_steps": steps + (resumed["total_steps"] if resumed else 0),
        "learning_rate": job.learning_rate,
        "learning_rate_schedule": f"constant to {config['decay_from']:.0%} of {config['seconds']} s, "
        f"then linearly to {config['decay_to']} x",
        "alpha": job.alpha,
        "beta": job.beta,
        "tv_weight": job.tv_weight,
        "face_weight": job.face_weight,
        "face_box": LFW_FACE_BOX if job.face_weight > 0 else None,
        "edge_weight": job.edge_weight,
        "edge_ring": config["edge_ring"] if job.edge_weight > 0 else None,
        "edge_margin": config["edge_margin"] if job.edge_weight > 0 else None,
        "style_layers": STYLE_LAYERS,
        "content_layer": config["content_layer"],
        "style_side": 256,
        "seed": config["seed"],
        "resumed_from": resumed,
        "train_seconds": record["seconds"],
        "final_J_mean_last_500": float(np.mean([v[0] for v in last])),
        "final_J_content_mean_last_500": float(np.mean([v[1] for v in last])),
        "final_J_style_mean_last_500": float(np.mean([v[2] for v in last])),
    }
    return save_network(model, architecture, card, output_dir, name)


def main(argv: Sequence[str] | None = None) -> None:
    """``facestream style-accelerated bundle|train|finish``; on the GPU machine, which has no
    facestream install: ``python3 -m training.style.accelerated train ...``."""
    parser = argparse.ArgumentParser(
        prog="facestream style-accelerated", description=__doc__.splitlines()[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    bundle = commands.add_parser("bundle", help="here: write the bundle a device call carries")
    bundle.add_argument("output", type=Path)
    bundle.add_argument("--lfw-images", type=int, default=800)
    bundle.add_argument("--quality", type=int, default=88, help="JPEG quality of the squares")
    bundle.add_argument("--seed", type=int, default=0)
    bundle.add_argument(
        "--no-landscapes", action="store_true", help="leave the landscape photos out"
    )
    train = commands.add_parser("train", help="there: train the jobs at once, timed")
    train.add_argument("bundle", type=Path)
    train.add_argument("jobs", type=Path, help="JSON list of Job fields")
    train.add_argument("--networks-dir", type=Path, default=Path("shared/style/networks"))
    train.add_argument("--output-dir", type=Path, required=True)
    train.add_argument("--seconds", type=float, default=300.0)
    train.add_argument("--checkpoints", type=int, default=2)
    train.add_argument("--batch-size", type=int, default=4)
    train.add_argument("--crop", type=int, default=192)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--log-every", type=int, default=100)
    train.add_argument("--edge-ring", type=int, default=16)
    train.add_argument("--edge-margin", type=int, default=24)
    finish_ = commands.add_parser("finish", help="here: a job's checkpoint as a carded network")
    finish_.add_argument("run_dir", type=Path, help="what the device call handed back")
    finish_.add_argument("checkpoint", type=int)
    finish_.add_argument("job")
    finish_.add_argument("name", help="the network's name (its files' stem)")
    finish_.add_argument("--start-dir", type=Path, default=Path("shared/style/networks"))
    finish_.add_argument("--output-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.command == "bundle":
        _bundle(args)
    elif args.command == "train":
        _train(args)
    else:
        path = finish(
            args.run_dir, args.checkpoint, args.job, args.start_dir, args.output_dir, args.name
        )
        print(f"wrote {path}")


def _bundle(args: argparse.Namespace) -> None:
    from shared.settings import get_settings
    from shared.style.vgg import load_weights
    from training.style.training import landscape_images

    settings = get_settings()
    landscapes = [] if args.no_landscapes else landscape_images(models_dir=settings.face.models_dir)
    paintings = sorted((settings.shared_data / "style" / "paintings").glob("*.jpg"))
    counts = prepare_bundle(
        settings.shared_data,
        load_weights(settings.face.models_dir),
        paintings,
        args.output,
        args.lfw_images,
        args.seed,
        quality=args.quality,
        landscapes=landscapes,
    )
    print(f"wrote {args.output}: {counts}")


def _train(args: argparse.Namespace) -> None:
    jobs = [Job(**fields) for fields in json.loads(args.jobs.read_text())]
    config = RunConfig(
        args.crop,
        args.batch_size,
        args.seconds,
        args.checkpoints,
        seed=args.seed,
        log_every=args.log_every,
        edge_ring=args.edge_ring,
        edge_margin=args.edge_margin,
    )
    args.output_dir.mkdir(parents=True, exist_ok=True)
    train_jobs(
        jobs,
        args.bundle,
        args.networks_dir,
        args.output_dir,
        config,
        log=lambda line: print(line, flush=True),
    )


if __name__ == "__main__":
    main()
