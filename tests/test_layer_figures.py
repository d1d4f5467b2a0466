"""Layer figures at scale: each unit's best images kept in one pass, SFace's receptive fields."""

from __future__ import annotations

import numpy as np
import pytest

from training.style.layer_figures import TopK, choose_units, mean_patches, top_k_over


def test_each_unit_keeps_its_k_best_images_one_patch_per_image() -> None:
    rng = np.random.default_rng(0)
    batches = [rng.normal(size=(5, 4, 6, 3)).astype(np.float32) for _ in range(4)]  # 20 images
    tops = top_k_over(lambda b: [b], iter(batches), ["layer"], k=3)
    everything = np.concatenate(batches)  # (20, 4, 6, 3)
    for unit in range(3):
        per_image = everything[..., unit].reshape(20, -1)
        best_images = np.argsort(-per_image.max(axis=1), kind="stable")[:3]
        assert list(tops["layer"].images[unit]) == list(best_images)
        for slot, image in enumerate(best_images):
            position = int(per_image[image].argmax())
            assert (tops["layer"].rows[unit, slot], tops["layer"].cols[unit, slot]) == divmod(
                position, 6
            )
            assert tops["layer"].values[unit, slot] == per_image[image].max()


def test_dead_units_are_not_drawn_and_the_sample_is_seeded() -> None:
    top = TopK.empty(6, 2)
    top.values[:, 0] = [1.0, 0.0, 2.0, -1.0, 3.0, 0.5]
    assert set(choose_units(top, 10, seed=0)) == {0, 2, 4, 5}
    assert choose_units(top, 2, seed=1) == choose_units(top, 2, seed=1)


def test_mean_patches_average_nine_people_into_one_cell() -> None:
    patches = {7: [(float(v), np.full((4, 4, 3), v, np.float64)) for v in (0, 90, 180)]}
    ((value, mean),) = mean_patches(patches)[7]
    assert value == 90 and np.all(mean == 90)


@pytest.mark.data
def test_sface_receptive_fields_follow_its_explicit_padding() -> None:
    from shared.face.sface import load_sface
    from training.style.visualize import keras_spec, receptive_field

    model = load_sface(warm_up=False).model
    assert receptive_field(keras_spec(model, "layer00")) == (3, 1, 0.0)
    assert receptive_field(keras_spec(model, "layer03")) == (7, 2, 0.0)
    assert receptive_field(keras_spec(model, "layer26")) == (159, 16, 0.0)
