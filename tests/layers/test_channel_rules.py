"""The width as a value: channel rules (`ScaledChannels`) and
`width_scope(width=...)`.

Layers learn the active width itself, not only its position in a list, so
a layer with a channel rule runs at widths no list names. Golden numbers:
the rule of `ARCHITECTURES.md` computed independently here, and the
reference's US-MobileNet v1 MACs at width 0.31415926 in counts.json.
"""

import keras
import numpy as np
import pytest

import keras_slimmable
from keras_slimmable import ScaledChannels
from keras_slimmable.layers import SlimmableConv2D
from keras_slimmable.layers import SlimmableDense
from keras_slimmable.layers import SlimmableDepthwiseConv2D
from keras_slimmable.layers import SlimmableGroupedConv2D
from keras_slimmable.layers import SwitchableBatchNormalization
from keras_slimmable.widths import ActiveWidth
from keras_slimmable.widths import active_width
from keras_slimmable.widths import width_scope


def _reference_make_divisible(v, divisor=8, min_value=1):
    # ARCHITECTURES.md, "Channel rounding", written out independently.
    new = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new < 0.9 * v:
        new += divisor
    return new


@pytest.mark.parametrize("full", [32, 64, 96, 320, 1024])
@pytest.mark.parametrize("ratio", [1, 6])
def test_scaled_channels_is_the_reference_rule(full, ratio):
    rule = ScaledChannels(full * ratio, ratio=ratio)
    for step in range(31):  # 0.25 to 1.0 by 0.025, the reference's list
        width = 0.25 + 0.025 * step
        expected = (
            _reference_make_divisible(full * ratio * width / ratio) * ratio
        )
        assert rule(width) == expected, width
    assert rule.max_channels == full * ratio


def test_scaled_channels_refuses_widths_outside_its_range():
    rule = ScaledChannels(64)
    for bad in (0.0, -0.5, 1.5, True, "0.5"):
        with pytest.raises(ValueError, match=r"\(0, 1.0\]"):
            rule(bad)
    with pytest.raises(ValueError, match="rounding='round'"):
        ScaledChannels(64, rounding="round")
    # make_divisible rounds 8 * 0.3 = 2.4 up to 9 > 8 channels.
    with pytest.raises(ValueError, match="up to 9 channels, more than the 8"):
        ScaledChannels(8)(0.3)


def test_width_scope_carries_the_width_and_its_index():
    assert active_width() is None
    with width_scope(2, width=0.75):
        assert active_width() == ActiveWidth(0.75, 2)
        assert active_width().sampled is None
        assert active_width().channels is None
        with width_scope(width=0.4):
            assert active_width().width == 0.4
            assert active_width().index is None
        assert active_width().index == 2
    assert active_width() is None
    for bad in (0, -1.0, float("nan"), "0.5", True):
        with pytest.raises(ValueError, match="positive number"):
            with width_scope(width=bad):
                pass


@pytest.mark.parametrize(
    "make",
    [
        lambda: SlimmableConv2D(ScaledChannels(16), 3, padding=1),
        lambda: SlimmableGroupedConv2D(
            ScaledChannels(48, ratio=3), 1, groups=3, split_inputs=False
        ),
        lambda: SlimmableDepthwiseConv2D(3, padding=1),
    ],
    ids=["conv", "grouped", "depthwise"],
)
def test_layers_with_a_rule_run_at_any_width(make):
    layer = make()
    x = np.random.default_rng(1).normal(size=(2, 5, 5, 16)).astype("float32")
    full = keras.ops.convert_to_numpy(layer(x))
    for width in (0.3, 0.4, 0.55, 1.0):
        channels_in = _reference_make_divisible(16 * width)
        with width_scope(width=width):
            y = keras.ops.convert_to_numpy(layer(x[..., :channels_in]))
        if isinstance(layer, SlimmableDepthwiseConv2D):
            expected_out = channels_in
        elif isinstance(layer, SlimmableGroupedConv2D):
            expected_out = _reference_make_divisible(48 * width / 3) * 3
        else:
            expected_out = _reference_make_divisible(16 * width)
        assert y.shape == (2, 5, 5, expected_out)
        if width == 1.0:
            np.testing.assert_allclose(y, full, rtol=1e-5, atol=1e-5)


def test_a_per_width_tuple_outside_its_list_names_the_fix():
    layer = SlimmableConv2D((8, 16), 3)
    layer.build((None, 5, 5, 3))
    with width_scope(width=0.4):
        with pytest.raises(ValueError, match="width 0.4 is not one of them"):
            layer(np.zeros((1, 5, 5, 3), "float32"))
    with pytest.raises(ValueError, match="per width"):
        SwitchableBatchNormalization(ScaledChannels(16))


def test_a_rule_survives_get_config_and_keras_files(tmp_path):
    inputs = keras.Input((8, 8, 3))
    x = SlimmableConv2D(ScaledChannels(16), 3, padding=1, name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = SlimmableDense(4, name="head")(x)
    model = keras_slimmable.SlimmableModel(
        inputs, outputs, widths=(0.25, 0.3, 0.65, 1.0)
    )
    path = tmp_path / "rule.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.get_layer("conv").filters == ScaledChannels(16)
    x = np.random.default_rng(2).normal(size=(2, 8, 8, 3)).astype("float32")
    for width in model.widths:
        np.testing.assert_allclose(
            loaded(x, width=width), model(x, width=width), atol=1e-6
        )
        np.testing.assert_allclose(
            model.materialize(width)(x), model(x, width=width), atol=1e-5
        )


def _us_mobilenet_v1_without_batch_norm():
    """US-MobileNet v1's convolutions and classifier (ARCHITECTURES.md),
    every count a channel rule. Batch norms add no MACs or conv/dense
    parameters, so the counts are the reference's."""
    blocks = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)]
    blocks += [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    inputs = keras.Input((224, 224, 3))
    x = SlimmableConv2D(
        ScaledChannels(32), 3, strides=2, padding=1, use_bias=False
    )(inputs)
    for channels, stride in blocks:
        x = SlimmableDepthwiseConv2D(
            3, strides=stride, padding=1, use_bias=False
        )(x)
        x = SlimmableConv2D(ScaledChannels(channels), 1, use_bias=False)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = SlimmableDense(1000)(x)
    return keras_slimmable.SlimmableModel(
        inputs, outputs, widths=(0.25, 0.31415926, 0.5, 0.75, 1.0)
    )


def test_rule_counts_match_the_reference_at_a_width_outside_every_list(
    reference_counts,
):
    counts = keras_slimmable.profile(_us_mobilenet_v1_without_batch_norm())
    reference = reference_counts["us_mobilenet_v1"]
    for width, figures in counts.items():
        expected = reference[repr(width)]
        assert figures["macs"] == expected["macs"], width
        assert figures["conv_fc_params"] == expected["conv_fc_params"], width
