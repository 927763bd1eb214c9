"""Recipes: weight decay as PyTorch's, Nesterov SGD against numpy, the
schedules against values worked out by hand, RECIPES and make_optimizer."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_slimmable as ks
from keras_slimmable import recipes

WIDTHS = (0.5, 1.0)
WD = 1e-4


def build_model(seed=0):
    """Every kind of kernel: slimmable conv, depthwise, grouped, dense;
    Keras conv, depthwise, separable and dense; batch norms; biases."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = ks.SlimmableConv2D((4, 8), 3, padding=1, name="conv")(inputs)
    x = ks.SwitchableBatchNormalization((4, 8), name="bn")(x)
    x = ks.SlimmableDepthwiseConv2D(3, padding=1, channels=(4, 8), name="dw")(x)
    x = ks.SlimmableGroupedConv2D(12, 1, groups=2, name="gconv")(x)
    x = keras.layers.Conv2D(12, 1, name="keras_conv")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same", name="keras_dw")(x)
    x = keras.layers.Conv2D(12, 1, groups=12, name="keras_grouped_dw")(x)
    x = keras.layers.SeparableConv2D(6, 3, padding="same", name="keras_sep")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(6, name="keras_dense")(x)
    outputs = ks.SlimmableDense(3, name="dense")(x)
    return ks.SlimmableModel(inputs, outputs, widths=WIDTHS)


DECAYED = {
    "conv/kernel",
    "gconv/kernel",
    "keras_conv/kernel",
    "keras_sep/pointwise_kernel",
    "keras_dense/kernel",
    "dense/kernel",
}


def data(n=8, seed=1):
    rng = np.random.default_rng(seed)
    return (
        rng.normal(size=(n, 8, 8, 3)).astype("float32"),
        rng.integers(0, 3, size=(n,)),
    )


# Weight decay -----------------------------------------------------------


def test_weight_decay_gradient_is_wd_times_w_on_conv_and_dense_kernels():
    model = build_model()
    assert set(recipes.apply_weight_decay(model, WD)) == DECAYED
    variables = model.trainable_variables
    with tf.GradientTape() as tape:
        penalty = tf.add_n(model.losses)
    gradients = tape.gradient(penalty, variables)
    for variable, gradient in zip(variables, gradients):
        if variable.path in DECAYED:
            np.testing.assert_allclose(
                gradient.numpy(), WD * variable.numpy(), rtol=1e-5, atol=1e-12
            )
        else:
            # Depthwise kernels (also a Keras conv with one input channel
            # per group, as the reference), batch norms, biases.
            assert gradient is None, variable.path
    expected = sum(
        WD / 2 * np.sum(np.square(v.numpy()))
        for v in variables
        if v.path in DECAYED
    )
    np.testing.assert_allclose(float(penalty), expected, rtol=1e-5)


def test_one_training_step_adds_wd_times_w_once_not_once_per_width():
    x, y = data()
    plain, decayed = build_model(), build_model()
    recipes.apply_weight_decay(decayed, WD)
    learning_rate = 0.5
    before = {v.path: v.numpy() for v in decayed.trainable_variables}
    for model in (plain, decayed):
        model.compile(
            optimizer=keras.optimizers.SGD(learning_rate),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            run_eagerly=True,  # one step: tracing would cost more
        )
        model.train_on_batch(x, y)
    plain_after = {v.path: v.numpy() for v in plain.trainable_variables}
    for variable in decayed.trainable_variables:
        difference = variable.numpy() - plain_after[variable.path]
        if variable.path in DECAYED:
            # SGD: w -= lr * (g + wd * w); two widths, decay counted once.
            np.testing.assert_allclose(
                difference,
                -learning_rate * WD * before[variable.path],
                atol=1e-7,
            )
        else:
            np.testing.assert_allclose(difference, 0.0, atol=1e-7)


