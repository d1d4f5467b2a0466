"""Training a feed-forward style network on Gatys' own cost (Johnson et al.'s perceptual loss).

For a batch of content crops C_b the network T produces G_b = T(C_b), and the loss is the mean
over the batch of exactly the J(G) that ``shared.style.gatys`` minimises pixel by pixel:

    J(G_b) = alpha J_content(C_b, G_b) + beta sum_l lambda_l J^l_style(S, G_b) + tv_weight TV(G_b)

with the same cost functions and normalising constants (``shared.style.costs``), Gatys' style
layers, and S seen at the scale Gatys sees it (longest side ``style_side``, 256 px), its Gram
matrices scaled to the crop's number of positions: they are sums over positions, so per position
is what a 192 px crop and a 256 px painting can share. A network starts from random weights, not
from C, and must first learn to keep the content: from random weights it is trained with Johnson
et al.'s content layer (block2_conv2, alpha 1e6), which asks for the photo's edges; once it keeps
them it is continued on Gatys' own content layer (block4_conv2, the default), which asks only for
the layout and leaves the rest to the style, as Gatys' J does (docs/style.md). Only T's weights
change; VGG16 is frozen.

Content images are everything available here that is not held out for evaluation: LFW faces and
frames of the street-crowd video, as random square crops. The three content photos and the
Hamilton clip are held out: the contact sheet and the pipeline test show the networks on images
they never saw.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import tensorflow as tf

from shared.style import costs
from shared.style.fast import (
    Architecture,
    assign_weights,
    build_network,
    read_network,
    save_network,
)
from shared.style.gatys import DEFAULT_STYLE_LAYERS
from shared.style.vgg import feature_extractor
from training.style.crops import crop_weights, random_crops, ring_weights
from training.style.deepening import with_identity_blocks
from training.style.landscapes import photo_paths, photos


@dataclass
class TrainingConfig:
    """Options of one training run; defaults: the recipe the committed networks were last trained
    with (their 600 or 450 steps continued a network; docs/style.md, "Shipped networks")."""

    style_image: Path
    name: str
    crop: int = 192
    batch_size: int = 4
    steps: int = 800
    learning_rate: float = 1e-3
    alpha: float = 2e5
    """Content weight at ``content_layer``. At block4_conv2, continued from a network that keeps the
    content: Gatys' own 1e5 gave J_content 1.86x Gatys' on the dev frames after 250 steps, 2e5
    1.64x at nearly the same J_style (docs/style-training.md, "Gatys' content layer"). From
    random weights at block2_conv2: 5e5 gave a sheet of texture after 200 steps, 1e6 kept the
    photo."""
    beta: float = 40.0
    tv_weight: float = 50.0
    """Smooths the high-frequency grid that nearest-neighbour upsampling leaves early in training."""
    style_layers: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_STYLE_LAYERS))
    style_side: int | None = 256
    """The painting's longest side, pixels, when its Gram matrices are taken (aspect kept, Grams
    scaled to the crop's number of positions). The scale at which the painting is seen sets the
    size of the strokes a network learns; Gatys and the report see it at the picture's 256 px.
    None: squeezed to the crop square, as the first networks were (half the style on dev)."""
    content_layer: str = "block4_conv2"
    """Gatys' layer, so the network learns the very J the report measures. It constrains only the
    layout: a network starting from random weights lost the content with it, so a new network
    first learns at block2_conv2 (Johnson et al.'s relu2_2), then continues here."""
    architecture: Architecture = Architecture()
    lfw_images: int = 3000
    """How many LFW images (a seeded sample) join the street-crowd frames as content."""
    landscape_share: float = 0.0
    """The share of crops cut from the landscape training photos (``landscapes.py``: skies,
    water, hills and towns, which faces and a street lack); 0 trains on faces and the street
    alone."""
    edge_weight: float = 0.0
    """Weight of the edge-consistency term: the mean squared difference (grey levels) within
    ``edge_ring`` px of a crop's edge between the network's output on the crop and its output on
    the same crop seen with ``edge_margin`` px more picture around it. The style cost does not
    mind where a colour is, so a network that can tell the frame's edge (its last convolutions'
    zero padding, the mirror symmetry a reflection makes at 1/8 resolution) may paint a band
    along it; this term asks the edge to be painted as it would be inside a larger frame. It
    removed `the_scream`'s band but took back its style gain (docs/style-training.md, "The
    eleventh phase"). 0 leaves it out and costs nothing."""
    edge_ring: int = 16
    """Width of the ring the edge term is measured on. Over the whole crop it mostly paid for
    instance normalisation seeing other statistics, and left the band."""
    edge_margin: int = 24
    """Picture added on each side for the edge term: wider than the ring, a multiple of 8 so both
    views' stride-2 grids align."""
    face_weight: float = 0.0
    """Extra content weight on the face of the LFW crops (``LFW_FACE_BOX``): the loss gains
    ``alpha * face_weight * J_face``, J_content over the face's positions alone. The style cost
    does not mind where a colour goes, and a face is a bright region in the middle of most crops,
    so the networks painted each painting's brightest motif over it (a gold patch, an
    orange band; docs/style-training.md, "The thirteenth phase"). 0 leaves it out."""
    seed: int = 0
    checkpoint_every: int = 250
    resume_from: Path | None = None
    """A saved network (``DIR/NAME.npz`` with its card) to continue from instead of random weights:
    a checkpoint of an interrupted run, or a shipped network trained further under new weights.
    Adam's moments start afresh (they settle within a few dozen steps). Residual blocks that
    ``architecture`` has beyond the saved network's start as the identity (``deepening``)."""


@dataclass
class StepRecord:
    step: int
    total: float
    content: float
    style: float
    tv: float
    seconds: float
    edge: float = 0.0
    face: float = 0.0


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise FileNotFoundError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def painting_at(path: Path, side: int) -> np.ndarray:
    """The painting (RGB) with its longest side at ``side`` px, its own proportions kept: the
    scale at which its Gram matrices are the training target."""
    painting = read_rgb(path)
    scale = side / max(painting.shape[:2])
    size = (round(painting.shape[1] * scale), round(painting.shape[0] * scale))
    return cv2.resize(painting, size, interpolation=cv2.INTER_AREA)


def shrunk(image: np.ndarray, max_side: int) -> np.ndarray:
    """``image`` with its longest side at most ``max_side`` (never enlarged)."""
    scale = min(1.0, max_side / max(image.shape[:2]))
    if scale == 1.0:
        return image
    return cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)


