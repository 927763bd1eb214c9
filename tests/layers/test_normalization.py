"""SwitchableBatchNormalization: one batch norm per width, or one shared.

Golden values come from numpy and from plain `keras.layers.BatchNormalization`
layers given the same weights and data.
"""

import json

import keras
import numpy as np
import pytest

import keras_slimmable as ks
from keras_slimmable.widths import width_scope

CHANNELS = (2, 4, 6)
MOMENTUM = 0.9
EPSILON = 1e-5
AXES = (0, 1, 2)


def random_inputs(channels, seed=0):
    rng = np.random.default_rng(seed)
    # Mean and scale far from 0 and 1, so statistics visibly move.
    return (rng.normal(size=(2, 8, 8, channels)) * 3.0 + 1.5).astype("float32")


def snapshot(layer):
    """Every variable of every batch norm, as numpy, by (bn index, name)."""
    return {
        (i, variable.name): np.array(variable)
        for i, bn in enumerate(layer.batch_norms)
        for variable in bn.weights
    }


def randomize(layer, seed=1):
    rng = np.random.default_rng(seed)
    for bn in layer.batch_norms:
        for variable in bn.weights:
            if "variance" in variable.name:
                value = rng.uniform(0.5, 2.0, variable.shape)
            else:
                value = rng.normal(size=variable.shape)
            variable.assign(value.astype("float32"))


def built(channels=CHANNELS, **kwargs):
    kwargs.setdefault("momentum", MOMENTUM)
    kwargs.setdefault("epsilon", EPSILON)
    layer = ks.SwitchableBatchNormalization(channels, **kwargs)
    layer.build((None, 8, 8, channels[-1]))
    randomize(layer)
    return layer


def numpy_batch_norm(x, mean, variance, gamma, beta, epsilon=EPSILON):
    x = np.asarray(x, "float64")
    return (x - mean) / np.sqrt(variance + epsilon) * gamma + beta


def close(actual, expected, tol=1e-5):
    np.testing.assert_allclose(
        np.array(actual), np.array(expected), rtol=tol, atol=tol
    )


# Structure -----------------------------------------------------------------


def test_one_batch_norm_per_width_with_that_widths_channels():
    layer = built()
    assert len(layer.batch_norms) == 3
    for bn, channels in zip(layer.batch_norms, CHANNELS):
        assert isinstance(bn, keras.layers.BatchNormalization)
        for variable in bn.weights:
            assert variable.shape == (channels,)
        assert bn.momentum == MOMENTUM and bn.epsilon == EPSILON
    assert len(layer.weights) == 12
    assert len(layer.trainable_weights) == 6
    assert len(layer.non_trainable_weights) == 6
    # Distinct variables per width, not views of one.
    assert len({id(v) for v in layer.weights}) == 12


def test_shared_has_one_batch_norm_of_the_widest_channels():
    layer = built(shared=True)
    assert len(layer.batch_norms) == 1
    assert all(v.shape == (6,) for v in layer.weights)
    assert len(layer.weights) == 4


