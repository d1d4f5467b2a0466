"""Feed-forward style networks: the committed weights, their checks, what they do, and training."""

from __future__ import annotations

import json
import shutil
from argparse import Namespace
from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf

from shared.style import costs
from shared.style.catalog import NETWORKS_DIR, available_networks
from shared.style.fast import (
    Architecture,
    InstanceNormalization,
    StyleNetworkError,
    assign_weights,
    build_network,
    cpu_flags,
    load_network,
    padded_shape,
    read_network,
    resolve_precision,
)
from shared.style.gatys import DEFAULT_STYLE_LAYERS
from shared.style.vgg import feature_extractor
from training.style.crops import crop_weights, random_crops
from training.style.deepening import with_identity_blocks
from training.style.training import (
    LFW_FACE_BOX,
    StepRecord,
    TrainingConfig,
    face_content_cost,
    read_rgb,
    train,
    with_face_channel,
)

SHIPPED = ("starry_night", "great_wave", "the_scream", "shipwreck")


def test_the_shipped_networks_are_small_and_carry_their_card() -> None:
    assert set(SHIPPED) <= set(available_networks())
    for name in SHIPPED:
        assert (NETWORKS_DIR / f"{name}.npz").stat().st_size < 10 * 1024 * 1024
        card = json.loads((NETWORKS_DIR / f"{name}.json").read_text())
        assert card["style_image"] == f"{name}.jpg" and card["total_steps"] >= 1000
        assert {"alpha", "beta", "content_layer", "style_layers", "seed"} <= card.keys()


def test_a_missing_network_lists_the_available_ones(tmp_path: Path) -> None:
    with pytest.raises(StyleNetworkError, match="no style network 'nope'.*starry_night"):
        load_network("nope")


def test_a_damaged_weights_file_is_refused(tmp_path: Path) -> None:
    for suffix in (".npz", ".json"):
        shutil.copy(NETWORKS_DIR / f"starry_night{suffix}", tmp_path / f"starry_night{suffix}")
    weights = tmp_path / "starry_night.npz"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(StyleNetworkError, match="does not match the sha256"):
        load_network("starry_night", tmp_path)


@pytest.mark.parametrize("shape", [(360, 640), (361, 643), (50, 30), (4, 5)])
def test_any_frame_size_comes_back_the_same_size(shape: tuple[int, int]) -> None:
    frame = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    painted = load_network("starry_night").stylize(frame)
    assert painted.shape == frame.shape and painted.dtype == np.uint8
    assert padded_shape(*shape)[0] % 8 == 0 and padded_shape(*shape)[1] % 8 == 0


def test_large_images_are_shrunk_before_painting() -> None:
    frame = np.zeros((100, 4000, 3), np.uint8)
    assert load_network("starry_night").stylize(frame, max_side=400).shape == (10, 400, 3)


def test_auto_precision_is_bfloat16_only_on_cpus_with_native_bfloat16(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\nprocessor\t: 1\n"
    )
    assert cpu_flags(cpuinfo) >= {"avx2", "avx512_bf16"}
    assert cpu_flags(tmp_path / "missing") == frozenset()
    assert resolve_precision("auto", cpu_flags(cpuinfo)) == "bfloat16"
    assert resolve_precision("auto", frozenset({"avx2", "avx512f"})) == "float32"
    assert resolve_precision("auto", frozenset({"amx_bf16"})) == "bfloat16"
    assert resolve_precision("float32", frozenset({"avx512_bf16"})) == "float32"
    assert resolve_precision("bfloat16", frozenset()) == "bfloat16"


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_an_image_alone_and_in_a_batch_is_normalised_alike(precision: str) -> None:
    """One image takes the fused batch-norm kernel (its batch statistics are its own), a batch
    the per-image moments; both must be instance normalisation, e.g. the biased variance."""
    norm = InstanceNormalization(dtype="mixed_bfloat16" if precision == "bfloat16" else "float32")
    rng = np.random.default_rng(0)
    images = rng.normal(3.0, 2.0, (2, 9, 13, 4)).astype(np.float32) * rng.uniform(0.1, 5, 4)
    norm.build(images.shape)
    norm.scale.assign(rng.uniform(0.5, 2, 4))
    norm.offset.assign(rng.normal(0, 1, 4))
    batch = tf.cast(norm(tf.constant(images)), tf.float32).numpy()
    alone = [tf.cast(norm(tf.constant(image[None])), tf.float32).numpy()[0] for image in images]
    tolerance = 2e-2 if precision == "bfloat16" else 1e-4
    np.testing.assert_allclose(batch, np.stack(alone), atol=tolerance * 4)
    expected = (images - images.mean((1, 2), keepdims=True)) / np.sqrt(
        images.var((1, 2), keepdims=True) + 1e-5
    ) * norm.scale.numpy() + norm.offset.numpy()
    np.testing.assert_allclose(np.stack(alone), expected, atol=tolerance * 4)