def video_frames(path: Path, every: int = 1, max_side: int = 960) -> list[np.ndarray]:
    """RGB frames of a video, every ``every``-th, shrunk so the longest side is <= ``max_side``."""
    capture = cv2.VideoCapture(str(path))
    frames: list[np.ndarray] = []
    index = 0
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        if index % every == 0:
            frames.append(cv2.cvtColor(shrunk(bgr, max_side), cv2.COLOR_BGR2RGB))
        index += 1
    capture.release()
    if not frames:
        raise FileNotFoundError(f"no frames could be read from {path}")
    return frames


HELD_OUT = (
    "style/content photos (bench.style's report) and the dev set (bench.style_dev: "
    "hamilton_clip_640x360.mp4, the liveness-train live videos and the dev landscape photos "
    f"{', '.join(p.name for p in photos('dev'))})"
)
"""What a network never trains on, as its card says: the report's photos and the dev set."""


LFW_FACE_BOX = (77, 65, 92, 122)
"""x, y, w, h of the face in an LFW deep-funneled image (250x250): MTCNN's median box over 80
sampled images (10th-90th percentiles within 10 px of it). Deep funnelling aligns every face to
about the same place, so the box needs no detector at training time."""


def with_face_channel(image: np.ndarray, box: Sequence[int] | None) -> np.ndarray:
    """RGB plus a fourth channel, 255 inside ``box`` (none: 0 everywhere). The crops then carry
    where the face is through every resize, crop and mirror of ``random_crops``."""
    face = np.zeros(image.shape[:2], np.uint8)
    if box is not None:
        x, y, w, h = box
        face[y : y + h, x : x + w] = 255
    return np.dstack([image, face])


def content_images(
    shared_data: Path, lfw_images: int, seed: int, face_channel: bool = False
) -> list[np.ndarray]:
    """The training content: a seeded LFW sample and every street-crowd frame (RGB uint8; with
    ``face_channel``, the LFW faces marked in a fourth channel, ``with_face_channel``)."""
    lfw = sorted((shared_data / "faces" / "lfw-deepfunneled").glob("*/*.jpg"))
    if not lfw:
        raise FileNotFoundError(f"no LFW images under {shared_data}/faces/lfw-deepfunneled")
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(lfw), size=min(lfw_images, len(lfw)), replace=False)
    faces = [read_rgb(lfw[i]) for i in sorted(chosen)]
    street = video_frames(shared_data / "video" / "street_crowd_1080p.mp4")
    if not face_channel:
        return faces + street
    return [with_face_channel(f, LFW_FACE_BOX) for f in faces] + [
        with_face_channel(f, None) for f in street
    ]


