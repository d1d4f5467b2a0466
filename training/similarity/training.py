"""Training encoders with the triplet loss: ``finetune`` the pretrained encoder or ``scratch``.

- ``scratch``: the small CNN of scratch_encoder on 64x64 chips, augmented (augment.py), all layers
  trained with Adam.
- ``finetune``: dlib's pretrained ResNet with everything frozen except its last layer, the 256->128
  ``fc`` (no bias). Training all 29 conv layers on 2 cores would take hours per epoch, and the
  frozen trunk's 256-d features do not change, so they are computed once (data.py, for each chip
  and its mirror image; augmentation picks one of the two at random) and training runs on them.
  This is exactly the fine-tuning of the last layer, minutes instead of hours. The starting point
  is the pretrained kernel, the learning rate small, so training moves the encoder little.

Both: P x K batches (batches.py), one of the triplet selectors (triplet.py), loss = J / T (the
mean over the selected triplets: the scale of J changes with T, the mean keeps one learning rate
right for every selector), fixed seeds, a Keras progress bar, a checkpoint per epoch, and
curves.csv / curves.json per epoch: mean loss, triplets per batch, fraction with non-zero loss,
CPU and wall seconds, DevTrain accuracy at the DevTrain-best threshold, and DevTest accuracy at
that same threshold (DevTest never influences training or the threshold).
"""

from __future__ import annotations

import csv
import json
import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from training.calibration import best_threshold
from training.similarity.augment import augment
from training.similarity.batches import PKSampler
from training.similarity.data import (
    DEFAULT_CACHE,
    ChipCache,
    PairRows,
    load_features,
    pair_rows,
    training_rows,
)
from training.similarity.evaluation import accuracy
from training.similarity.scratch_encoder import build_scratch_encoder, scratch_chips
from training.similarity.triplet import make_selector, select_batch_all, triplet_cost

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    mode: str
    """"finetune" or "scratch"."""
    selector: str
    out: Path
    epochs: int = 10
    steps_per_epoch: int | None = None
    """None: about one pass over the training images per epoch."""
    identities_per_batch: int = 16
    images_per_identity: int = 4
    alpha: float = 0.2
    learning_rate: float = 1e-3
    seed: int = 0
    cache: Path = DEFAULT_CACHE


@dataclass
class EpochRecord:
    epoch: int
    steps: int
    loss: float
    """Mean L over the selector's triplets (what was minimised)."""
    batch_all_loss: float
    """Mean L over every valid triplet of the batch: the same yardstick for every selector."""
    triplets_per_batch: float
    active_fraction: float
    cpu_seconds: float
    """Process CPU time since training began (all threads), evaluation excluded."""
    wall_seconds: float
    train_pairs_accuracy: float
    threshold: float
    devtest_accuracy: float


