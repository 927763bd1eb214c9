"""The feature pyramid of the zoo's backbones (`include_top=False`).

Every expected channel count comes from the reference architectures'
description, `../shared/reference/ARCHITECTURES.md` (its section on each
model; the AutoSlim channel lists are copied from its "Channel lists"),
not from the builders: for each level, the output channels of the last
block (or stage) at that stride, at every width.
"""

import math

import keras
import numpy as np
import pytest

from keras_slimmable import SlimmableModel
from keras_slimmable import zoo

SIZE = 64  # every level k is SIZE / 2**k pixels square


def _make_divisible(value):
    """ARCHITECTURES.md, "Channel rounding" (divisor 8, minimum 1)."""
    new = max(1, int(value + 4) // 8 * 8)
    return new + 8 if new < 0.9 * value else new


def _us_channels(full, widths):
    """ARCHITECTURES.md, "Channel counts at any width": md(C * w)."""
    return tuple(_make_divisible(full * w) for w in widths)


US_V1_WIDTHS = (0.25, 0.3, 0.5, 1.0)
US_V2_WIDTHS = (0.35, 0.4, 0.6, 1.0)

# name: (builder arguments, widths run, the level's layer, its channels
# per width run).
CASES = {
    # make_divisible(c * w), c the pointwise output of blocks 3, 5, 11
    # and 13 (strides 4, 8, 16, 32): 128, 256, 512, 1024.
    "s_mobilenet_v1": (
        {},
        (0.25, 0.5, 0.75, 1.0),
        {
            "P2": ("block3_pointwise_relu", (32, 64, 96, 128)),
            "P3": ("block5_pointwise_relu", (64, 128, 192, 256)),
            "P4": ("block11_pointwise_relu", (128, 256, 384, 512)),
            "P5": ("block13_pointwise_relu", (256, 512, 768, 1024)),
        },
    ),
    # make_divisible(c * w) for c = 24, 32, 96 (the last blocks at
    # strides 4, 8, 16); P5 is the tail, a fixed 1280 at every width.
    "s_mobilenet_v2": (
        {},
        (0.35, 0.5, 0.75, 1.0),
        {
            "P2": ("block3_add", (8, 16, 24, 24)),
            "P3": ("block6_add", (16, 16, 24, 32)),
            "P4": ("block13_add", (32, 48, 72, 96)),
            "P5": ("last_relu", (1280, 1280, 1280, 1280)),
        },
    ),
    # int(c * w), c = 240, 480, 960; no P2 (the stem's unpadded max pool).
    "s_shufflenet": (
        {},
        (0.5, 1.0, 2.0),
        {
            "P3": ("stage2_unit4_out", (120, 240, 480)),
            "P4": ("stage3_unit8_out", (240, 480, 960)),
            "P5": ("stage4_unit4_out", (480, 960, 1920)),
        },
    ),
    # int(f * w * 4), f = 64, 128, 256, 512.
    "s_resnet50": (
        {},
        (0.25, 0.5, 0.75, 1.0),
        {
            "P2": ("stage1_block3_out", (64, 128, 192, 256)),
            "P3": ("stage2_block4_out", (128, 256, 384, 512)),
            "P4": ("stage3_block6_out", (256, 512, 768, 1024)),
            "P5": ("stage4_block3_out", (512, 1024, 1536, 2048)),
        },
    ),
    "s_resnet101": (
        {"widths": (0.25, 1.0)},
        (0.25, 1.0),
        {
            "P2": ("stage1_block3_out", (64, 256)),
            "P3": ("stage2_block4_out", (128, 512)),
            "P4": ("stage3_block23_out", (256, 1024)),
            "P5": ("stage4_block3_out", (512, 2048)),
        },
    ),
    "s_resnet152": (
        {"widths": (0.25, 1.0)},
        (0.25, 1.0),
        {
            "P2": ("stage1_block3_out", (64, 256)),
            "P3": ("stage2_block8_out", (128, 512)),
            "P4": ("stage3_block36_out", (256, 1024)),
            "P5": ("stage4_block3_out", (512, 2048)),
        },
    ),
    # Any width of the range, from the US rule; 0.3 is off the 0.025 grid.
    "us_mobilenet_v1": (
        {"calibrated_widths": US_V1_WIDTHS},
        US_V1_WIDTHS,
        {
            "P2": ("block3_pointwise_relu", _us_channels(128, US_V1_WIDTHS)),
            "P3": ("block5_pointwise_relu", _us_channels(256, US_V1_WIDTHS)),
            "P4": ("block11_pointwise_relu", _us_channels(512, US_V1_WIDTHS)),
            "P5": ("block13_pointwise_relu", _us_channels(1024, US_V1_WIDTHS)),
        },
    ),
    "us_mobilenet_v2": (
        {"calibrated_widths": US_V2_WIDTHS},
        US_V2_WIDTHS,
        {
            "P2": ("block3_add", _us_channels(24, US_V2_WIDTHS)),
            "P3": ("block6_add", _us_channels(32, US_V2_WIDTHS)),
            "P4": ("block13_add", _us_channels(96, US_V2_WIDTHS)),
            "P5": ("last_relu", (1280,) * 4),
        },
    ),
    # Entries [3], [5], [11], [13] of the lists (blocks 3, 5, 11, 13).
    "autoslim_mobilenet_v1": (
        {},
        (1.0, 2.0, 3.0),
        {
            "P2": ("block3_pointwise_relu", (48, 64, 144)),
            "P3": ("block5_pointwise_relu", (88, 184, 232)),
            "P4": ("block11_pointwise_relu", (224, 560, 560)),
            "P5": ("block13_pointwise_relu", (744, 1128, 1128)),
        },
    ),
    # Entries [5], [11], [25] (outputs of blocks 3, 6, 13) and [34] (tail).
    "autoslim_mobilenet_v2": (
        {},
        (1.0, 2.0, 3.0),
        {
            "P2": ("block3_add", (16, 16, 24)),
            "P3": ("block6_add", (24, 24, 48)),
            "P4": ("block13_add", (64, 96, 144)),
            "P5": ("last_relu", (1920, 1920, 1920)),
        },
    ),
    # Entries [7], [13], [23] (outputs of blocks 4, 7, 12) and [34] (tail).
    "autoslim_mnasnet": (
        {},
        (1.0, 2.0, 3.0),
        {
            "P2": ("block4_add", (16, 24, 32)),
            "P3": ("block7_add", (32, 40, 64)),
            "P4": ("block12_add", (80, 80, 128)),
            "P5": ("last_relu", (1280, 1920, 1920)),
        },
    ),
    # The stage headers [1], [11], [24], [43] (each stage's output).
    "autoslim_resnet50": (
        {},
        (1.0, 2.0, 3.0, 4.0),
        {
            "P2": ("stage1_block3_out", (72, 72, 120, 192)),
            "P3": ("stage2_block4_out", (240, 280, 440, 512)),
            "P4": ("stage3_block6_out", (704, 880, 1024, 1024)),
            "P5": ("stage4_block3_out", (1680, 2016, 2016, 2016)),
        },
    ),
}


@pytest.fixture(scope="module")
def backbones():
    """The headless backbones at 64 x 64, built once per name."""
    built = {}

    def get(name):
        if name not in built:
            arguments = CASES[name][0]
            built[name] = getattr(zoo, name)(
                include_top=False, input_shape=(SIZE, SIZE, 3), **arguments
            )
        return built[name]

    return get


@pytest.mark.slow  # 3 to 9 s each: every width of a model, eagerly
@pytest.mark.parametrize("name", list(CASES))
def test_levels_sizes_and_channels_at_every_width(backbones, name):
    _, widths, expected = CASES[name]
    backbone = backbones(name)
    assert backbone.pyramid_levels == {
        level: layer for level, (layer, _) in expected.items()
    }
    outputs = backbone.pyramid_outputs
    assert list(outputs) == list(expected)
    for level, tensor in outputs.items():
        size = SIZE // 2 ** int(level[1:])
        assert tuple(tensor.shape[1:3]) == (size, size), level
        assert tensor is backbone.get_layer(expected[level][0]).output

    # The pyramid at every width, through a SlimmableModel of dict outputs.
    pyramid = SlimmableModel(
        backbone.input,
        outputs,
        widths=backbone.widths,
        width_range=backbone.width_range,
    )
    pyramid.cache_weight_slices = False
    images = np.random.default_rng(0).uniform(size=(1, SIZE, SIZE, 3))
    images = images.astype("float32")
    for index, width in enumerate(widths):
        features = pyramid(images, width=width, training=False)
        assert sorted(features) == sorted(expected)
        for level, (_, channels) in expected.items():
            size = SIZE // 2 ** int(level[1:])
            assert tuple(features[level].shape) == (
                1,
                size,
                size,
                channels[index],
            ), (level, width)


def test_resnet_levels_are_stage_outputs_not_the_last_layer_at_a_stride(
    backbones,
):
    """In graph order, the last layer at stride 4 is the next stage's first
    1x1 conv (and its batch norm and ReLU): 128 channels at width 1.0,
    not the stage's 256."""
    backbone = backbones("s_resnet50")
    level = backbone.get_layer("stage1_block3_out").output
    next_conv = backbone.get_layer("stage2_block1_relu1").output
    assert next_conv.shape[1:3] == level.shape[1:3]
    assert (level.shape[-1], next_conv.shape[-1]) == (256, 128)


def test_classifier_has_no_levels_and_an_unchanged_config():
    model = zoo.s_mobilenet_v1(input_shape=(SIZE, SIZE, 3), widths=(0.5, 1.0))
    assert model.pyramid_levels == {}
    assert model.pyramid_outputs == {}
    config = model.get_config()
    assert "pyramid_levels" not in config
    assert set(config) == {
        "name",
        "trainable",
        "layers",
        "input_layers",
        "output_layers",
        "widths",
        "width",
    }


def test_headless_with_pooling_keeps_the_levels():
    backbone = zoo.s_mobilenet_v1(
        include_top=False,
        pooling="avg",
        input_shape=(SIZE, SIZE, 3),
        widths=(0.5, 1.0),
    )
    assert backbone.pyramid_levels["P5"] == "block13_pointwise_relu"
    assert len(backbone.output.shape) == 2


@pytest.fixture(scope="module")
def small_backbone():
    return zoo.s_mobilenet_v1(
        include_top=False,
        pooling="avg",
        input_shape=(SIZE, SIZE, 3),
        widths=(0.5, 1.0),
    )


@pytest.mark.parametrize(
    "levels, message",
    [
        ({"p3": "block5_pointwise_relu"}, "'p3'"),
        ({"P": "block5_pointwise_relu"}, "'P'"),
        ({3: "block5_pointwise_relu"}, "key 3"),
        ({"P3": "no_such_layer"}, "'no_such_layer'"),
        ({"P3": 7}, "7"),
        ({"P5": "avg_pool"}, r"'avg_pool', whose output has shape \(None"),
        (["P3", "block5_pointwise_relu"], "must be a dict"),
    ],
)
def test_bad_pyramid_levels_name_the_value_and_change_nothing(
    small_backbone, levels, message
):
    before = small_backbone.pyramid_levels
    config = small_backbone.get_config()
    given = keras.tree.map_structure(lambda x: x, levels)
    with pytest.raises(ValueError, match=message):
        SlimmableModel(
            small_backbone.inputs,
            small_backbone.outputs,
            widths=small_backbone.widths,
            pyramid_levels=levels,
        )
    assert levels == given
    assert small_backbone.pyramid_levels == before
    assert small_backbone.get_config() == config


def test_pyramid_levels_is_a_copy(small_backbone):
    levels = small_backbone.pyramid_levels
    levels["P9"] = "avg_pool"
    del levels["P2"]
    assert list(small_backbone.pyramid_levels) == ["P2", "P3", "P4", "P5"]


def test_keras_round_trip_keeps_the_pyramid(tmp_path):
    backbone = zoo.s_mobilenet_v2(
        include_top=False, input_shape=(SIZE, SIZE, 3), widths=(0.35, 1.0)
    )
    config = backbone.get_config()
    assert config["pyramid_levels"] == backbone.pyramid_levels
    path = tmp_path / "backbone.keras"
    backbone.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, SlimmableModel)
    assert loaded.pyramid_levels == backbone.pyramid_levels
    assert {k: tuple(v.shape) for k, v in loaded.pyramid_outputs.items()} == {
        k: tuple(v.shape) for k, v in backbone.pyramid_outputs.items()
    }
    assert loaded.get_config()["pyramid_levels"] == config["pyramid_levels"]
    images = np.random.default_rng(1).uniform(size=(2, SIZE, SIZE, 3))
    for model in (backbone, loaded):
        model.cache_weight_slices = False
    features = [
        SlimmableModel(m.input, m.pyramid_outputs, widths=m.widths)(
            images.astype("float32"), width=0.35
        )
        for m in (backbone, loaded)
    ]
    for level in features[0]:
        np.testing.assert_array_equal(
            np.array(features[0][level]), np.array(features[1][level])
        )