def test_weight_decay_before_build_and_after_round_trips(tmp_path):
    model = keras.Sequential(
        [
            keras.layers.Conv2D(4, 3, name="c"),
            keras.layers.DepthwiseConv2D(3, name="dw"),
            keras.layers.BatchNormalization(name="bn"),
            keras.layers.Flatten(),
            keras.layers.Dense(2, name="d"),
        ]
    )
    assert recipes.apply_weight_decay(model, WD) == []  # nothing built yet
    model.build((None, 8, 8, 3))
    regularized = {
        v.path: v.regularizer.l2
        for v in model.trainable_variables
        if v.regularizer is not None
    }
    assert set(regularized) == {
        f"{model.name}/c/kernel",
        f"{model.name}/d/kernel",
    }
    assert all(l2 == pytest.approx(WD / 2) for l2 in regularized.values())

    slimmable = build_model()
    recipes.apply_weight_decay(slimmable, WD)
    config = slimmable.get_layer("conv").get_config()
    assert config["kernel_regularizer"]["config"]["l2"] == pytest.approx(5e-5)
    assert (
        slimmable.get_layer("dw").get_config()["depthwise_regularizer"] is None
    )
    path = str(tmp_path / "model.keras")
    slimmable.save(path)
    for copy in (
        ks.SlimmableModel.from_config(slimmable.get_config()),
        keras.saving.load_model(path),
    ):
        copy.set_weights(slimmable.get_weights())
        assert {
            v.path for v in copy.trainable_variables if v.regularizer
        } == DECAYED
        np.testing.assert_allclose(
            float(tf.add_n(copy.losses)),
            float(tf.add_n(slimmable.losses)),
            rtol=1e-6,
        )


def test_weight_decay_zero_removes_it_and_negative_is_an_error():
    model = build_model()
    recipes.apply_weight_decay(model, WD)
    assert recipes.apply_weight_decay(model, 0) == []
    assert model.losses == []
    assert model.get_layer("conv").kernel_regularizer is None
    with pytest.raises(ValueError, match="weight_decay"):
        recipes.apply_weight_decay(model, -1.0)


def test_weight_decay_on_the_zoo_mobilenet_v1():
    model = ks.zoo.s_mobilenet_v1(weights=None, input_shape=(32, 32, 3))
    decayed = recipes.apply_weight_decay(model, WD)
    # The stem conv, 13 pointwise convs and the classifier; none of the 13
    # depthwise convs.
    assert len(decayed) == 15
    depthwise = [
        layer
        for layer in model.layers
        if isinstance(layer, ks.SlimmableDepthwiseConv2D)
    ]
    assert len(depthwise) == 13
    assert all(layer.kernel.regularizer is None for layer in depthwise)


# SGD --------------------------------------------------------------------


def quadratic_problem():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 4))
    a = a @ a.T + np.eye(4)
    b = rng.normal(size=4)
    return a, b, rng.normal(size=4)


def keras_steps(optimizer, a, b, w0, steps):
    w = keras.Variable(w0.astype("float32"))
    for _ in range(steps):
        gradient = (a @ w.numpy() - b).astype("float32")
        optimizer.apply_gradients([(tf.constant(gradient), w)])
    return w.numpy()


def pytorch_nesterov(a, b, w0, learning_rates, momentum=0.9):
    """torch.optim.SGD(nesterov=True, dampening=0), by hand."""
    w, buffer = w0.copy(), None
    for lr in learning_rates:
        g = a @ w - b
        buffer = g if buffer is None else momentum * buffer + g
        w = w - lr * (g + momentum * buffer)
    return w


def keras_nesterov(a, b, w0, learning_rates, momentum=0.9):
    """The formula of Keras's SGD docstring, by hand."""
    w, velocity = w0.copy(), np.zeros_like(w0)
    for lr in learning_rates:
        g = a @ w - b
        velocity = momentum * velocity - lr * g
        w = w + momentum * velocity - lr * g
    return w


def test_sgd_is_pytorch_nesterov_at_a_constant_learning_rate():
    a, b, w0 = quadratic_problem()
    optimizer = recipes.sgd(0.02)
    assert optimizer.nesterov and optimizer.momentum == 0.9
    ours = keras_steps(optimizer, a, b, w0, 6)
    np.testing.assert_allclose(
        ours, pytorch_nesterov(a, b, w0, [0.02] * 6), rtol=1e-5
    )


def test_sgd_differs_from_pytorch_when_the_learning_rate_drops():
    a, b, w0 = quadratic_problem()
    rates = [0.02, 0.02, 0.002, 0.002, 0.002]
    schedule = recipes.StepDecay(0.02, 1, boundaries=(2,), factor=0.1)
    ours = keras_steps(recipes.sgd(schedule), a, b, w0, len(rates))
    np.testing.assert_allclose(ours, keras_nesterov(a, b, w0, rates), rtol=1e-5)
    pytorch = pytorch_nesterov(a, b, w0, rates)
    assert np.abs(ours - pytorch).max() > 1e-3  # as the docstring says


