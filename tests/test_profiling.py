"""Tests for `keras_slimmable.profile`: MACs and parameters per width."""

import time

import keras
import numpy as np
import pytest

import keras_slimmable
from keras_slimmable import SlimmableConv2D
from keras_slimmable import SlimmableDense
from keras_slimmable import SlimmableDepthwiseConv2D
from keras_slimmable import SlimmableGroupedConv2D
from keras_slimmable import SlimmableModel
from keras_slimmable import SwitchableBatchNormalization
from keras_slimmable import profile

# The zoo models counts.json has figures for.
REFERENCE_MODELS = (
    "s_mobilenet_v1",
    "s_mobilenet_v2",
    "s_resnet50",
    "s_shufflenet",
)


def every_layer_model(size=16):
    """A small model with every kind of layer `profile` counts."""
    inputs = keras.Input((size, size, 3))
    x = SlimmableConv2D(
        (6, 12), 3, strides=2, padding=1, use_bias=False, name="stem"
    )(inputs)
    x = SwitchableBatchNormalization((6, 12), name="stem_bn")(x)
    x = keras.layers.ReLU()(x)
    x = SlimmableGroupedConv2D(
        (6, 12), 1, groups=3, split_inputs=False, name="whole"
    )(x)
    x = SwitchableBatchNormalization((6, 12), shared=True, name="shared_bn")(x)
    y = SlimmableGroupedConv2D(
        (6, 12), 1, groups=3, use_bias=False, name="split"
    )(x)
    x = keras.layers.Add()([x, y])
    x = SlimmableDepthwiseConv2D(3, strides=2, padding=1, name="dw")(x)
    pooled = keras.layers.ZeroPadding2D(1)(x)
    pooled = keras.layers.AveragePooling2D(3, strides=2, name="avg")(pooled)
    x = keras.layers.AveragePooling2D(2, name="plain_avg")(x)
    x = keras.layers.Concatenate()([x, pooled])
    x = SlimmableConv2D(20, 1, name="tail")(x)
    x = keras.layers.BatchNormalization(name="tail_bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(7, name="fc0")(x)
    x = SlimmableDense((4, 8), name="fc1")(x)
    outputs = SlimmableDense(5, name="fc2")(x)
    return SlimmableModel(inputs, outputs, widths=(0.5, 1.0))


def expected_every_layer(c, f, size=16):
    """The figures of `every_layer_model` at `c` channels and `f` features,
    worked out by hand from the layer definitions."""
    h = size // 2  # stem: 3x3, stride 2, padding 1
    macs = h * h * 3 * 3 * 3 * c
    params = 3 * 3 * 3 * c
    bn = 2 * c  # stem_bn
    macs += h * h * c * c  # whole: every group reads all c inputs
    params += c * c + c
    bn += 2 * c  # shared_bn, its active prefix
    macs += h * h * (c // 3) * c  # split: c/3 inputs per group
    params += (c // 3) * c
    h //= 2  # dw: stride 2, padding 1
    macs += h * h * 3 * 3 * c
    params += 3 * 3 * c + c
    macs += h * h * c  # avg: one per unpadded input element
    macs += h * h * c  # plain_avg
    h //= 2
    macs += h * h * (2 * c) * 20  # tail, only its input sliced
    params += 2 * c * 20 + 20
    bn += 2 * 20  # tail_bn: shared by every width, whole
    macs += h * h * 20  # global average pool
    macs += 20 * 7 + 7 * f + f * 5  # fc0 (plain), fc1, fc2
    params += 20 * 7 + 7 + 7 * f + f + f * 5 + 5
    return {"macs": macs, "conv_fc_params": params, "bn_affine_params": bn}


def test_every_layer_kind():
    model = every_layer_model()
    for width in model.widths:  # The model really runs at every width.
        model(np.zeros((1, 16, 16, 3), "float32"), width=width)
    assert profile(model) == {
        0.5: expected_every_layer(6, 4),
        1.0: expected_every_layer(12, 8),
    }


def test_input_shape_argument():
    model = every_layer_model()
    assert profile(model, input_shape=(32, 32, 3))[0.5] == (
        expected_every_layer(6, 4, size=32)
    )


def test_full_width_matches_keras_count_params():
    model = every_layer_model()
    counts = profile(model)[1.0]
    batch_norm_stats = 2 * 12 + 2 * 12 + 2 * 20  # moving mean, variance
    # The switchable stem_bn holds a second, narrower batch norm too.
    narrow_stem_bn = 4 * 6
    assert model.count_params() == (
        counts["conv_fc_params"]
        + counts["bn_affine_params"]
        + batch_norm_stats
        + narrow_stem_bn
    )


def test_unknown_input_shape_needs_argument():
    inputs = keras.Input((None, None, 3))
    x = SlimmableConv2D((2, 4), 3)(inputs)
    model = SlimmableModel(inputs, x, widths=(0.5, 1.0))
    with pytest.raises(ValueError, match="input shape"):
        profile(model)
    counts = profile(model, input_shape=(5, 5, 3))
    assert counts[0.5]["macs"] == 3 * 3 * 3 * 3 * 3 * 2


def test_unknown_weighted_layer_is_an_error():
    inputs = keras.Input((4, 4, 3))
    x = keras.layers.LayerNormalization(name="odd")(inputs)
    model = SlimmableModel(inputs, x, widths=(1.0,))
    with pytest.raises(ValueError, match="odd"):
        profile(model)


def test_profile_is_exported():
    assert keras_slimmable.profile is profile
    assert "profile" in keras_slimmable.__all__


@pytest.mark.parametrize("name", REFERENCE_MODELS)
def test_zoo_model_matches_reference_counts(name, reference_counts):
    from keras_slimmable import zoo

    model = zoo.create_model(name)  # 224x224, 1000 classes
    start = time.perf_counter()
    counts = profile(model)
    elapsed = time.perf_counter() - start
    reference = reference_counts[name]
    assert {str(w): c for w, c in counts.items()} == reference
    assert elapsed < 10
