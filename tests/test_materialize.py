"""Tests for `materialize`: one width of a slimmable model as plain Keras."""

import keras
import numpy as np
import pytest

from keras_slimmable import SlimmableConv2D
from keras_slimmable import SlimmableDense
from keras_slimmable import SlimmableDepthwiseConv2D
from keras_slimmable import SlimmableGroupedConv2D
from keras_slimmable import SlimmableModel
from keras_slimmable import SwitchableBatchNormalization
from keras_slimmable.layers import ChannelShuffle
from keras_slimmable.materialize import materialize

TOLERANCE = 1e-5
# The zoo models counts.json has figures for.
REFERENCE_MODELS = (
    "s_mobilenet_v1",
    "s_mobilenet_v2",
    "s_resnet50",
    "s_shufflenet",
)


def every_layer_model(with_shuffle=True):
    """Every layer kind materialize replaces, plus a layer called twice."""
    inputs = keras.Input((12, 12, 3))
    x = SlimmableConv2D(
        (6, 12), 3, strides=2, padding=1, use_bias=False, name="stem"
    )(inputs)
    x = SwitchableBatchNormalization((6, 12), name="stem_bn")(x)
    x = keras.layers.ReLU(name="relu")(x)
    x = SlimmableGroupedConv2D(
        (6, 12), 1, groups=3, split_inputs=False, name="whole"
    )(x)
    x = SwitchableBatchNormalization((6, 12), shared=True, name="shared_bn")(x)
    if with_shuffle:
        x = ChannelShuffle(3, name="shuffle")(x)
    y = SlimmableGroupedConv2D(
        (6, 12), 1, groups=3, activation="relu", name="split"
    )(x)
    x = keras.layers.Add()([x, y])
    twice = SlimmableDepthwiseConv2D(3, padding=1, name="twice")
    x = twice(twice(x))
    x = SlimmableDepthwiseConv2D(3, strides=2, padding=1, name="dw")(x)
    x = SlimmableConv2D(10, 1, use_bias=False, name="tail")(x)
    x = keras.layers.BatchNormalization(name="tail_bn")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = keras.layers.Dense(7, name="fc0")(x)
    x = SlimmableDense((4, 8), name="fc1")(x)
    outputs = SlimmableDense(5, name="fc2")(x)
    return SlimmableModel(inputs, outputs, widths=(0.5, 1.0))