# Schedules --------------------------------------------------------------


def schedule_of(optimizer):
    """The schedule, through the optimizer's (public) config."""
    return keras.saving.deserialize_keras_object(
        optimizer.get_config()["learning_rate"]
    )


def values(schedule, steps):
    return [float(schedule(tf.constant(s, tf.int64))) for s in steps]


def test_exponential_per_epoch():
    schedule = recipes.ExponentialPerEpoch(0.045, steps_per_epoch=10)
    np.testing.assert_allclose(
        values(schedule, [0, 9, 10, 19, 20, 25, 100]),
        [0.045, 0.045, 0.0441, 0.0441, 0.043218, 0.043218, 0.045 * 0.98**10],
        rtol=1e-6,
    )
    # The last step of a long epoch is still in that epoch.
    long = recipes.ExponentialPerEpoch(1.0, steps_per_epoch=100_003)
    np.testing.assert_allclose(
        values(long, [479 * 100_003 + 100_002]), [0.98**479], rtol=1e-5
    )


def test_linear_to_zero():
    schedule = recipes.LinearToZero(0.5, total_steps=100)
    np.testing.assert_allclose(
        values(schedule, [0, 1, 50, 99, 100, 150]),
        [0.5, 0.495, 0.25, 0.005, 0.0, 0.0],
        rtol=1e-6,
        atol=1e-9,
    )


def test_step_decay():
    schedule = recipes.StepDecay(0.1, steps_per_epoch=10)
    np.testing.assert_allclose(
        values(schedule, [0, 299, 300, 599, 600, 899, 900, 5000]),
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001, 1e-4, 1e-4],
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match="boundaries"):
        recipes.StepDecay(0.1, 10, boundaries=(60, 30))
    with pytest.raises(ValueError, match="steps_per_epoch"):
        recipes.StepDecay(0.1, 0)


@pytest.mark.parametrize(
    "schedule",
    [
        recipes.ExponentialPerEpoch(0.045, 7, decay=0.9),
        recipes.LinearToZero(0.5, 70),
        recipes.StepDecay(0.1, 7, boundaries=(2, 5), factor=0.5),
    ],
)
def test_schedules_serialize_and_drive_the_optimizer(schedule):
    copy = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(schedule)
    )
    assert type(copy) is type(schedule)
    assert copy.get_config() == schedule.get_config()
    optimizer = keras.optimizers.SGD.from_config(
        recipes.sgd(schedule).get_config()
    )
    assert type(schedule_of(optimizer)) is type(schedule)
    # Keras evaluates the schedule at `iterations`, the updates done so far.
    w = keras.Variable(np.ones(2, "float32"))
    for step in range(20):
        expected = float(schedule(step))
        np.testing.assert_allclose(
            float(optimizer.learning_rate), expected, rtol=1e-6
        )
        optimizer.apply_gradients([(tf.ones(2), w)])


# RECIPES and make_optimizer ---------------------------------------------


def test_recipes_are_the_reference_ones():
    expected = {
        "s_mobilenet_v1": (
            160,
            0.045,
            "exponential_per_epoch",
            480,
            (0.25, 1.0),
        ),
        "s_mobilenet_v2": (
            160,
            0.045,
            "exponential_per_epoch",
            480,
            (0.25, 1.0),
        ),
        "s_shufflenet": (1024, 0.5, "linear_to_zero", 250, (0.25, 1.0)),
        "s_resnet50": (256, 0.1, "step_decay", 100, (0.08, 1.0)),
    }
    assert set(recipes.RECIPES) == set(expected)
    for name, (batch, lr, schedule, epochs, crop) in expected.items():
        recipe = recipes.RECIPES[name]
        assert (
            recipe["batch_size"],
            recipe["learning_rate"],
            recipe["schedule"],
            recipe["epochs"],
            recipe["crop_scale"],
        ) == (batch, lr, schedule, epochs, crop)
        assert recipe["weight_decay"] == 1e-4
        assert recipe["momentum"] == 0.9 and recipe["nesterov"] is True
    assert recipes.RECIPES["s_mobilenet_v1"]["decay"] == 0.98
    assert recipes.RECIPES["s_resnet50"]["boundaries"] == (30, 60, 90)
    assert recipes.RECIPES["s_resnet50"]["factor"] == 0.1


