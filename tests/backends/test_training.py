"""Algorithm 1 on the backend this process runs (`KERAS_BACKEND`).

Written with `keras.ops` only, so the same tests run on every backend: the
TensorFlow suite collects them, and `tests/test_backends.py` runs this
folder again in subprocesses on JAX and on PyTorch. The golden gradients
are each width's own, taken by the backend's autodiff directly
(`tf.GradientTape`, `jax.grad`, `torch.Tensor.backward`), not by the
trainer under test.
"""

import keras
import numpy as np
import pytest

import keras_slimmable as ks

WIDTHS = (0.5, 1.0)
LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def build_model(shared_batch_norm=False):
    """Conv, depthwise, batch norms and a dense head, at two widths.

    Randomly initialized without a global seed, which would leak into the
    other tests of the process (tf.data augmentation reads it).
    """

    def channels(c):
        return ks.scale_channels(c, WIDTHS)

    inputs = keras.Input((8, 8, 3))
    x = ks.SlimmableConv2D(channels(8), 3, strides=2, padding=1)(inputs)
    x = ks.SwitchableBatchNormalization(channels(8), shared=shared_batch_norm)(
        x
    )
    x = keras.layers.ReLU()(x)
    x = ks.SlimmableDepthwiseConv2D(3, padding=1, channels=channels(8))(x)
    x = ks.SwitchableBatchNormalization(channels(8), shared=shared_batch_norm)(
        x
    )
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = ks.SlimmableDense(4)(x)
    return ks.SlimmableModel(inputs, outputs, widths=WIDTHS)


def data(n=8, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 4, size=(n,))
    return x, y


def numpy(value):
    return keras.ops.convert_to_numpy(value)


def clone(model):
    copy = ks.SlimmableModel.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def one_width_gradients(model, x, y, sample_weight, width):
    """The gradients of one width's loss, by the backend's own autodiff."""
    backend = keras.backend.backend()
    variables = model.trainable_variables
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            logits = model(x, training=True, width=width)
            loss = LOSS(y, logits, sample_weight=sample_weight)
        gradients = tape.gradient(loss, variables)
    elif backend == "jax":
        import jax

        non_trainable = [v.value for v in model.non_trainable_variables]

        def loss_of(trainable):
            logits, _ = model.stateless_call(
                trainable, non_trainable, x, training=True, width=width
            )
            return LOSS(y, logits, sample_weight=sample_weight)

        gradients = jax.grad(loss_of)([v.value for v in variables])
    else:
        model.zero_grad()
        logits = model(x, training=True, width=width)
        LOSS(y, logits, sample_weight=sample_weight).backward()
        gradients = [v.value.grad for v in variables]
    return [
        np.zeros(v.shape, "float32") if g is None else numpy(g)
        for v, g in zip(variables, gradients)
    ]


def batch_norm_statistics(model):
    """{(layer name, batch norm index): (moving mean, moving variance)}."""
    statistics = {}
    for layer in model.layers:
        if isinstance(layer, ks.SwitchableBatchNormalization):
            for i, batch_norm in enumerate(layer.batch_norms):
                statistics[(layer.name, i)] = (
                    numpy(batch_norm.moving_mean),
                    numpy(batch_norm.moving_variance),
                )
    return statistics


@pytest.mark.parametrize("use_sample_weight", [False, True])
@pytest.mark.parametrize("shared_batch_norm", [False, True])
def test_one_step_applies_the_sum_of_every_widths_gradients(
    use_sample_weight, shared_batch_norm
):
    model = build_model(shared_batch_norm=shared_batch_norm)
    x, y = data()
    sample_weight = None
    if use_sample_weight:
        sample_weight = np.linspace(0.0, 2.0, len(x)).astype("float32")
    expected = None
    for width in WIDTHS:
        gradients = one_width_gradients(
            clone(model), x, y, sample_weight, width
        )
        expected = (
            gradients
            if expected is None
            else [a + b for a, b in zip(expected, gradients)]
        )
    before = [numpy(v) for v in model.trainable_variables]
    learning_rate = 0.1
    model.compile(keras.optimizers.SGD(learning_rate), LOSS)
    model.train_on_batch(x, y, sample_weight=sample_weight)
    for variable, old, gradient in zip(
        model.trainable_variables, before, expected
    ):
        np.testing.assert_allclose(
            (old - numpy(variable)) / learning_rate,
            gradient,
            atol=2e-5,
            err_msg=variable.path,
        )
    # Every width contributed: the sum differs from the widest alone.
    widest = one_width_gradients(clone(model), x, y, sample_weight, 1.0)
    assert any(
        not np.allclose(a, b, atol=1e-4) for a, b in zip(expected, widest)
    )


