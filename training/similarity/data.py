"""The training split of LFW and the cache of aligned chips and pretrained features.

Training identities are LFW deep-funneled people with 2+ images who do NOT appear in View 1
DevTest, so DevTest stays clean for evaluation (no DevTest person, hence no DevTest image, is ever
trained on). Each person contributes at most ``max_per_person`` images so that a few heavily
photographed people (George W Bush has 530) do not dominate the batches.

Every image is detected, aligned and encoded once by the project's own pipeline (MTCNN, 5-point
alignment, dlib's ResNet) and cached under bench/out/similarity (git-ignored: chips are face
images): ``chips.npy`` (N,150,150,3) uint8 RGB, ``index.json`` (image keys, face found or not) and
``features.npz`` with the pretrained trunk's 256-d penultimate activations of each chip and of its
mirror image (the fine-tuning mode trains the last layer on these) and the 128-d encodings.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from training.datasets.lfw import Pair, identities, people_in, read_pairs

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path(__file__).resolve().parents[2] / "bench" / "out" / "similarity"
MAX_IMAGES_PER_PERSON = 10


def image_key(path: Path) -> str:
    """ "Person_Name/Person_Name_0001.jpg", the key bench/lfw.py uses too."""
    return f"{path.parent.name}/{path.name}"


def training_identities(
    shared_data: Path, max_per_person: int = MAX_IMAGES_PER_PERSON
) -> dict[str, list[Path]]:
    """People with 2+ images minus everyone in View 1 DevTest, at most ``max_per_person`` each."""
    held_out = people_in(read_pairs(shared_data, "DevTest"))
    chosen = {
        name: images[:max_per_person]
        for name, images in identities(shared_data, min_images=2).items()
        if name not in held_out
    }
    devtest_images = {
        image_key(p) for pair in read_pairs(shared_data, "DevTest") for p in _paths(pair)
    }
    leaked = devtest_images & {image_key(p) for images in chosen.values() for p in images}
    if leaked:
        raise AssertionError(f"DevTest images in the training split: {sorted(leaked)[:3]}")
    return chosen


def _paths(pair: Pair) -> tuple[Path, Path]:
    return pair.first, pair.second


def pair_images(shared_data: Path, split: str) -> list[Path]:
    return sorted({p for pair in read_pairs(shared_data, split) for p in _paths(pair)})


@dataclass
class ChipCache:
    """Aligned chips of every image the similarity work uses, looked up by image key."""

    keys: list[str]
    chips: np.ndarray
    """(N, 150, 150, 3) uint8 RGB; zeros where no face was found."""
    found: np.ndarray
    """(N,) bool."""

    def __post_init__(self) -> None:
        self.position = {key: i for i, key in enumerate(self.keys)}

    def rows(self, paths: list[Path]) -> np.ndarray:
        """Row of each image (-1 where it is not cached or has no face)."""
        rows = [self.position.get(image_key(p), -1) for p in paths]
        return np.array([r if r >= 0 and self.found[r] else -1 for r in rows], np.int64)

    @classmethod
    def load(cls, folder: Path = DEFAULT_CACHE) -> ChipCache:
        index = json.loads((folder / "index.json").read_text())
        chips = np.load(folder / "chips.npy", mmap_mode="r")
        return cls(index["keys"], chips, np.array(index["found"], bool))


def all_images(shared_data: Path) -> list[Path]:
    """Training images first, then the DevTrain and DevTest pair images not among them."""
    train = [p for images in training_identities(shared_data).values() for p in images]
    seen = {image_key(p) for p in train}
    extra = [
        p
        for split in ("DevTrain", "DevTest")
        for p in pair_images(shared_data, split)
        if image_key(p) not in seen
    ]
    unique_extra = list({image_key(p): p for p in extra}.values())
    return train + unique_extra


def build_chip_cache(shared_data: Path, pipeline, folder: Path = DEFAULT_CACHE) -> ChipCache:
    """Detect (the face nearest the centre is the subject, as in bench/lfw.py) and align once."""
    import cv2

    from shared.face.alignment import align_face

    paths = all_images(shared_data)
    chips = np.zeros((len(paths), 150, 150, 3), np.uint8)
    found = np.zeros(len(paths), bool)
    started = time.perf_counter()
    for i, path in enumerate(paths):
        image = cv2.imread(str(path))
        faces = pipeline.detect(image)
        if faces:
            centre = np.array([image.shape[1] / 2, image.shape[0] / 2])
            face = min(
                faces,
                key=lambda d: np.linalg.norm(np.add(d.box[:2], np.divide(d.box[2:], 2)) - centre),
            )
            chips[i] = align_face(image, face.landmarks)
            found[i] = True
        if i % 500 == 0:
            log.info("chips: %d/%d, %.0f s", i, len(paths), time.perf_counter() - started)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "chips.npy", chips)
    keys = [image_key(p) for p in paths]
    (folder / "index.json").write_text(json.dumps({"keys": keys, "found": found.tolist()}))
    return ChipCache(keys, chips, found)


def trunk_of(model):
    """The pretrained ResNet up to the 256-d global average pool (the fc layer's input)."""
    import keras

    return keras.Model(model.input, model.get_layer("fc").input)


def build_feature_cache(
    cache: ChipCache, model, folder: Path = DEFAULT_CACHE, batch: int = 32
) -> None:
    """256-d trunk features of every chip and of its mirror image, and the 128-d encodings."""
    import tensorflow as tf

    trunk = tf.function(trunk_of(model), reduce_retracing=True)
    kernel = model.get_layer("fc").get_weights()[0]
    plain, mirrored = [], []
    started = time.perf_counter()
    for start in range(0, len(cache.keys), batch):
        chips = np.asarray(cache.chips[start : start + batch], np.float32)
        plain.append(trunk(chips).numpy())
        mirrored.append(trunk(chips[:, :, ::-1]).numpy())
        if start % 640 == 0:
            log.info(
                "features: %d/%d, %.0f s", start, len(cache.keys), time.perf_counter() - started
            )
    features = np.concatenate(plain)
    np.savez(
        folder / "features.npz",
        features=features,
        features_mirrored=np.concatenate(mirrored),
        encodings=features @ kernel,
    )


def load_features(folder: Path = DEFAULT_CACHE) -> dict[str, np.ndarray]:
    with np.load(folder / "features.npz") as data:
        return {name: data[name] for name in data.files}


@dataclass(frozen=True)
class PairRows:
    """A View 1 split as cache rows: first[i], second[i] (-1 where no face), same[i]."""

    first: np.ndarray
    second: np.ndarray
    same: np.ndarray

    def distances(self, vectors: np.ndarray) -> np.ndarray:
        """Squared L2 distance per pair from (N, D) row vectors; +inf where a face is missing."""
        ok = (self.first >= 0) & (self.second >= 0)
        out = np.full(len(self.same), np.inf)
        difference = vectors[self.first[ok]] - vectors[self.second[ok]]
        out[ok] = np.sum(np.square(difference, dtype=np.float64), axis=1)
        return out

    @property
    def used_rows(self) -> np.ndarray:
        return np.unique(np.r_[self.first, self.second][np.r_[self.first, self.second] >= 0])


def pair_rows(cache: ChipCache, shared_data: Path, split: str) -> PairRows:
    pairs = read_pairs(shared_data, split)
    return PairRows(
        cache.rows([p.first for p in pairs]),
        cache.rows([p.second for p in pairs]),
        np.array([p.same for p in pairs], bool),
    )


def training_rows(cache: ChipCache, shared_data: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Cache rows of the training images with a face, their identity labels, identity names."""
    people = training_identities(shared_data)
    names = sorted(people)
    rows, labels = [], []
    for label, name in enumerate(names):
        found = cache.rows(people[name])
        found = found[found >= 0]
        rows.extend(found.tolist())
        labels.extend([label] * len(found))
    return np.array(rows, np.int64), np.array(labels, np.int64), names