def expected_parameters(c, f):
    """All parameters of `every_layer_model` at `c` channels and `f`
    features, moving statistics included, counted by hand."""
    return (
        27 * c  # stem
        + 4 * c  # stem_bn: gamma, beta, moving mean and variance
        + c * c
        + c  # whole: every group reads all c inputs
        + 4 * c  # shared_bn, its active prefix
        + (c // 3) * c
        + c  # split: c / 3 inputs per group
        + 9 * c
        + c  # twice: one depthwise conv with its bias
        + 9 * c
        + c  # dw
        + c * 10  # tail
        + 4 * 10  # tail_bn, the same at every width
        + 10 * 7
        + 7  # fc0
        + 7 * f
        + f  # fc1
        + f * 5
        + 5  # fc2
    )


def randomize(model, seed=0):
    """Random weights everywhere, so that a wrong slice shows, and batch
    norm statistics measured on random images at every width, so that
    activations keep a scale near 1 through deep networks, as in a trained
    one (and an absolute tolerance means something in float32)."""
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape = tuple(variable.shape)
        if "gamma" in variable.path:
            value = rng.uniform(0.5, 1.5, shape)
        elif len(shape) > 1:  # kernels, as (..., fan_in, out)
            fan_in = np.prod(shape[:-1])
            if "depthwise" in variable.path:
                fan_in = np.prod(shape[:2])
            value = rng.normal(0.0, np.sqrt(1.0 / fan_in), shape)
        else:  # beta, biases; moving statistics are measured below
            value = rng.normal(0.0, 0.1, shape)
        variable.assign(value.astype(variable.dtype))
    batch_norms = []
    for layer in model.layers:
        if isinstance(layer, SwitchableBatchNormalization):
            batch_norms.extend(layer.batch_norms)
        elif isinstance(layer, keras.layers.BatchNormalization):
            batch_norms.append(layer)
    images = rng.normal(size=(4,) + tuple(model.input_shape[1:]))
    momenta = [batch_norm.momentum for batch_norm in batch_norms]
    for batch_norm in batch_norms:
        batch_norm.momentum = 0.0  # moving statistics := batch statistics
    try:
        for width in model.widths:
            model(images.astype("float32"), width=width, training=True)
    finally:
        for batch_norm, momentum in zip(batch_norms, momenta):
            batch_norm.momentum = momentum


def max_difference(model, narrow, width, images):
    """Both through Keras's `predict`: TensorFlow's graph optimizations
    round differently between differently traced functions (a 1e-4
    difference on deep zoo models with calibrated batch norms), so each
    model runs through the same compiled path."""
    model.set_width(width)
    expected = model.predict(images, batch_size=len(images), verbose=0)
    actual = narrow.predict(images, batch_size=len(images), verbose=0)
    assert expected.shape == actual.shape
    return float(np.max(np.abs(expected - actual)))


def test_every_layer_kind_same_outputs_and_only_that_width():
    model = every_layer_model()
    randomize(model)
    images = np.random.default_rng(1).normal(size=(2, 12, 12, 3))
    images = images.astype("float32")
    for width, c, f in ((0.5, 6, 4), (1.0, 12, 8)):
        narrow = materialize(model, width)
        assert max_difference(model, narrow, width, images) <= TOLERANCE
        assert narrow.count_params() == expected_parameters(c, f)


def test_plain_keras_layers_only():
    model = every_layer_model()
    narrow = materialize(model, 0.5)
    types = {type(layer).__module__.split(".")[0] for layer in narrow.layers}
    assert types == {"keras"}
    by_name = {layer.name: layer for layer in narrow.layers}
    assert isinstance(by_name["stem_pad"], keras.layers.ZeroPadding2D)
    assert by_name["stem"].padding == "valid"
    assert isinstance(by_name["stem_bn"], keras.layers.BatchNormalization)
    assert isinstance(by_name["whole"], keras.layers.Conv2D)
    for k in range(3):
        group = by_name[f"split_group_{k}"]
        assert group.groups == 1
        assert tuple(group.kernel.shape) == (1, 1, 2, 2)
    assert isinstance(by_name["split_concat"], keras.layers.Concatenate)
    assert isinstance(by_name["split_activation"], keras.layers.Activation)
    assert isinstance(by_name["shuffle_transpose"], keras.layers.Permute)
    assert isinstance(by_name["dw"], keras.layers.DepthwiseConv2D)
    assert isinstance(by_name["fc1"], keras.layers.Dense)
    # A layer called twice stays one layer with one set of weights.
    assert len(by_name["twice"]._inbound_nodes) == 2
    assert narrow.name == f"{model.name}_w0_5"


def test_saved_and_reloaded_without_the_package(tmp_path):
    model = every_layer_model()
    randomize(model)
    narrow = model.materialize(0.5)
    path = tmp_path / "narrow.keras"
    narrow.save(path)
    # Only built-in Keras objects: no custom_objects needed.
    reloaded = keras.saving.load_model(path, safe_mode=True)
    images = np.ones((1, 12, 12, 3), "float32")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(reloaded(images)),
        keras.ops.convert_to_numpy(narrow(images)),
        atol=1e-6,
    )


def test_method_defaults_to_the_model_width_and_rejects_bad_widths():
    model = every_layer_model(with_shuffle=False)
    model.set_width(0.5)
    assert model.materialize().name.endswith("_w0_5")
    with pytest.raises(ValueError, match=r"0\.3.*\(0\.5, 1\.0\)"):
        model.materialize(0.3)
    with pytest.raises(ValueError, match="widths"):
        materialize(model, "wide")


def test_weights_are_copies():
    model = every_layer_model(with_shuffle=False)
    narrow = materialize(model, 1.0)
    before = narrow.get_layer("stem").get_weights()[0].copy()
    model.get_layer("stem").kernel.assign(
        np.zeros(model.get_layer("stem").kernel.shape, "float32")
    )
    np.testing.assert_array_equal(
        narrow.get_layer("stem").get_weights()[0], before
    )


@pytest.mark.parametrize("name", REFERENCE_MODELS)
def test_zoo_model_every_width(name, reference_counts):
    from keras_slimmable import zoo

    counts = reference_counts[name]
    model = zoo.create_model(name, input_shape=(64, 64, 3))
    randomize(model)
    images = np.random.default_rng(2).normal(size=(2, 64, 64, 3))
    images = images.astype("float32")
    for width in model.widths:
        narrow = materialize(model, width)
        difference = max_difference(model, narrow, width, images)
        assert difference <= TOLERANCE, (width, difference)
        # Parameters are independent of the input size: the reference's,
        # with batch norms as gamma, beta, moving mean and variance.
        reference = counts[str(width)]
        assert narrow.count_params() == (
            reference["conv_fc_params"] + 2 * reference["bn_affine_params"]
        )