def test_a_training_call_at_one_width_updates_only_its_batch_norms():
    model = build_model()
    x, _ = data()
    before = batch_norm_statistics(model)
    model(x, training=True, width=0.5)
    after = batch_norm_statistics(model)
    for (name, index), (mean, variance) in before.items():
        changed = not (
            np.array_equal(mean, after[(name, index)][0])
            and np.array_equal(variance, after[(name, index)][1])
        )
        assert changed == (index == 0), (name, index)


def test_a_training_step_updates_every_widths_batch_norms():
    model = build_model()
    x, y = data()
    model.compile(keras.optimizers.SGD(0.0), LOSS)
    before = batch_norm_statistics(model)
    model.train_on_batch(x, y)
    after = batch_norm_statistics(model)
    for key, (mean, _) in before.items():
        assert not np.array_equal(mean, after[key][0]), key


def test_fit_logs_every_width_and_evaluate_measures_every_width():
    model = build_model()
    x, y = data(16)
    model.compile(keras.optimizers.SGD(0.05), LOSS, metrics=["accuracy"])
    history = model.fit(
        x, y, batch_size=16, epochs=2, validation_data=(x, y), verbose=0
    )
    logs = {key: values[-1] for key, values in history.history.items()}
    for prefix in ("", "val_"):
        for name in ("w0.5", "w1.0"):
            assert f"{prefix}{name}_loss" in logs
            assert f"{prefix}{name}_accuracy" in logs
    # Evaluation, against an independent computation at each width.
    results = model.evaluate(x, y, verbose=0, return_dict=True)
    for width, name in zip(WIDTHS, ("w0.5", "w1.0")):
        logits = numpy(model(x, width=width))
        accuracy = np.mean(np.argmax(logits, -1) == y)
        assert results[f"{name}_accuracy"] == pytest.approx(accuracy)
        assert results[f"{name}_loss"] == pytest.approx(
            float(numpy(LOSS(y, logits))), rel=1e-4
        )
    assert results["loss"] == pytest.approx(
        results["w0.5_loss"] + results["w1.0_loss"], rel=1e-5
    )


def test_predict_after_set_width_is_never_stale():
    model = build_model()
    x, _ = data()
    for width in (1.0, 0.5, 1.0):
        model.set_width(width)
        np.testing.assert_allclose(
            model.predict(x, verbose=0),
            numpy(model(x, width=width)),
            atol=1e-6,
        )


def test_a_failed_fit_leaves_the_model_usable():
    # On JAX, Keras empties the variables while fit runs: an error used to
    # leave them empty for good.
    model = build_model()
    x, y = data()
    expected = numpy(model(x, width=0.5))

    def broken_loss(y_true, y_pred):
        raise RuntimeError("a broken loss")

    model.compile("sgd", broken_loss)
    with pytest.raises(RuntimeError, match="a broken loss"):
        model.fit(x, y, verbose=0)
    np.testing.assert_array_equal(numpy(model(x, width=0.5)), expected)
    assert model.predict(x, verbose=0).shape == (len(x), 4)


def _compile(function):
    """The backend's own compiler, as a user would wrap a call."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(function)
    if backend == "jax":
        import jax

        return jax.jit(function)
    pytest.skip("the PyTorch backend runs calls eagerly: nothing is traced")


def test_a_users_compiled_function_never_runs_a_stale_width():
    # Issue 11: tf.function(lambda x: model(x)) traced at 1.0 kept running
    # 1.0 after set_width(0.5). Without `width=` it is now an error; with
    # it, the width is right.
    model = build_model()
    x, _ = data()
    implicit = _compile(lambda images: model(images))
    with pytest.raises(ValueError, match="without `width=`"):
        implicit(x)
    explicit = _compile(lambda images: model(images, width=0.5))
    np.testing.assert_allclose(
        numpy(explicit(x)), numpy(model(x, width=0.5)), atol=1e-6
    )
    # Keras's own predict follows set_width (one function per width).
    model.set_width(0.5)
    np.testing.assert_allclose(
        model.predict(x, verbose=0), numpy(model(x, width=0.5)), atol=1e-6
    )


def test_eager_inference_follows_weight_changes_at_every_width():
    # Each width's compiled inference function (jax.jit on JAX, tf.function
    # on TensorFlow) is given, or reads, the current weights: writing them
    # never leaves a stale output behind.
    model = build_model()
    x, _ = data()
    first = {w: numpy(model(x, width=w)) for w in WIDTHS}
    head = model.layers[-1]
    kernel = numpy(head.kernel)
    head.kernel.assign(kernel * 2.0)
    for width in WIDTHS:
        again = numpy(model(x, width=width))
        bias = numpy(head.bias)
        # Logits are affine in the head's kernel: doubled minus the bias.
        np.testing.assert_allclose(
            again, 2.0 * first[width] - bias, rtol=1e-5, atol=1e-5
        )
        # And equal to the graph run op by op at that width.
        np.testing.assert_allclose(
            again,
            numpy(model(x, width=width, training=False, mask=None)),
            atol=1e-6,
        )