# Training --------------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 1, 2])
def test_training_at_a_width_updates_only_its_batch_norm(index):
    layer = built()
    channels = CHANNELS[index]
    bn = layer.batch_norms[index]
    reference = keras.layers.BatchNormalization(
        momentum=MOMENTUM, epsilon=EPSILON
    )
    reference.build((None, 8, 8, channels))
    reference.set_weights(bn.get_weights())
    old_mean = np.array(bn.moving_mean, "float64")
    old_variance = np.array(bn.moving_variance, "float64")
    before = snapshot(layer)
    for step in range(2):
        x = random_inputs(channels, seed=step)
        with width_scope(index):
            outputs = layer(x, training=True)
        close(outputs, reference(x, training=True))
        # Training normalizes with the batch's own statistics.
        gamma, beta = np.array(bn.gamma), np.array(bn.beta)
        close(
            outputs,
            numpy_batch_norm(x, x.mean(AXES), x.var(AXES), gamma, beta),
            tol=1e-4,
        )
        old_mean = MOMENTUM * old_mean + (1 - MOMENTUM) * x.mean(AXES)
        old_variance = MOMENTUM * old_variance + (1 - MOMENTUM) * x.var(AXES)
    close(bn.moving_mean, old_mean)
    close(bn.moving_variance, old_variance, tol=1e-4)
    close(bn.moving_mean, reference.moving_mean)
    close(bn.moving_variance, reference.moving_variance)
    after = snapshot(layer)
    for (i, name), value in before.items():
        if i == index and name.startswith("moving"):
            assert not np.array_equal(after[(i, name)], value)
        else:
            # Other widths' batch norms, and gamma/beta: bitwise unchanged.
            np.testing.assert_array_equal(after[(i, name)], value)


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("index", [0, 2])
def test_unbiased_moving_variance_is_pytorchs_update(index, shared):
    # PyTorch's BatchNorm2d in training: normalize with the biased batch
    # variance, move running_var towards the unbiased one, n / (n - 1).
    layer = built(shared=shared, unbiased_moving_variance=True)
    assert layer.get_config()["unbiased_moving_variance"] is True
    bn = layer.batch_norms[0 if shared else index]
    channels = CHANNELS[index]
    old_mean = np.array(bn.moving_mean, "float64")
    old_variance = np.array(bn.moving_variance, "float64")
    gamma = np.array(bn.gamma)[:channels]
    beta = np.array(bn.beta)[:channels]
    x = random_inputs(channels, seed=3)
    with width_scope(index):
        outputs = layer(x, training=True)
    n = x.shape[0] * x.shape[1] * x.shape[2]  # 128 values per channel
    x64 = x.astype("float64")
    biased = x64.var(AXES)
    close(
        outputs,
        numpy_batch_norm(x64, x64.mean(AXES), biased, gamma, beta),
        tol=1e-4,
    )
    expected_mean = MOMENTUM * old_mean[:channels] + (1 - MOMENTUM) * x64.mean(
        AXES
    )
    expected_variance = MOMENTUM * old_variance[:channels] + (
        1 - MOMENTUM
    ) * biased * n / (n - 1)
    close(np.array(bn.moving_mean)[:channels], expected_mean)
    close(np.array(bn.moving_variance)[:channels], expected_variance, tol=1e-5)
    # The Keras convention would miss by (1 - m) * var / (n - 1): visible.
    keras_variance = MOMENTUM * old_variance[:channels]
    keras_variance = keras_variance + (1 - MOMENTUM) * biased
    assert np.abs(expected_variance - keras_variance).max() > 1e-3
    # Channels beyond the width's prefix (shared mode) are untouched.
    np.testing.assert_array_equal(
        np.array(bn.moving_variance)[channels:], old_variance[channels:]
    )
    # Inference is unaffected by the option: the moving statistics only.
    with width_scope(index):
        inference = layer(x, training=False)
    close(
        inference,
        numpy_batch_norm(
            x64,
            np.array(bn.moving_mean)[:channels],
            np.array(bn.moving_variance)[:channels],
            gamma,
            beta,
        ),
        tol=1e-4,
    )


def test_unbiased_moving_variance_refuses_a_mask():
    layer = built(unbiased_moving_variance=True)
    x = random_inputs(CHANNELS[0])
    with width_scope(0), pytest.raises(ValueError, match="mask"):
        layer(x, training=True, mask=np.ones(x.shape[:-1], bool))


@pytest.mark.parametrize("index", [0, 1, 2])
def test_inference_uses_the_widths_own_statistics(index):
    layer = built()
    channels = CHANNELS[index]
    x = random_inputs(channels)
    bn = layer.batch_norms[index]
    expected = numpy_batch_norm(
        x,
        np.array(bn.moving_mean),
        np.array(bn.moving_variance),
        np.array(bn.gamma),
        np.array(bn.beta),
    )
    before = snapshot(layer)
    with width_scope(index):
        close(layer(x, training=False), expected)
        close(layer(x), expected)
    # Another width's statistics (its prefix) would give other numbers.
    other = layer.batch_norms[-1 if index < 2 else 0]
    c = min(channels, CHANNELS[-1 if index < 2 else 0])
    wrong = numpy_batch_norm(
        x[..., :c],
        np.array(other.moving_mean)[:c],
        np.array(other.moving_variance)[:c],
        np.array(other.gamma)[:c],
        np.array(other.beta)[:c],
    )
    assert np.abs(expected[..., :c] - wrong).max() > 1e-2
    after = snapshot(layer)
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value)


def test_outside_a_scope_the_widest_batch_norm_runs():
    layer = built()
    x = random_inputs(6)
    bn = layer.batch_norms[-1]
    close(
        layer(x),
        numpy_batch_norm(
            x,
            np.array(bn.moving_mean),
            np.array(bn.moving_variance),
            np.array(bn.gamma),
            np.array(bn.beta),
        ),
    )