def landscape_images(max_side: int = 960, models_dir: Path | None = None) -> list[np.ndarray]:
    """The landscape training photos (RGB), shrunk to ``max_side``: crops take the short side at
    ``crop``..1.5 ``crop`` px anyway, so the wallpapers' full resolution would only cost memory."""
    return [shrunk(read_rgb(path), max_side) for path in photo_paths("train", models_dir)]


def edge_difference(painted: tf.Tensor, painted_wider: tf.Tensor, ring: tf.Tensor) -> tf.Tensor:
    """The edge term: mean squared difference (grey levels) over ``ring``'s pixels, the batch and
    the channels, between a crop painted alone and the same pixels of its wider view painted."""
    return tf.reduce_sum(ring * tf.reduce_mean(tf.square(painted - painted_wider), axis=(0, 3)))


def face_content_cost(a_C: tf.Tensor, a_G: tf.Tensor, face: tf.Tensor) -> tf.Tensor:  # noqa: N803
    """J_content over the face alone: the squared distance at the positions ``face`` (B, H, W, 1,
    in [0, 1] at the crop's resolution) covers, scaled like ``costs.content_cost`` (a mean over
    those positions and the channels, over 4); 0 for a batch without a face."""
    weights = tf.image.resize(face, a_G.shape[1:3], method="area")
    squared = tf.reduce_mean(tf.square(a_C - a_G), axis=-1, keepdims=True)
    return tf.reduce_sum(weights * squared) / (4.0 * tf.maximum(tf.reduce_sum(weights), 1e-6))


class PerceptualLoss:
    """J(G) of ``shared.style.costs`` for a batch of (C_b, G_b) pairs against one style image S."""

    def __init__(self, config: TrainingConfig, models_dir: Path | None = None) -> None:
        self.config = config
        layers = [config.content_layer, *config.style_layers]
        self.extractor = feature_extractor(layers, models_dir)
        if config.style_side is None:
            style = cv2.resize(
                read_rgb(config.style_image),
                (config.crop, config.crop),
                interpolation=cv2.INTER_AREA,
            )
        else:
            style = painting_at(config.style_image, config.style_side)
        features = self.extractor(tf.constant(style[None].astype(np.float32)))
        # Gram sums counted at a crop's positions, layer by layer: as Gatys and the report do
        crop_like = self.extractor(tf.zeros((1, config.crop, config.crop, 3)))
        self.a_S = costs.per_position(features, crop_like, list(config.style_layers))

    def __call__(
        self, content: tf.Tensor, generated: tf.Tensor, face: tf.Tensor | None = None
    ) -> tuple[tf.Tensor, ...]:
        """Batch means of (J, J_content, J_style, TV) and J_face (``face_content_cost``; 0
        without ``face``), J holding ``alpha * face_weight * J_face``."""
        config = self.config
        a_C = self.extractor(content)[config.content_layer]  # noqa: N806
        a_G = self.extractor(generated)  # noqa: N806
        totals = []
        for b in range(int(generated.shape[0])):
            j_content = costs.content_cost(a_C[b : b + 1], a_G[config.content_layer][b : b + 1])
            j_style = costs.style_cost(
                self.a_S,
                {name: a_G[name][b : b + 1] for name in config.style_layers},
                config.style_layers,
            )
            tv = costs.total_variation(generated[b : b + 1])
            total = costs.total_cost(
                j_content, j_style, config.alpha, config.beta, tv, config.tv_weight
            )
            totals.append(tf.stack([total, j_content, j_style, tv]))
        means = tf.unstack(tf.reduce_mean(tf.stack(totals), axis=0))
        if face is None:
            return (*means, tf.constant(0.0))
        j_face = face_content_cost(a_C, a_G[config.content_layer], face)
        return (means[0] + config.alpha * config.face_weight * j_face, *means[1:], j_face)


Progress = Callable[[StepRecord], None]


