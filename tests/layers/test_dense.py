"""SlimmableDense: golden outputs are numpy on the hand-sliced weights."""

import json

import keras
import numpy as np
import pytest

import keras_slimmable as ks
from keras_slimmable.widths import width_scope

IN_FEATURES = (3, 6)
UNITS = (4, 8)


def randomize_weights(layer, seed=1):
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        variable.assign(rng.normal(size=variable.shape).astype("float32"))


def random_inputs(*shape, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=shape).astype("float32")


def close(actual, expected):
    np.testing.assert_allclose(
        np.array(actual), np.array(expected), rtol=1e-5, atol=1e-5
    )


def built_dense(units=UNITS, features=6, **kwargs):
    layer = ks.SlimmableDense(units, **kwargs)
    layer.build((None, features))
    randomize_weights(layer)
    return layer


@pytest.mark.parametrize("use_bias", [True, False])
def test_dense_equals_numpy_on_sliced_weights(use_bias):
    layer = built_dense(use_bias=use_bias)
    kernel = np.array(layer.kernel, "float64")
    assert kernel.shape == (6, 8)
    assert len(layer.weights) == (2 if use_bias else 1)
    for index, (features, units) in enumerate(zip(IN_FEATURES, UNITS)):
        x = random_inputs(2, features, seed=index)
        expected = x @ kernel[:features, :units]
        if use_bias:
            expected = expected + np.array(layer.bias)[:units]
        with width_scope(index):
            outputs = layer(x)
        assert outputs.shape == (2, units)
        close(outputs, expected)
    # Outside any scope: the widest width.
    x = random_inputs(2, 6, seed=5)
    expected = x @ kernel
    if use_bias:
        expected = expected + np.array(layer.bias)
    close(layer(x), expected)


def test_dense_three_widths_with_activation_and_rank_3_inputs():
    layer = built_dense(units=(2, 5, 8), features=7, activation="relu")
    kernel, bias = np.array(layer.kernel), np.array(layer.bias)
    for index, (features, units) in enumerate(zip((2, 4, 7), (2, 5, 8))):
        x = random_inputs(2, 3, features, seed=index)
        expected = np.maximum(x @ kernel[:features, :units] + bias[:units], 0)
        with width_scope(index):
            outputs = layer(x)
        assert outputs.shape == (2, 3, units)
        close(outputs, expected)


def test_dense_int_units_slices_only_the_input():
    layer = built_dense(units=5)
    kernel, bias = np.array(layer.kernel), np.array(layer.bias)
    assert kernel.shape == (6, 5)
    for index, features in enumerate(IN_FEATURES):
        x = random_inputs(2, features, seed=index)
        with width_scope(index):
            outputs = layer(x)
        assert outputs.shape == (2, 5)
        close(outputs, x @ kernel[:features] + bias)


def test_dense_compute_output_shape_follows_the_active_width():
    layer = ks.SlimmableDense(UNITS)
    with width_scope(0):
        assert layer.compute_output_shape((None, 3)) == (None, 4)
    assert layer.compute_output_shape((None, 6)) == (None, 8)


def test_dense_in_a_functional_graph_is_built_at_full_width():
    inputs = keras.Input((6,))
    outputs = ks.SlimmableDense(UNITS)(inputs)
    assert outputs.shape == (None, 8)


# Errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    "units, message",
    [
        ((8, 4), "must not decrease"),
        ((4.5, 8), "positive ints"),
        ((0, 4), "positive ints"),
        (0, "must be positive"),
        (-1, "must be positive"),
        ("abc", "an int or a sequence of ints"),
        (2.0, "an int or a sequence of ints"),
    ],
)
def test_bad_units(units, message):
    with pytest.raises(ValueError, match=message) as info:
        ks.SlimmableDense(units)
    assert f"units={units!r}" in str(info.value)


def test_dense_input_wider_than_built():
    layer = built_dense(name="head")
    with pytest.raises(
        ValueError, match=r"'head' was built for at most 6 .*input with 7"
    ):
        layer(random_inputs(2, 7))


def test_dense_width_index_beyond_its_widths():
    layer = built_dense(name="head")
    with width_scope(2):
        with pytest.raises(ValueError, match=r"'head' has 2 widths.*index 2"):
            layer(random_inputs(2, 6))


# Config and serialization ------------------------------------------------


CONFIGURED = {
    "per_width": lambda: ks.SlimmableDense(
        UNITS,
        activation="relu",
        kernel_initializer="he_normal",
        kernel_regularizer=keras.regularizers.L2(1e-4),
        bias_initializer="ones",
        name="dense",
    ),
    "int_units_no_bias": lambda: ks.SlimmableDense(5, use_bias=False),
}


@pytest.mark.parametrize("key", sorted(CONFIGURED))
def test_get_config_round_trip_and_equal_outputs(key):
    layer = CONFIGURED[key]()
    layer.build((None, 6))
    randomize_weights(layer)
    config = layer.get_config()
    copy = ks.SlimmableDense.from_config(config)
    assert copy.get_config() == config
    copy.build((None, 6))
    copy.set_weights(layer.get_weights())
    for index, features in enumerate(IN_FEATURES):
        x = random_inputs(2, features, seed=index)
        with width_scope(index):
            np.testing.assert_array_equal(np.array(copy(x)), np.array(layer(x)))


@pytest.mark.parametrize("key", sorted(CONFIGURED))
def test_registered_serializable(key):
    layer = CONFIGURED[key]()
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == "keras_slimmable>SlimmableDense"
    restored = keras.saving.deserialize_keras_object(
        json.loads(json.dumps(serialized))
    )
    assert type(restored) is ks.SlimmableDense
    assert restored.units == layer.units
    assert json.dumps(restored.get_config()) == json.dumps(layer.get_config())