@pytest.mark.parametrize("shared", [False, True])
def test_not_trainable_freezes_statistics_even_in_training(shared):
    layer = built(shared=shared)
    layer.trainable = False
    before = snapshot(layer)
    bn = layer.batch_norms[0]
    x = random_inputs(2)
    with width_scope(0):
        outputs = layer(x, training=True)
    close(
        outputs,
        numpy_batch_norm(
            x,
            np.array(bn.moving_mean)[:2],
            np.array(bn.moving_variance)[:2],
            np.array(bn.gamma)[:2],
            np.array(bn.beta)[:2],
        ),
    )
    after = snapshot(layer)
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value)


# Shared (the naive baseline) -------------------------------------------------


@pytest.mark.parametrize("index", [0, 1, 2])
def test_shared_training_updates_only_the_leading_channels(index):
    layer = built(shared=True)
    channels = CHANNELS[index]
    bn = layer.batch_norms[0]
    before = snapshot(layer)
    mean0 = np.array(bn.moving_mean, "float64")
    variance0 = np.array(bn.moving_variance, "float64")
    gamma, beta = np.array(bn.gamma), np.array(bn.beta)
    reference = keras.layers.BatchNormalization(
        momentum=MOMENTUM, epsilon=EPSILON
    )
    reference.build((None, 8, 8, channels))
    reference.set_weights([w[:channels] for w in bn.get_weights()])
    x = random_inputs(channels)
    with width_scope(index):
        outputs = layer(x, training=True)
    close(outputs, reference(x, training=True))
    close(
        outputs,
        numpy_batch_norm(
            x, x.mean(AXES), x.var(AXES), gamma[:channels], beta[:channels]
        ),
        tol=1e-4,
    )
    mean = np.array(bn.moving_mean)
    variance = np.array(bn.moving_variance)
    close(
        mean[:channels],
        MOMENTUM * mean0[:channels] + (1 - MOMENTUM) * x.mean(AXES),
    )
    close(
        variance[:channels],
        MOMENTUM * variance0[:channels] + (1 - MOMENTUM) * x.var(AXES),
        tol=1e-4,
    )
    close(mean[:channels], reference.moving_mean)
    close(variance[:channels], reference.moving_variance)
    # The channels beyond this width: bitwise unchanged.
    np.testing.assert_array_equal(
        mean[channels:], before[(0, "moving_mean")][channels:]
    )
    np.testing.assert_array_equal(
        variance[channels:], before[(0, "moving_variance")][channels:]
    )
    np.testing.assert_array_equal(np.array(bn.gamma), before[(0, "gamma")])
    np.testing.assert_array_equal(np.array(bn.beta), before[(0, "beta")])


@pytest.mark.parametrize("index", [0, 1, 2])
def test_shared_inference_uses_the_leading_statistics(index):
    layer = built(shared=True)
    channels = CHANNELS[index]
    bn = layer.batch_norms[0]
    x = random_inputs(channels)
    expected = numpy_batch_norm(
        x,
        np.array(bn.moving_mean)[:channels],
        np.array(bn.moving_variance)[:channels],
        np.array(bn.gamma)[:channels],
        np.array(bn.beta)[:channels],
    )
    with width_scope(index):
        close(layer(x, training=False), expected)


@pytest.mark.parametrize("shared", [False, True])
def test_center_and_scale_off(shared):
    layer = built(shared=shared, center=False, scale=False)
    assert all(len(bn.trainable_weights) == 0 for bn in layer.batch_norms)
    bn = layer.batch_norms[0]
    x = random_inputs(2)
    with width_scope(0):
        outputs = layer(x)
    close(
        outputs,
        numpy_batch_norm(
            x,
            np.array(bn.moving_mean)[:2],
            np.array(bn.moving_variance)[:2],
            1.0,
            0.0,
        ),
    )