def test_cards_without_a_padding_are_the_zero_padded_networks() -> None:
    old = {"widths": [16, 32, 64, 128], "residual_blocks": 4, "edge_kernel": 5}
    assert Architecture.from_json(old).padding == "zeros"
    assert Architecture.from_json(Architecture().to_json()) == Architecture()
    assert Architecture().padding == "reflect"


@pytest.mark.data
def test_bfloat16_paints_what_float32_paints(shared_data: Path) -> None:
    """The bfloat16 network is the same network in a coarser type: on a real photo it stays
    within a grey level of float32 on average (measured 0.6) and a few levels at the 99th
    percentile (3); weights that missed a layer, or a layer left out of the cast, would paint
    another picture."""
    content = read_rgb(shared_data / "style" / "content" / "tubingen.jpg")
    content = cv2.resize(content, (320, 184), interpolation=cv2.INTER_AREA)
    single = load_network("starry_night", precision="float32")
    half = load_network("starry_night", precision="bfloat16")
    assert (single.precision, half.precision) == ("float32", "bfloat16")
    difference = np.abs(single.stylize(content).astype(int) - half.stylize(content).astype(int))
    assert difference.mean() < 1.5 and np.percentile(difference, 99) <= 8


def edge_step(image: np.ndarray, width: int = 8) -> float:
    """The largest jump in mean colour between an edge's outer strip and the strip inside it."""
    pixels = image.astype(float)
    strips = [
        (pixels[:width], pixels[width : 2 * width]),
        (pixels[-width:], pixels[-2 * width : -width]),
        (pixels[:, :width], pixels[:, width : 2 * width]),
        (pixels[:, -width:], pixels[:, -2 * width : -width]),
    ]
    return max(float(np.abs(a.mean((0, 1)) - b.mean((0, 1))).max()) for a, b in strips)


@pytest.mark.data
@pytest.mark.parametrize("name", SHIPPED)
def test_a_network_paints_no_band_along_the_frame_edges(name: str, shared_data: Path) -> None:
    """With zero padding the networks found the frame's edge and painted a band along it (edge
    step 47 grey levels for the zero-padded `starry_night` on this photo, 129 for `the_scream`);
    reflection padding leaves steps of the painted texture itself (measured 8-26: `great_wave`'s
    wave crests reach the bottom edge; the photo's own: 7)."""
    content = read_rgb(shared_data / "style" / "content" / "tubingen.jpg")
    content = cv2.resize(content, (640, 480), interpolation=cv2.INTER_AREA)
    assert edge_step(load_network(name).stylize(content)) < 35


@pytest.mark.data
@pytest.mark.parametrize("name", SHIPPED)
def test_a_network_moves_a_held_out_photo_towards_its_painting(
    name: str, shared_data: Path
) -> None:
    """On a content photo it never saw, the output's style cost against the painting is under
    0.3 of the photo's own, and its content cost (at the training's content layer, Gatys'
    block4_conv2) under 0.8 of the painting's: it is neither the photo nor the painting, and a
    network that paints a texture sheet over the layout fails. (Measured on the three content
    photos, the four networks: style 0.07-0.22, content 0.49-0.71; Gatys' J lets the style take
    much of the layout, which the bench measures against Gatys' own result, docs/style.md.)"""
    content = read_rgb(shared_data / "style" / "content" / "tubingen.jpg")
    content = tf.image.resize(content, (192, 256), antialias=True).numpy().astype(np.uint8)
    painting = read_rgb(shared_data / "style" / "paintings" / f"{name}.jpg")
    painting = tf.image.resize(painting, (192, 256), antialias=True).numpy().astype(np.float32)
    painted = load_network(name).stylize(content)

    layer = TrainingConfig(style_image=Path(), name=name).content_layer
    extractor = feature_extractor([layer, *DEFAULT_STYLE_LAYERS])
    features = {
        key: extractor(tf.constant(image[None].astype(np.float32)))
        for key, image in {"C": content, "S": painting, "G": painted}.items()
    }

    def style_cost(key: str) -> float:
        return float(costs.style_cost(features["S"], features[key], DEFAULT_STYLE_LAYERS))

    def content_cost(key: str) -> float:
        return float(costs.content_cost(features["C"][layer], features[key][layer]))

    assert style_cost("G") < 0.3 * style_cost("C")
    assert content_cost("G") < 0.8 * content_cost("S")


