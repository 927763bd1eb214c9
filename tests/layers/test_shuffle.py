"""ChannelShuffle: against an explicit index computation, at any width."""

import keras
import numpy as np
import pytest

import keras_slimmable as ks
from keras_slimmable.layers import ChannelShuffle


def shuffle_reference(x, groups):
    """Output channel j * groups + k is channel j of group k, one by one."""
    channels = x.shape[-1]
    size = channels // groups
    out = np.empty_like(x)
    for k in range(groups):
        for j in range(size):
            out[..., j * groups + k] = x[..., k * size + j]
    return out


@pytest.mark.parametrize("groups,channels", [(3, 6), (3, 12), (2, 8), (4, 4)])
def test_matches_reference(groups, channels):
    x = np.random.default_rng(0).normal(size=(2, 3, 5, channels))
    x = x.astype("float32")
    out = np.asarray(ChannelShuffle(groups)(x))
    np.testing.assert_array_equal(out, shuffle_reference(x, groups))


def test_small_example():
    x = np.arange(6.0, dtype="float32").reshape(1, 1, 1, 6)
    out = np.asarray(ChannelShuffle(3)(x))[0, 0, 0]
    np.testing.assert_array_equal(out, [0, 2, 4, 1, 3, 5])


def test_one_group_is_identity():
    x = np.random.default_rng(1).normal(size=(1, 2, 2, 5)).astype("float32")
    np.testing.assert_array_equal(np.asarray(ChannelShuffle(1)(x)), x)


def test_every_width_of_a_model():
    """One layer, used at each width, shuffles that width's channels."""
    widths = (0.5, 1.0)
    inputs = keras.Input((4, 4, 3))
    x = ks.SlimmableConv2D((6, 12), 1, use_bias=False)(inputs)
    outputs = ChannelShuffle(3, name="shuffle")(x)
    model = ks.SlimmableModel(inputs, outputs, widths=widths)
    probe = keras.Model(inputs, x)
    images = np.random.default_rng(2).normal(size=(2, 4, 4, 3))
    images = images.astype("float32")
    for index, width in enumerate(widths):
        with ks.width_scope(index):
            before = np.asarray(probe(images))
        out = np.asarray(model(images, width=width))
        assert out.shape == (2, 4, 4, (6, 12)[index])
        np.testing.assert_array_equal(out, shuffle_reference(before, 3))


def test_dynamic_spatial_shape_in_a_traced_function():
    layer = ChannelShuffle(3)
    inputs = keras.Input((None, None, 9))
    model = keras.Model(inputs, layer(inputs))
    x = np.random.default_rng(3).normal(size=(2, 5, 7, 9)).astype("float32")
    out = model.predict(x, verbose=0)
    np.testing.assert_array_equal(out, shuffle_reference(x, 3))


def test_channels_not_divisible():
    with pytest.raises(ValueError, match="divisible by 3"):
        ChannelShuffle(3)(np.zeros((1, 2, 2, 4), "float32"))


@pytest.mark.parametrize("groups", [0, -1, 2.0, True])
def test_bad_groups(groups):
    with pytest.raises(ValueError, match="groups"):
        ChannelShuffle(groups)


def test_config_and_serialization_round_trip():
    layer = ChannelShuffle(3, name="shuffle")
    config = layer.get_config()
    assert config["groups"] == 3
    restored = ChannelShuffle.from_config(config)
    assert restored.groups == 3 and restored.name == "shuffle"
    again = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(layer)
    )
    assert isinstance(again, ChannelShuffle) and again.groups == 3