@pytest.mark.parametrize("shared", [False, True])
def test_mixed_precision_outputs_float16_with_float32_statistics(shared):
    layer = ks.SwitchableBatchNormalization(
        CHANNELS, shared=shared, dtype="mixed_float16"
    )
    layer.build((None, 8, 8, 6))
    randomize(layer)
    assert all(v.dtype == "float32" for v in layer.weights)
    bn = layer.batch_norms[0]
    x = random_inputs(2)
    expected = numpy_batch_norm(
        x,
        np.array(bn.moving_mean)[:2],
        np.array(bn.moving_variance)[:2],
        np.array(bn.gamma)[:2],
        np.array(bn.beta)[:2],
    )
    with width_scope(0):
        outputs = layer(x)
        layer(x, training=True)
    assert keras.backend.standardize_dtype(outputs.dtype) == "float16"
    close(np.array(outputs, "float32"), expected, tol=2e-2)
    assert np.array(bn.moving_mean).dtype == np.float32


# Errors ------------------------------------------------------------------


@pytest.mark.parametrize("shared", [False, True])
def test_channel_mismatch_names_the_expected_count(shared):
    layer = built(shared=shared, name="bn")
    with width_scope(0):
        with pytest.raises(
            ValueError,
            match=r"'bn' expects 2 channels.*Received an input with 4",
        ):
            layer(random_inputs(4))
    with width_scope(1):
        with pytest.raises(ValueError, match=r"expects 4 channels.*with 2"):
            layer(random_inputs(2))
    with pytest.raises(ValueError, match=r"expects 6 channels.*with 4"):
        layer(random_inputs(4))


def test_input_wider_than_the_widest_channels():
    layer = ks.SwitchableBatchNormalization(CHANNELS, name="bn")
    with pytest.raises(ValueError, match=r"'bn' has at most 6 channels"):
        layer.build((None, 8, 8, 7))


def test_width_index_beyond_its_widths():
    layer = built(name="bn")
    with width_scope(3):
        with pytest.raises(ValueError, match=r"'bn' has 3 widths.*index 3"):
            layer(random_inputs(6))


@pytest.mark.parametrize(
    "channels, message",
    [
        (6, "one channel count per width"),
        ((4, 2), "must not decrease"),
        ((0, 2), "positive ints"),
        ((2.5, 4), "positive ints"),
        ((), "positive ints"),
        ("ab", "an int or a sequence of ints"),
    ],
)
def test_bad_channels(channels, message):
    with pytest.raises(ValueError, match=message) as info:
        ks.SwitchableBatchNormalization(channels)
    assert f"channels={channels!r}" in str(info.value)


# Config and serialization ------------------------------------------------


CONFIGURED = {
    "switchable": lambda: ks.SwitchableBatchNormalization(
        CHANNELS, momentum=0.9, epsilon=1e-5, name="bn"
    ),
    "shared": lambda: ks.SwitchableBatchNormalization(
        CHANNELS, shared=True, momentum=0.8
    ),
    "unbiased": lambda: ks.SwitchableBatchNormalization(
        CHANNELS, unbiased_moving_variance=True
    ),
    "custom": lambda: ks.SwitchableBatchNormalization(
        CHANNELS,
        center=False,
        gamma_initializer="zeros",
        moving_variance_initializer="ones",
        gamma_regularizer=keras.regularizers.L2(1e-4),
        gamma_constraint=keras.constraints.NonNeg(),
    ),
}


@pytest.mark.parametrize("key", sorted(CONFIGURED))
def test_get_config_round_trip_and_equal_outputs(key):
    layer = CONFIGURED[key]()
    layer.build((None, 8, 8, 6))
    randomize(layer)
    config = layer.get_config()
    copy = ks.SwitchableBatchNormalization.from_config(config)
    assert copy.get_config() == config
    assert copy.momentum == layer.momentum and copy.epsilon == layer.epsilon
    copy.build((None, 8, 8, 6))
    copy.set_weights(layer.get_weights())
    for index, channels in enumerate(CHANNELS):
        x = random_inputs(channels, seed=index)
        with width_scope(index):
            np.testing.assert_array_equal(
                np.array(copy(x, training=False)),
                np.array(layer(x, training=False)),
            )


@pytest.mark.parametrize("key", sorted(CONFIGURED))
def test_registered_serializable(key):
    layer = CONFIGURED[key]()
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == (
        "keras_slimmable>SwitchableBatchNormalization"
    )
    restored = keras.saving.deserialize_keras_object(
        json.loads(json.dumps(serialized))
    )
    assert type(restored) is ks.SwitchableBatchNormalization
    assert restored.channels == layer.channels
    assert restored.shared == layer.shared
    assert len(restored.batch_norms) == len(layer.batch_norms)
    assert json.dumps(restored.get_config()) == json.dumps(layer.get_config())