@pytest.mark.data
def test_training_lowers_j_and_writes_a_loadable_network(shared_data: Path, tmp_path: Path) -> None:
    config = TrainingConfig(
        style_image=shared_data / "style" / "paintings" / "the_scream.jpg",
        name="scream-test",
        crop=64,
        batch_size=2,
        steps=12,
        lfw_images=16,
        checkpoint_every=6,
        architecture=Architecture(padding="zeros"),
    )
    history = train(config, shared_data, tmp_path)
    assert np.mean([r.total for r in history[-3:]]) < 0.5 * np.mean([r.total for r in history[:3]])
    lines = (tmp_path / "scream-test.curve.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == list(range(1, 13))
    network = load_network("scream-test", tmp_path)
    assert network.card["steps"] == 12 and network.card["style_image"] == "the_scream.jpg"
    assert network.stylize(np.zeros((16, 16, 3), np.uint8)).shape == (16, 16, 3)

    resumed = TrainingConfig(
        style_image=config.style_image,
        name="scream-resumed",
        crop=64,
        batch_size=2,
        steps=3,
        lfw_images=16,
        landscape_share=0.5,
        resume_from=tmp_path / "scream-test.npz",
    )
    more = train(resumed, shared_data, tmp_path)  # starts where the first run stopped
    assert more[0].total < 0.5 * np.mean([r.total for r in history[:3]])
    card = load_network("scream-resumed", tmp_path).card
    assert card["steps"] == 3 and card["total_steps"] == 15 and card["resumed_from"]["steps"] == 12
    assert "50% of crops from the landscape training photos (picosdeeuropa" in card["content_data"]
    # the weights moved into this run's architecture: the same layers, reflection padding
    assert network.card["architecture"]["padding"] == "zeros"
    assert card["architecture"]["padding"] == "reflect"


def test_a_deeper_network_grown_from_a_shipped_one_paints_as_it_until_trained() -> None:
    """A fifth residual block starts as the identity, so training a deeper network from a shipped
    one starts from that network's painting, not from a broken one; the new block's convolutions
    are not zero, so training reaches it."""
    _, weights = read_network("shipwreck", NETWORKS_DIR)
    shipped, deeper = build_network(), build_network(Architecture(residual_blocks=5))
    assign_weights(shipped, weights, "shipped")
    grown = with_identity_blocks(weights, 5)
    assign_weights(deeper, grown, "grown")
    frame = np.random.default_rng(0).uniform(0, 255, (1, 48, 64, 3)).astype(np.float32)
    assert np.array_equal(shipped(frame).numpy(), deeper(frame).numpy())
    assert (
        np.abs(grown["res4a_conv/kernel"]).max() > 0
        and np.abs(grown["res4b_conv/kernel"]).max() > 0
    )
    assert with_identity_blocks(weights, 4).keys() == weights.keys()
    with pytest.raises(ValueError, match="has 4 residual blocks; cannot shrink it to 3"):
        with_identity_blocks(weights, 3)


def test_resuming_a_deeper_network_keeps_its_blocks_unless_told_otherwise(tmp_path: Path) -> None:
    """An interrupted five-block run resumes as five blocks without the flag being repeated."""
    from services.cli.style import _residual_blocks

    (tmp_path / "deep.json").write_text(json.dumps({"architecture": {"residual_blocks": 5}}))
    start = tmp_path / "deep.npz"
    asked = lambda blocks, resume: Namespace(residual_blocks=blocks, resume_from=resume)  # noqa: E731
    assert _residual_blocks(asked(None, start), 4) == 5
    assert _residual_blocks(asked(6, start), 4) == 6
    assert _residual_blocks(asked(None, None), 4) == 4


def ten_small_steps(
    shared_data: Path, output: Path, painting: str, name: str, **options
) -> list[StepRecord]:
    """Ten steps of 2 crops of 64 px continuing the shipped ``painting`` network: same seed, so
    two calls differing only in ``options`` train on the same crops."""
    config = TrainingConfig(
        style_image=shared_data / "style" / "paintings" / f"{painting}.jpg",
        name=name,
        crop=64,
        batch_size=2,
        steps=10,
        resume_from=NETWORKS_DIR / f"{painting}.npz",
        **options,
    )
    return train(config, shared_data, output)


@pytest.mark.data
def test_the_edge_term_teaches_a_network_to_paint_its_edges_as_it_paints_inside(
    shared_data: Path, tmp_path: Path
) -> None:
    """From a network that paints a band, the same steps on the same crops with and without the
    edge-consistency weight: with it, a crop's edge comes closer to the same pixels painted inside
    a larger view (measured: 2,276 grey levels squared at the start; over the last four of ten
    steps 1,489 without the weight, 457 with it)."""

    def edge_after(weight: float) -> float:
        history = ten_small_steps(
            shared_data,
            tmp_path,
            "the_scream",
            f"edge-{weight:g}",
            lfw_images=16,
            edge_weight=weight,
        )
        assert history[0].edge > 0  # measured even at a negligible weight
        return float(np.mean([r.edge for r in history[-4:]]))

    assert edge_after(6e8) < 0.6 * edge_after(1e-9)
    assert load_network("edge-6e+08", tmp_path).card["edge_weight"] == 6e8


@pytest.mark.data
def test_the_face_weight_teaches_a_network_to_keep_the_face(
    shared_data: Path, tmp_path: Path
) -> None:
    """From `shipwreck`, which paints a gold patch over faces, the same steps on the same crops
    with and without the face weight: with it, the faces' content cost falls further (measured
    over the last four of ten steps: 29,024 without the weight, 21,231 with it)."""

    def face_after(weight: float) -> float:
        history = ten_small_steps(  # 200 LFW images: most crops a face, as in the real runs
            shared_data,
            tmp_path,
            "shipwreck",
            f"face-{weight:g}",
            lfw_images=200,
            face_weight=weight,
        )
        assert max(r.face for r in history) > 0  # measured even at a negligible weight
        return float(np.mean([r.face for r in history[-4:]]))

    assert face_after(4.0) < 0.8 * face_after(1e-9)
    card = load_network("face-4", tmp_path).card
    assert card["face_weight"] == 4.0 and card["face_box"] == list(LFW_FACE_BOX)


def test_a_crop_carries_where_its_face_is_through_resizing_cropping_and_mirroring() -> None:
    """The face channel goes through the very resize, crop and mirror its picture does: a
    picture that is itself the face box, white on black, comes out equal to its own channel."""
    box_picture = np.zeros((250, 250, 3), np.uint8)
    x, y, w, h = LFW_FACE_BOX
    box_picture[y : y + h, x : x + w] = 255
    marked = with_face_channel(box_picture, LFW_FACE_BOX)
    assert marked.shape == (250, 250, 4) and (marked[..., 3] == marked[..., 0]).all()
    assert not with_face_channel(box_picture, None)[..., 3].any()

    batch = next(random_crops([marked], 96, 16, np.random.default_rng(3)))
    assert batch.shape == (16, 96, 96, 4)
    np.testing.assert_array_equal(batch[..., 3], batch[..., 0])
    assert 0.1 < (batch[..., 3] > 127).mean() < 0.9  # the crops hold face and surroundings


def test_the_face_term_is_the_content_cost_over_the_face_alone() -> None:
    rng = np.random.default_rng(4)
    a_C = tf.constant(rng.normal(size=(2, 6, 6, 8)).astype(np.float32))  # noqa: N806
    a_G = tf.constant(rng.normal(size=(2, 6, 6, 8)).astype(np.float32))  # noqa: N806
    everywhere = tf.ones((2, 48, 48, 1))
    whole = [float(costs.content_cost(a_C[b : b + 1], a_G[b : b + 1])) for b in range(2)]
    assert float(face_content_cost(a_C, a_G, everywhere)) == pytest.approx(np.mean(whole), 1e-5)

    face = np.zeros((2, 48, 48, 1), np.float32)
    face[0, 8:24, 8:24] = 1.0  # positions (1..2, 1..2) of the 6x6 grid, in the first crop only
    same_on_face = a_G.numpy().copy()
    same_on_face[0, 1:3, 1:3] = a_C.numpy()[0, 1:3, 1:3]
    assert float(face_content_cost(a_C, tf.constant(same_on_face), tf.constant(face))) == 0.0
    expected = float(np.mean(np.square(a_C.numpy()[0, 1:3, 1:3] - a_G.numpy()[0, 1:3, 1:3])) / 4)
    assert float(face_content_cost(a_C, a_G, tf.constant(face))) == pytest.approx(expected, 1e-5)
    assert float(face_content_cost(a_C, a_G, tf.zeros((2, 48, 48, 1)))) == 0.0


def test_each_group_of_content_gets_its_share_of_the_crops() -> None:
    """Six landscape photos among thousands of faces would be 0.2% of crops if images were drawn
    uniformly; weighted, they get the share asked for."""
    faces = [np.zeros((64, 64, 3), np.uint8)] * 98
    landscapes = [np.full((64, 64, 3), 255, np.uint8)] * 2
    weights = crop_weights((len(faces), len(landscapes)), (0.7, 0.3))
    assert weights.sum() == pytest.approx(1.0)
    batch = next(random_crops(faces + landscapes, 32, 2000, np.random.default_rng(0), weights))
    assert (batch.mean(axis=(1, 2, 3)) > 128).mean() == pytest.approx(0.3, abs=0.03)


@pytest.mark.data
def test_the_training_loss_is_gatys_j_averaged_over_the_batch(shared_data: Path) -> None:
    """The networks minimise exactly the J that Gatys' optimisation does, image by image."""
    from training.style.training import PerceptualLoss

    config = TrainingConfig(
        style_image=shared_data / "style" / "paintings" / "great_wave.jpg", name="x", crop=48
    )
    loss = PerceptualLoss(config)
    rng = np.random.default_rng(1)
    content = tf.constant(rng.uniform(0, 255, (2, 48, 48, 3)).astype(np.float32))
    generated = tf.constant(rng.uniform(0, 255, (2, 48, 48, 3)).astype(np.float32))
    total, j_content, j_style, tv, j_face = (float(v) for v in loss(content, generated))
    assert j_face == 0.0  # no face given

    expected = []
    for b in range(2):
        c = loss.extractor(content[b : b + 1])
        g = loss.extractor(generated[b : b + 1])
        jc = costs.content_cost(c[config.content_layer], g[config.content_layer])
        js = costs.style_cost(loss.a_S, g, config.style_layers)
        t = costs.total_variation(generated[b : b + 1])
        expected.append(
            [
                float(config.alpha * jc + config.beta * js + config.tv_weight * t),
                float(jc),
                float(js),
                float(t),
            ]
        )
    np.testing.assert_allclose(
        [total, j_content, j_style, tv], np.mean(expected, axis=0), rtol=1e-4
    )


def test_the_paintings_strokes_are_matched_per_position_whatever_its_pixel_count(
    tmp_path: Path,
) -> None:
    """With ``style_side`` the painting keeps its own scale and its Grams count per position: the
    same texture in a picture four times larger (tiled 2x2) is the same style target, so the
    strokes a network learns have the size the painting has at that side."""
    from training.style.training import PerceptualLoss

    rng = np.random.default_rng(3)
    tile = cv2.GaussianBlur(rng.uniform(0, 255, (64, 64, 3)).astype(np.float32), (0, 0), 2)
    tile = np.tile(tile, (2, 2, 1))  # periodic, so tiling adds no new statistics
    paths = {}
    for name, image in {"small": tile, "large": np.tile(tile, (2, 2, 1))}.items():
        paths[name] = tmp_path / f"{name}.png"
        cv2.imwrite(str(paths[name]), image.astype(np.uint8))
    generated = tf.constant(tile[None, :48, :48])  # the texture at the painting's own scale
    style = {}
    for name, side in {"small": 128, "large": 256}.items():
        config = TrainingConfig(style_image=paths[name], name=name, crop=48, style_side=side)
        style[name] = float(PerceptualLoss(config)(generated, generated)[2])
    # the same target but for the borders (measured 4.4e6 and 6.6e6; unscaled Grams: 1e8 and more)
    assert style["large"] < 2 * style["small"]
    squeezed = TrainingConfig(style_image=paths["large"], name="squeezed", crop=48, style_side=None)
    # squeezed to the crop, the painting's strokes shrink: the texture no longer matches them
    assert float(PerceptualLoss(squeezed)(generated, generated)[2]) > 5 * style["small"]


def test_style_layer_weights_replace_the_reports_one_by_one() -> None:
    """``--style-layers block3_conv1=0.6`` changes that layer alone; an unknown layer or a weight
    that is not a number at least 0 is refused before a run starts."""
    from services.cli.style import _style_layers
    from shared.style.gatys import DEFAULT_STYLE_LAYERS

    assert _style_layers(None) == DEFAULT_STYLE_LAYERS
    layers = _style_layers(["block3_conv1=0.6", "block5_conv1=0"])
    assert layers == {**DEFAULT_STYLE_LAYERS, "block3_conv1": 0.6, "block5_conv1": 0.0}
    for wrong in ("block3_conv2=0.5", "block3_conv1", "block3_conv1=much", "block3_conv1=-1"):
        with pytest.raises(SystemExit, match="is not LAYER=WEIGHT"):
            _style_layers([wrong])