class _Task(ABC):
    """What differs between the modes: the model, how a batch is made, how rows are embedded."""

    model: keras.Model

    @abstractmethod
    def inputs(self, rows: np.ndarray, generator: tf.random.Generator) -> tf.Tensor:
        """The model's input for a batch of cache rows (augmented)."""

    @abstractmethod
    def embed(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), 128) embeddings, inference mode, no augmentation."""

    @abstractmethod
    def save(self, path: Path) -> None:
        """Write the trained weights (``path`` without suffix)."""


class _ScratchTask(_Task):
    def __init__(self, cache: ChipCache, rows: np.ndarray, seed: int) -> None:
        """``rows``: every cache row the run reads (training and evaluation images)."""
        self.model = build_scratch_encoder(seed=seed)
        self.images = np.zeros((len(cache.keys), 64, 64, 3), np.uint8)
        self.images[rows] = scratch_chips(np.asarray(cache.chips[rows]))
        self._embed = tf.function(
            lambda x: self.model(x, training=False),
            input_signature=[tf.TensorSpec((None, 64, 64, 3), tf.float32)],
        )

    def inputs(self, rows: np.ndarray, generator: tf.random.Generator) -> tf.Tensor:
        return augment(tf.convert_to_tensor(self.images[rows], tf.float32) / 255.0, generator)

    def embed(self, rows: np.ndarray) -> np.ndarray:
        parts = [
            self._embed(
                tf.convert_to_tensor(self.images[rows[i : i + 256]], tf.float32) / 255.0
            ).numpy()
            for i in range(0, len(rows), 256)
        ]
        return np.concatenate(parts)

    def save(self, path: Path) -> None:
        self.model.save_weights(path.with_suffix(".weights.h5"))


class _FinetuneTask(_Task):
    def __init__(self, cache: Path, info: dict) -> None:
        """``info``: how it was trained, recorded in the saved file."""
        from shared.face.model_files import ensure_weights
        from shared.model_cache import default_models_dir

        features = load_features(cache)
        self.features = features["features"].astype(np.float32)
        self.mirrored = features["features_mirrored"].astype(np.float32)
        self.pretrained_kernel = ensure_weights(default_models_dir())["fc/kernel"]
        self.model = keras.Sequential(
            [keras.Input((256,)), keras.layers.Dense(128, use_bias=False, name="fc")], name="fc"
        )
        self.model.layers[0].set_weights([self.pretrained_kernel.astype(np.float32)])
        self.info = info

    def inputs(self, rows: np.ndarray, generator: tf.random.Generator) -> tf.Tensor:
        mirror = generator.uniform([len(rows), 1]) < 0.5
        return tf.where(mirror, self.mirrored[rows], self.features[rows])

    def embed(self, rows: np.ndarray) -> np.ndarray:
        return self.features[rows] @ self.model.layers[0].get_weights()[0]

    def save(self, path: Path) -> None:
        from training.similarity.finetuned import save_fc_kernel

        save_fc_kernel(path.with_suffix(".npz"), self.model.layers[0].get_weights()[0], self.info)


def _train_step(
    model: keras.Model, optimizer: keras.optimizers.Optimizer, select: Callable, alpha: float
) -> Callable:
    @tf.function(reduce_retracing=True)
    def step(inputs: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, ...]:
        with tf.GradientTape() as tape:
            embeddings = model(inputs, training=True)
            triplets = select(embeddings, labels, alpha)
            count = tf.shape(triplets)[0]
            cost = triplet_cost(embeddings, triplets, alpha)
            loss = cost / tf.cast(tf.maximum(count, 1), tf.float32)
        gradients = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(gradients, model.trainable_variables, strict=True))
        anchor, positive, negative = (tf.gather(embeddings, triplets[:, i]) for i in range(3))
        d_ap = tf.reduce_sum(tf.square(anchor - positive), 1)
        d_an = tf.reduce_sum(tf.square(anchor - negative), 1)
        active = tf.reduce_sum(tf.cast(d_ap - d_an + alpha > 0, tf.float32))
        every = select_batch_all(embeddings, labels, alpha)
        common = triplet_cost(embeddings, every, alpha) / tf.cast(
            tf.maximum(tf.shape(every)[0], 1), tf.float32
        )
        return loss, tf.cast(count, tf.float32), active, common

    return step


def _pair_accuracy(
    task: _Task, train_pairs: PairRows, test_pairs: PairRows, rows: int
) -> tuple[float, float, float]:
    """(DevTrain accuracy, threshold chosen on DevTrain, DevTest accuracy at it)."""
    used = np.union1d(train_pairs.used_rows, test_pairs.used_rows)
    vectors = np.zeros((rows, 128), np.float32)
    vectors[used] = task.embed(used)
    train_d, test_d = train_pairs.distances(vectors), test_pairs.distances(vectors)
    finite = np.isfinite(train_d)
    threshold, train_acc = best_threshold(train_d[finite], train_pairs.same[finite])
    return train_acc, threshold, accuracy(test_d, test_pairs.same, threshold)


def train(config: TrainConfig, shared_data: Path) -> list[EpochRecord]:
    """Run one training job; writes checkpoints, curves and the final model into ``config.out``."""
    keras.utils.set_random_seed(config.seed)
    cache = ChipCache.load(config.cache)
    rows, labels, names = training_rows(cache, shared_data)
    train_pairs = pair_rows(cache, shared_data, "DevTrain")
    test_pairs = pair_rows(cache, shared_data, "DevTest")
    if config.mode == "scratch":
        needed = np.union1d(rows, np.union1d(train_pairs.used_rows, test_pairs.used_rows))
        task: _Task = _ScratchTask(cache, needed, config.seed)
    elif config.mode == "finetune":
        task = _FinetuneTask(
            config.cache,
            {
                "selector": config.selector,
                "epochs": config.epochs,
                "learning_rate": config.learning_rate,
                "alpha": config.alpha,
                "seed": config.seed,
            },
        )
    else:
        raise ValueError(f"unknown mode {config.mode!r}: finetune or scratch")
    sampler = PKSampler(
        labels, config.identities_per_batch, config.images_per_identity, config.seed
    )
    steps = config.steps_per_epoch or sampler.steps_per_epoch()
    optimizer = keras.optimizers.Adam(config.learning_rate)
    step = _train_step(
        task.model, optimizer, make_selector(config.selector, config.seed), config.alpha
    )
    generator = tf.random.Generator.from_seed(config.seed + 1)
    config.out.mkdir(parents=True, exist_ok=True)
    (config.out / "config.json").write_text(
        json.dumps(
            {
                **asdict(config),
                "out": str(config.out),
                "cache": str(config.cache),
                "identities": len(names),
                "images": len(rows),
                "steps_per_epoch": steps,
            },
            indent=2,
        )
    )
    train_acc, threshold, test_acc = _pair_accuracy(task, train_pairs, test_pairs, len(cache.keys))
    nan = float("nan")
    records = [EpochRecord(0, 0, nan, nan, 0.0, 0.0, 0.0, 0.0, train_acc, threshold, test_acc)]
    log.info("epoch 0 (untrained): DevTrain %.4f, DevTest %.4f", train_acc, test_acc)
    cpu, wall = 0.0, 0.0
    for epoch in range(1, config.epochs + 1):
        bar = keras.utils.Progbar(steps, stateful_metrics=["loss", "triplets"])
        losses, counts, actives, commons = [], [], [], []
        cpu_start, wall_start = time.process_time(), time.perf_counter()
        for i in range(steps):
            batch = sampler.batch()
            loss, count, active, common = step(
                task.inputs(batch, generator), tf.constant(labels[batch])
            )
            losses.append(float(loss))
            counts.append(float(count))
            actives.append(float(active))
            commons.append(float(common))
            bar.update(i + 1, [("loss", float(loss)), ("triplets", float(count))])
        cpu += time.process_time() - cpu_start
        wall += time.perf_counter() - wall_start
        train_acc, threshold, test_acc = _pair_accuracy(
            task, train_pairs, test_pairs, len(cache.keys)
        )
        record = EpochRecord(
            epoch,
            epoch * steps,
            float(np.mean(losses)),
            float(np.mean(commons)),
            float(np.mean(counts)),
            float(np.sum(actives) / max(1.0, np.sum(counts))),
            cpu,
            wall,
            train_acc,
            threshold,
            test_acc,
        )
        records.append(record)
        log.info("epoch %d: %s", epoch, record)
        task.save(config.out / "checkpoint")
        _write_curves(config.out, records)
    task.save(config.out / "final")
    return records


def _write_curves(out: Path, records: list[EpochRecord]) -> None:
    rows = [asdict(r) for r in records]
    (out / "curves.json").write_text(json.dumps(rows, indent=2))
    with open(out / "curves.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
