"""The style networks' dev set (``bench.style_dev``): what chooses between checkpoints."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from bench.style_dev import DEV_FRAMES, SIDE, dev_set
from training.style.landscapes import PHOTOS, photo_paths, photos


@pytest.mark.data
def test_the_dev_set_is_distinct_pictures_the_networks_never_train_on(shared_data: Path) -> None:
    """Every dev picture decodes at SIDE px on its longest side (a WebM whose frame count OpenCV
    cannot read included); no two look alike, as 16x16 grey thumbnails (a duplicated, misread or
    near-duplicate frame would); none comes from the training's street clip or landscapes."""
    labelled = dev_set(shared_data)
    dev_photos = photos("dev")
    assert len(labelled) == len(DEV_FRAMES) + len(dev_photos) == 15
    assert all(max(f.shape[:2]) == SIDE and f.dtype == np.uint8 for _, f in labelled)
    thumbs = [
        cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (16, 16), interpolation=cv2.INTER_AREA)
        for _, f in labelled
    ]
    differences = [
        np.abs(a.astype(float) - b).mean() for i, a in enumerate(thumbs) for b in thumbs[i + 1 :]
    ]
    assert min(differences) > 10.0  # grey levels; adjacent Hamilton frames differ by ~3
    assert not any("street_crowd" in clip for _, clip, _ in DEV_FRAMES)
    training = {p.sha256 for p in photos("train")}
    assert training and not training & {p.sha256 for p in dev_photos}


def test_an_altered_landscape_photo_is_refused(tmp_path: Path) -> None:
    """A cached photo that is not the pinned file (truncated, replaced) is an error naming the
    fix, never silently trained or measured on."""
    folder = tmp_path / "landscapes"
    folder.mkdir()
    for photo in PHOTOS:
        (folder / f"{photo.name}.jpg").write_bytes(b"not the photo")
    with pytest.raises(FileNotFoundError, match="training.style.landscapes"):
        photo_paths("dev", tmp_path)


def test_each_layer_term_adds_up_to_the_reports_style_cost() -> None:
    """``measure``'s per-layer terms (what ``bench.style_dev`` prints to guide the training's
    layer weights) sum to J_style as ``costs.style_cost`` gives it: splitting it changes no figure
    the report and the docs' tables were made with."""
    import tensorflow as tf

    from bench.style import measure
    from shared.style import costs
    from shared.style.gatys import DEFAULT_CONTENT_LAYER, DEFAULT_STYLE_LAYERS, resize_longest

    layers = [DEFAULT_CONTENT_LAYER, *DEFAULT_STYLE_LAYERS]

    def extractor(image: tf.Tensor) -> dict[str, tf.Tensor]:  # a stand-in for VGG: pooled pixels
        return {name: tf.nn.avg_pool2d(image, 2**i, 2**i, "VALID") for i, name in enumerate(layers)}

    rng = np.random.default_rng(0)
    content, image = (rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(2))
    style = rng.integers(0, 256, (96, 80, 3), dtype=np.uint8)
    figures = measure(extractor, content, style, image)
    a_G = extractor(tf.constant(image[None].astype(np.float32)))  # noqa: N806
    a_S = costs.per_position(  # noqa: N806
        extractor(tf.constant(resize_longest(style, 64)[None].astype(np.float32))),
        a_G,
        list(DEFAULT_STYLE_LAYERS),
    )
    expected = float(costs.style_cost(a_S, a_G, DEFAULT_STYLE_LAYERS))
    assert figures["J_style"] == pytest.approx(expected, rel=1e-5)
    assert sum(figures["J_style_layers"].values()) == pytest.approx(figures["J_style"])
    assert figures["J_style_layers"].keys() == DEFAULT_STYLE_LAYERS.keys()
    assert min(figures["J_style_layers"].values()) > 0
