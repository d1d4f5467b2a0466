"""Zeiler-Fergus patch grids: receptive-field arithmetic, top-k selection, cropping, grid layout.

No weights or data needed: the arithmetic is checked against hand-computed values and the
selection against synthetic "models" whose strongest patches are known.
"""

from __future__ import annotations

import numpy as np
import pytest

from training.style.visualize import (
    crop_patch,
    receptive_field,
    render_grid,
    top_patches,
    vgg16_spec,
)


@pytest.mark.parametrize(
    ("layer", "expected"),
    [
        ("block1_conv1", (3, 1, 0.0)),
        ("block1_conv2", (5, 1, 0.0)),
        # 2x2/2 pool over two 5-pixel fields one pixel apart: 6 pixels, centred between them.
        ("block1_pool", (6, 2, 0.5)),
        ("block2_conv1", (10, 2, 0.5)),
        ("block2_pool", (16, 4, 1.5)),
        ("block3_conv3", (40, 4, 1.5)),
        ("block4_conv3", (92, 8, 3.5)),
        ("block5_conv3", (196, 16, 7.5)),  # the published value for conv5_3
        ("block5_pool", (212, 32, 15.5)),
    ],
)
def test_vgg16_receptive_fields(layer, expected):
    assert receptive_field(vgg16_spec(layer)) == expected


def test_receptive_field_of_a_strided_valid_stack():
    # dlib face ResNet's stem: 7x7/2 valid conv, then 3x3/2 valid max pool.
    assert receptive_field([(7, 2, 0)]) == (7, 2, 3.0)
    assert receptive_field([(7, 2, 0), (3, 2, 0)]) == (11, 4, 5.0)
    assert receptive_field([]) == (1, 1, 0.0)


def test_unknown_vgg_layer_is_refused():
    with pytest.raises(ValueError, match="unknown VGG16 layer"):
        vgg16_spec("block6_conv1")


def test_crop_patch_centres_and_pads():
    image = np.arange(5 * 5 * 1, dtype=np.uint8).reshape(5, 5, 1) + 1
    inner = crop_patch(image, 2, 3, (3, 1, 0.0))
    assert np.array_equal(inner[..., 0], image[1:4, 2:5, 0])
    corner = crop_patch(image, 0, 0, (3, 1, 0.0))
    assert corner[0].sum() == 0 and corner[:, 0].sum() == 0  # outside the image: zeros
    assert np.array_equal(corner[1:, 1:, 0], image[:2, :2, 0])
    # stride 2, offset 0.5: output (1, 1) is centred on input pixel 2.5 -> pixels 0..5 of a 6-field
    strided = crop_patch(np.ones((8, 8, 1), np.uint8), 1, 1, (6, 2, 0.5))
    assert strided.shape == (6, 6, 1) and strided.sum() == 36


def _planted(value: float, row: int, col: int, size: int = 6) -> np.ndarray:
    image = np.zeros((size, size, 3), np.float32)
    image[row, col, 0] = value  # unit 0 is the red channel
    image[size - 1 - row, col, 2] = 255 - value  # unit 2: blue, ranked the other way round
    return image


def test_top_patches_keeps_the_strongest_in_order():
    values = [10.0, 250.0, 40.0, 200.0, 90.0, 5.0]
    images = [_planted(v, i % 6, (2 * i) % 6) for i, v in enumerate(values)]

    def identity(batch):  # the "layer" is the input: unit c = colour channel c, field 1 pixel
        return batch

    result = top_patches(identity, images, units=[0, 2], receptive_field=(1, 1, 0.0), k=3)
    assert [v for v, _ in result[0]] == [250.0, 200.0, 90.0]
    assert [v for v, _ in result[2]] == [250.0, 245.0, 215.0]  # 255 - 5, 255 - 10, 255 - 40
    # each patch is the 1x1 input at the unit's argmax
    for value, patch in result[0]:
        assert patch.shape == (1, 1, 3) and patch[0, 0, 0] == value


def test_top_patches_crops_the_receptive_field_around_the_argmax():
    image = np.zeros((10, 10, 3), np.float32)
    image[4:7, 5:8] = 7.0  # a 3x3 blob centred on (5, 6)
    image[5, 6, 1] = 100.0

    def box_sum(batch):  # a 3x3 'same' box filter: its strongest position is the blob centre
        padded = np.pad(batch, ((0, 0), (1, 1), (1, 1), (0, 0)))
        return sum(padded[:, r : r + 10, c : c + 10] for r in range(3) for c in range(3))

    ((value, patch),) = top_patches(box_sum, [image], [1], (3, 1, 0.0), k=9)[1]
    assert value == pytest.approx(8 * 7 + 100)
    assert np.array_equal(patch, image[4:7, 5:8])


def test_top_patches_with_fewer_images_than_k():
    images = [np.full((4, 4, 3), v, np.float32) for v in (1.0, 3.0)]
    result = top_patches(lambda b: b, images, [1], (1, 1, 0.0), k=9)
    assert [v for v, _ in result[1]] == [3.0, 1.0]


def test_render_grid_shape_and_content():
    patch = np.full((5, 5, 3), 200, np.uint8)
    results = {0: [(1.0, patch)] * 9, 7: [(1.0, patch)] * 4}
    grid = render_grid(results, "vgg16 block1_conv1", cell=16, k=9, gap=2, label_width=50)
    assert grid.dtype == np.uint8
    assert grid.shape == (20 + 2 * 18 + 2, 50 + 9 * 18 + 2, 3)
    first = grid[20 + 2 : 20 + 2 + 16, 50 + 2 : 50 + 2 + 16]
    assert (first == 200).all()
    # row 2 has 4 patches: the 5th cell is the dark-grey placeholder
    x = 50 + 2 + 4 * 18
    y = 20 + 2 + 18
    assert (grid[y : y + 16, x : x + 16] == 64).all()


def test_crop_patch_caps_a_field_larger_than_the_image():
    image = np.ones((150, 150, 3), np.uint8)
    # face con28: size 899, stride 64, offset 65 -> unit (0, 0) centred on pixel 65
    patch = crop_patch(image, 0, 0, (899, 64, 65.0))
    assert patch.shape == (150, 150, 3)
    # a 150-wide window centred on 65 spans pixels -9.5..139.5, rounded up to -9..140
    assert not patch[:, :9].any() and not patch[:9].any() and patch[9:, 9:].all()


def test_top_patches_refuses_a_unit_the_layer_lacks():
    with pytest.raises(ValueError, match="the layer has 3"):
        top_patches(lambda b: b, [np.zeros((4, 4, 3), np.float32)], [3], (1, 1, 0.0))