def test_make_optimizer_builds_the_schedule_and_scales_the_rate():
    optimizer = recipes.make_optimizer("s_mobilenet_v1", steps_per_epoch=10)
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert optimizer.nesterov and optimizer.momentum == 0.9
    schedule = schedule_of(optimizer)
    assert isinstance(schedule, recipes.ExponentialPerEpoch)
    np.testing.assert_allclose(values(schedule, [0, 10]), [0.045, 0.0441])

    # Half the batch, half the rate; ShuffleNet reaches 0 after 250 epochs.
    shufflenet = schedule_of(
        recipes.make_optimizer(
            "s_shufflenet", steps_per_epoch=4, batch_size=512
        )
    )
    assert isinstance(shufflenet, recipes.LinearToZero)
    np.testing.assert_allclose(
        values(shufflenet, [0, 500, 1000]), [0.25, 0.125, 0.0], atol=1e-9
    )
    resnet = schedule_of(
        recipes.make_optimizer("s_resnet50", steps_per_epoch=2, batch_size=512)
    )
    np.testing.assert_allclose(values(resnet, [59, 60]), [0.2, 0.02], rtol=1e-6)

    custom = dict(recipes.RECIPES["s_resnet50"], boundaries=(1,), epochs=2)
    np.testing.assert_allclose(
        values(schedule_of(recipes.make_optimizer(custom, 3)), [2, 3]),
        [0.1, 0.01],
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match="Unknown recipe"):
        recipes.make_optimizer("s_vgg", 10)
    with pytest.raises(ValueError, match="missing"):
        recipes.make_optimizer({"learning_rate": 0.1}, 10)


def test_scale_learning_rate_is_linear_in_the_batch():
    # By hand: 0.045 * 32 / 160 = 0.009; 0.5 * 256 / 1024 = 0.125.
    assert recipes.scale_learning_rate(0.045, 32, 160) == pytest.approx(0.009)
    assert recipes.scale_learning_rate(0.5, 256, 1024) == 0.125
    assert recipes.scale_learning_rate(0.1, 256, 256) == 0.1
    with pytest.raises(ValueError, match="base_batch_size=0"):
        recipes.scale_learning_rate(0.1, 32, 0)
    # make_schedule scales the same way.
    schedule = recipes.make_schedule("s_mobilenet_v1", 10, batch_size=32)
    assert schedule.initial_learning_rate == pytest.approx(0.009)


def test_reference_recipes_use_the_unbiased_moving_variance():
    for name, recipe in recipes.RECIPES.items():
        assert recipe["unbiased_moving_variance"] is True, name
    # reproduce_cifar10.py trains with Keras's batch norm as it is.
    for name, recipe in recipes.CIFAR10_RECIPES.items():
        assert recipe["unbiased_moving_variance"] is False, name


def test_set_unbiased_moving_variance_sets_every_switchable_batch_norm():
    model = build_model()
    layers = recipes.set_unbiased_moving_variance(model, True)
    switchable = [
        layer
        for layer in model._flatten_layers(include_self=True, recursive=True)
        if isinstance(layer, ks.SwitchableBatchNormalization)
    ]
    assert [layer.name for layer in layers] == ["bn"]
    assert layers == switchable
    assert all(layer.unbiased_moving_variance is True for layer in layers)
    recipes.set_unbiased_moving_variance(model, False)
    assert all(layer.unbiased_moving_variance is False for layer in layers)


def test_cifar10_recipes_complete_and_scaled():
    recipe = recipes.CIFAR10_RECIPES["s_mobilenet_v1"]
    optimizer = recipes.make_optimizer(recipe, 390, batch_size=64)
    schedule = schedule_of(optimizer)
    assert isinstance(schedule, recipes.LinearToZero)
    # 0.05 * 64 / 128 = 0.025, reaching 0 after 3 epochs of 390 steps.
    np.testing.assert_allclose(
        values(schedule, [0, 585, 1170]), [0.025, 0.0125, 0.0], atol=1e-9
    )