def train(
    config: TrainingConfig,
    shared_data: Path,
    output_dir: Path,
    progress: Progress | None = None,
    models_dir: Path | None = None,
) -> list[StepRecord]:
    """Train one style network; writes checkpoints, ``NAME.curve.jsonl`` and the final network."""
    tf.keras.utils.set_random_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    network = build_network(config.architecture)
    if config.resume_from is not None:  # its weights, in this run's architecture (e.g. padding)
        _, weights = read_network(config.resume_from.stem, config.resume_from.parent)
        grown = with_identity_blocks(weights, config.architecture.residual_blocks, config.seed)
        assign_weights(network, grown, str(config.resume_from))
    loss = PerceptualLoss(config, models_dir)
    optimizer = tf.keras.optimizers.Adam(config.learning_rate)
    faces = config.face_weight > 0
    images = content_images(shared_data, config.lfw_images, config.seed, face_channel=faces)
    probabilities = None
    if config.landscape_share > 0:
        landscapes = landscape_images(models_dir=models_dir)
        if faces:
            landscapes = [with_face_channel(image, None) for image in landscapes]
        shares = (1 - config.landscape_share, config.landscape_share)
        probabilities = crop_weights((len(images), len(landscapes)), shares)
        images += landscapes
    margin = config.edge_margin if config.edge_weight > 0 else 0
    batches = random_crops(images, config.crop, config.batch_size, rng, probabilities, margin)

    ring = tf.constant(ring_weights(config.crop, config.edge_ring))
    inner = slice(margin, margin + config.crop)

    @tf.function
    def step(seen: tf.Tensor) -> tuple[tf.Tensor, ...]:
        content = seen[:, inner, inner, :3]
        with tf.GradientTape() as tape:
            generated = network(content, training=True)
            face = seen[:, inner, inner, 3:] / 255.0 if faces else None
            total, *parts = loss(content, generated, face)
            edge = tf.constant(0.0)
            if margin:  # the wider view is the target, not trained through
                wider = tf.stop_gradient(network(seen[..., :3], training=True))
                edge = edge_difference(generated, wider[:, inner, inner], ring)
                total += config.edge_weight * edge
        gradients = tape.gradient(total, network.trainable_variables)
        optimizer.apply_gradients(zip(gradients, network.trainable_variables, strict=True))
        return (total, *parts, edge)

    output_dir.mkdir(parents=True, exist_ok=True)
    curve_path = output_dir / f"{config.name}.curve.jsonl"
    history: list[StepRecord] = []
    started = time.perf_counter()
    with curve_path.open("w") as curve:
        for index in range(1, config.steps + 1):
            values = step(tf.constant(next(batches)))
            total, content_cost, style_cost, tv, face, edge = (float(v) for v in values)
            seconds = time.perf_counter() - started
            record = StepRecord(index, total, content_cost, style_cost, tv, seconds, edge, face)
            history.append(record)
            curve.write(json.dumps(asdict(record)) + "\n")
            if progress is not None:
                progress(record)
            if index % config.checkpoint_every == 0 or index == config.steps:
                save_network(
                    network, config.architecture, card(config, history), output_dir, config.name
                )
    return history


def card(config: TrainingConfig, history: Sequence[StepRecord]) -> dict:
    """What the network's ``.json`` records about how it was made (its model card's facts)."""
    last = history[-50:]
    resumed = resumed_from(config.resume_from)
    return {
        "name": config.name,
        "method": "Johnson et al. 2016 feed-forward network trained on Gatys' J (shared.style.costs)",
        "style_image": config.style_image.name,
        "content_data": f"{config.lfw_images} LFW deep-funneled images (seeded sample) and the "
        "frames of street_crowd_1080p.mp4, random square crops"
        + (
            f"; {config.landscape_share:.0%} of crops from the landscape training photos "
            f"({', '.join(p.name for p in photos('train'))}; training.style.landscapes)"
            if config.landscape_share > 0
            else ""
        ),
        "held_out": HELD_OUT,
        "crop": config.crop,
        "batch_size": config.batch_size,
        "steps": len(history),
        "total_steps": len(history) + (resumed["total_steps"] if resumed else 0),
        "learning_rate": config.learning_rate,
        "alpha": config.alpha,
        "beta": config.beta,
        "tv_weight": config.tv_weight,
        "edge_weight": config.edge_weight,
        "edge_ring": config.edge_ring if config.edge_weight > 0 else None,
        "edge_margin": config.edge_margin if config.edge_weight > 0 else None,
        "face_weight": config.face_weight,
        "face_box": LFW_FACE_BOX if config.face_weight > 0 else None,
        "style_layers": config.style_layers,
        "content_layer": config.content_layer,
        "style_side": config.style_side,
        "seed": config.seed,
        "resumed_from": resumed,
        "train_seconds": round(history[-1].seconds, 1),
        "final_J_mean_last_50": float(np.mean([r.total for r in last])),
        "final_J_content_mean_last_50": float(np.mean([r.content for r in last])),
        "final_J_style_mean_last_50": float(np.mean([r.style for r in last])),
    }


def resumed_from(path: Path | None) -> dict | None:
    """The starting network's name, steps and own start, so a card adds up a chain of runs."""
    if path is None:
        return None
    started = json.loads(path.with_suffix(".json").read_text())
    return {
        "name": started.get("name", path.stem),
        "style_image": started.get("style_image"),
        "steps": started.get("steps"),
        "total_steps": int(started.get("total_steps", started.get("steps", 0))),
        "alpha": started.get("alpha"),
        "resumed_from": started.get("resumed_from"),
    }