def test_dict_output_pyramid_model_round_trips_its_config(small_backbone):
    pyramid = SlimmableModel(
        small_backbone.inputs,
        small_backbone.pyramid_outputs,
        widths=small_backbone.widths,
    )
    copy = SlimmableModel.from_config(pyramid.get_config())
    assert list(copy.output) == ["P2", "P3", "P4", "P5"]
    assert "pyramid_levels" not in pyramid.get_config()


@pytest.mark.parametrize("fold_batch_norm", [False, True])
def test_materialized_backbone_keeps_the_pyramid(fold_batch_norm):
    backbone = zoo.s_mobilenet_v2(
        include_top=False, input_shape=(SIZE, SIZE, 3), widths=(0.35, 1.0)
    )
    # Batch-norm statistics other than 0 / 1, so that folding shows.
    rng = np.random.default_rng(2)
    for variable in backbone.non_trainable_variables:
        if "moving_variance" in variable.path:
            variable.assign(rng.uniform(0.5, 2.0, variable.shape))
        elif "moving_mean" in variable.path:
            variable.assign(rng.normal(0.0, 0.1, variable.shape))
    plain = backbone.materialize(0.35, fold_batch_norm=fold_batch_norm)
    assert not isinstance(plain, SlimmableModel)
    assert list(plain.pyramid_outputs) == ["P2", "P3", "P4", "P5"]
    images = rng.uniform(size=(2, SIZE, SIZE, 3)).astype("float32")
    expected = SlimmableModel(
        backbone.input, backbone.pyramid_outputs, widths=backbone.widths
    )(images, width=0.35)
    got = keras.Model(plain.input, plain.pyramid_outputs)(images)
    for level, tensor in expected.items():
        assert tuple(got[level].shape) == tuple(tensor.shape)
        np.testing.assert_allclose(
            np.array(got[level]), np.array(tensor), rtol=1e-4, atol=1e-4
        )


def test_keras_hub_retinanet_takes_a_materialized_backbone():
    keras_hub = pytest.importorskip("keras_hub")
    backbone = zoo.s_mobilenet_v2(
        include_top=False, input_shape=(SIZE, SIZE, 3), widths=(0.35, 1.0)
    )
    plain = backbone.materialize(0.35)
    retinanet = keras_hub.models.RetinaNetBackbone(
        image_encoder=plain,
        min_level=3,
        max_level=5,
        use_p5=False,
        image_shape=(SIZE, SIZE, 3),
    )
    outputs = retinanet(np.zeros((1, SIZE, SIZE, 3), "float32"))
    assert sorted(outputs) == ["P3", "P4", "P5"]
    for level, tensor in outputs.items():
        size = SIZE // 2 ** int(level[1:])
        assert tuple(tensor.shape)[:3] == (1, size, size)
        assert math.isfinite(float(np.sum(np.array(tensor))))
