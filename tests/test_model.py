"""SlimmableModel: widths, switching, training step, threads, saving."""

import os
import subprocess
import sys
import textwrap
import threading

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_slimmable as ks

WIDTHS = (0.25, 0.5, 0.75, 1.0)


def build_model(widths=WIDTHS, shared_batch_norm=False, classes=5, seed=0):
    """A small convnet with every kind of slimmable layer."""
    keras.utils.set_random_seed(seed)

    def channels(c):
        return ks.scale_channels(c, widths)

    inputs = keras.Input((12, 12, 3))
    x = ks.SlimmableConv2D(channels(16), 3, strides=2, padding=1)(inputs)
    x = ks.SwitchableBatchNormalization(channels(16), shared=shared_batch_norm)(
        x
    )
    x = keras.layers.ReLU()(x)
    x = ks.SlimmableDepthwiseConv2D(3, padding=1, channels=channels(16))(x)
    x = ks.SwitchableBatchNormalization(channels(16), shared=shared_batch_norm)(
        x
    )
    x = keras.layers.ReLU()(x)
    x = ks.SlimmableConv2D(channels(24), 1, use_bias=False)(x)
    x = ks.SwitchableBatchNormalization(channels(24), shared=shared_batch_norm)(
        x
    )
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = ks.SlimmableDense(classes)(x)
    return ks.SlimmableModel(inputs, outputs, widths=widths)


def data(n=16, classes=5, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 12, 12, 3)).astype("float32")
    y = rng.integers(0, classes, size=(n,))
    return x, y


def clone(model):
    copy = ks.SlimmableModel.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def batch_norm_statistics(model):
    """{(layer name, width index): (moving_mean, moving_variance)}."""
    stats = {}
    for layer in model.layers:
        if isinstance(layer, ks.SwitchableBatchNormalization):
            for i, bn in enumerate(layer.batch_norms):
                stats[(layer.name, i)] = (
                    np.array(bn.moving_mean),
                    np.array(bn.moving_variance),
                )
    return stats


# Widths ----------


def test_defaults_and_width_property():
    model = build_model()
    assert model.widths == WIDTHS
    assert model.width == 1.0
    model.set_width(0.5)
    assert model.width == 0.5
    model.width = 0.25
    assert model.width == 0.25


@pytest.mark.parametrize("bad", [0.3, 2.0, "wide", None, "0.5", True])
def test_set_width_rejects_unknown_width_and_changes_nothing(bad):
    model = build_model()
    model.set_width(0.75)
    with pytest.raises(ValueError) as error:
        model.set_width(bad)
    assert repr(bad) in str(error.value)
    assert "(0.25, 0.5, 0.75, 1.0)" in str(error.value)
    assert model.width == 0.75


def test_call_with_unknown_width_raises():
    model = build_model()
    x, _ = data(2)
    with pytest.raises(ValueError, match="Unknown width 0.6"):
        model(x, width=0.6)
    # True == 1 and float("0.5") == 0.5, but neither is a width.
    with pytest.raises(ValueError, match="width=True"):
        model(x, width=True)
    with pytest.raises(ValueError, match="width='0.5'"):
        model(x, width="0.5")


def test_a_float32_width_names_the_same_width():
    model = build_model()
    x, _ = data(2)
    model.set_width(np.float32(0.75))
    assert model.width == 0.75 and type(model.width) is float
    np.testing.assert_array_equal(
        np.asarray(model(x, width=np.float32(0.25))),
        np.asarray(model(x, width=0.25)),
    )


def test_constructor_rejects_bad_widths():
    model = build_model()
    with pytest.raises(ValueError, match="ascending"):
        ks.SlimmableModel(
            model.input, model.output, widths=(1.0, 0.75, 0.5, 0.25)
        )
    with pytest.raises(
        ValueError, match="4 entries, but the model has 2 widths"
    ):
        ks.SlimmableModel(model.input, model.output, widths=(0.5, 1.0))
    with pytest.raises(ValueError, match="Unknown width 0.3"):
        ks.SlimmableModel(model.input, model.output, widths=WIDTHS, width=0.3)


def test_call_width_does_not_touch_default_and_outputs_differ():
    model = build_model()
    x, _ = data(4)
    outputs = {w: np.array(model(x, width=w)) for w in WIDTHS}
    assert model.width == 1.0
    for a in WIDTHS:
        for b in WIDTHS:
            if a != b:
                assert not np.allclose(outputs[a], outputs[b])
    np.testing.assert_allclose(np.array(model(x)), outputs[1.0], atol=1e-6)


def test_narrow_width_uses_only_prefix_channels():
    """Changing channels beyond a width's prefix leaves its output alone."""
    model = build_model()
    x, _ = data(4)
    before = np.array(model(x, width=0.25))
    wide_before = np.array(model(x, width=1.0))
    conv = model.layers[1]
    kernel = np.array(conv.kernel)
    kernel[..., 4:] += 1.0  # channels used only from width 0.5 on
    conv.kernel.assign(kernel)
    np.testing.assert_allclose(
        np.array(model(x, width=0.25)), before, atol=1e-6
    )
    assert not np.allclose(np.array(model(x, width=1.0)), wide_before)


# Switching: no stale width, no retracing ------------------------------------


def test_predict_after_set_width_is_never_stale():
    model = build_model()
    x, _ = data(8)
    expected = {w: np.array(model(x, width=w)) for w in WIDTHS}
    for w in WIDTHS + tuple(reversed(WIDTHS)) + (0.5, 1.0, 0.25):
        model.set_width(w)
        np.testing.assert_allclose(
            model.predict(x, verbose=0), expected[w], atol=1e-5
        )
        np.testing.assert_allclose(np.array(model(x)), expected[w], atol=1e-5)


def test_switching_reuses_compiled_functions():
    model = build_model()
    x, y = data(8)
    model.compile("sgd", "sparse_categorical_crossentropy", ["accuracy"])
    for w in WIDTHS:
        model.set_width(w)
        model.predict(x, verbose=0)
        model(x)
    model.evaluate(x, y, verbose=0)
    cache = model._functions
    functions = list(cache.predict.values()) + list(cache.inference.values())
    assert len(cache.predict) == len(WIDTHS)
    assert len(cache.inference) == len(WIDTHS)
    counts = [f.experimental_get_tracing_count() for f in functions]
    test_function = model.test_function
    for w in (1.0, 0.25, 0.75, 0.5, 0.25, 1.0):
        model.set_width(w)
        model.predict(x, verbose=0)
        model(x)
        model(x, width=0.5)
        model.evaluate(x, y, verbose=0)
    assert [f.experimental_get_tracing_count() for f in functions] == counts
    # `evaluate` measures every width with one function, never rebuilt.
    assert model.test_function is test_function


def test_eager_inference_runs_the_widths_compiled_function():
    model = build_model()
    x, _ = data(4)
    for w in WIDTHS:
        expected = model.predict(x, verbose=0) if w == model.width else None
        out = model(x, width=w)
        index = ks.widths.width_index(WIDTHS, w)
        active = ks.widths.ActiveWidth(w, index)
        assert (active, True) in model._functions.inference
        if expected is not None:
            np.testing.assert_allclose(np.array(out), expected, atol=1e-5)
    # Other input dtypes are converted like Keras does.
    as_float64 = np.array(model(x.astype("float64"), width=0.5))
    np.testing.assert_allclose(
        as_float64, np.array(model(tf.constant(x), width=0.5)), atol=1e-6
    )
    # Another image size than the model's falls back to Keras's own call
    # path, which reports it.
    with pytest.raises(ValueError):
        model(np.zeros((1, 7, 7, 3), "float32"), width=0.5)


def test_eager_fast_path_matches_keras_call_path():
    model = build_model()
    x, _ = data(4)
    for w in WIDTHS:
        fast = np.array(model(x, width=w))
        # `mask=None` is not taken by the fast path: Keras's __call__ runs.
        slow = np.array(model(x, width=w, mask=None))
        np.testing.assert_allclose(fast, slow, atol=1e-5)


def test_threads_at_different_widths_get_their_own_results():
    model = build_model()
    x, _ = data(4)
    expected = {w: np.array(model(x, width=w)) for w in WIDTHS}
    errors = []

    def worker(width):
        try:
            for _ in range(25):
                out = np.array(model(x, width=width))
                np.testing.assert_allclose(out, expected[width], atol=1e-5)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append((width, exc))

    threads = [threading.Thread(target=worker, args=(w,)) for w in WIDTHS * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_threads_building_functions_concurrently():
    """First calls (traces) at different widths in parallel."""
    model = build_model()
    x, _ = data(4)
    reference = clone(model)
    expected = {w: np.array(reference(x, width=w)) for w in WIDTHS}
    results = {}
    barrier = threading.Barrier(len(WIDTHS))

    def worker(width):
        barrier.wait()
        results[width] = np.array(model(x, width=width))

    threads = [threading.Thread(target=worker, args=(w,)) for w in WIDTHS]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for w in WIDTHS:
        np.testing.assert_allclose(results[w], expected[w], atol=1e-5)


# Batch norm statistics ----------


def test_training_call_at_one_width_updates_only_its_batch_norms():
    model = build_model()
    x, _ = data(8)
    before = batch_norm_statistics(model)
    model(x, training=True, width=0.5)
    after = batch_norm_statistics(model)
    for (name, index), (mean, var) in before.items():
        changed = not (
            np.array_equal(mean, after[(name, index)][0])
            and np.array_equal(var, after[(name, index)][1])
        )
        assert changed == (index == 1), (name, index)


def test_train_step_updates_every_widths_batch_norms():
    model = build_model()
    x, y = data(8)
    model.compile(keras.optimizers.SGD(0.0), "sparse_categorical_crossentropy")
    before = batch_norm_statistics(model)
    model.train_on_batch(x, y)
    after = batch_norm_statistics(model)
    for key, (mean, _) in before.items():
        assert not np.array_equal(mean, after[key][0]), key


# The training step ----------


def independent_summed_gradients(model, x, y, sample_weight=None):
    """Each width's gradients computed on its own, then summed."""
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    variables = model.trainable_variables
    total = [np.zeros(v.shape, "float32") for v in variables]
    for w in WIDTHS:
        with tf.GradientTape() as tape:
            logits = model(x, training=True, width=w)
            loss = loss_fn(y, logits, sample_weight=sample_weight)
        for i, g in enumerate(tape.gradient(loss, variables)):
            if g is not None:
                total[i] += np.array(g)
    return total


@pytest.mark.parametrize("use_sample_weight", [False, True])
@pytest.mark.parametrize("shared_batch_norm", [False, True])
def test_train_step_applies_the_sum_of_per_width_gradients(
    use_sample_weight, shared_batch_norm
):
    model = build_model(shared_batch_norm=shared_batch_norm)
    x, y = data(16)
    sample_weight = None
    if use_sample_weight:
        sample_weight = np.linspace(0.0, 2.0, len(x)).astype("float32")
    expected = independent_summed_gradients(clone(model), x, y, sample_weight)
    before = [np.array(v) for v in model.trainable_variables]
    learning_rate = 0.1
    model.compile(
        keras.optimizers.SGD(learning_rate),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.train_on_batch(x, y, sample_weight=sample_weight)
    for v, old, g in zip(model.trainable_variables, before, expected):
        np.testing.assert_allclose(
            (old - np.array(v)) / learning_rate, g, atol=2e-5, err_msg=v.path
        )


def test_weight_regularization_counts_once_per_step():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4,))
    outputs = ks.SlimmableDense(
        3, kernel_regularizer=keras.regularizers.L2(0.5), use_bias=False
    )(ks.SlimmableDense((2, 4), use_bias=False)(inputs))
    model = ks.SlimmableModel(inputs, outputs, widths=(0.5, 1.0))
    x = np.zeros((2, 4), "float32")  # data gradient of the head is zero
    y = np.zeros((2, 3), "float32")
    kernel = model.layers[-1].kernel
    before = np.array(kernel)
    model.compile(keras.optimizers.SGD(1.0), "mse")
    model.train_on_batch(x, y)
    # d/dW of 0.5 * sum(W^2) is W: counted once, W - 1.0 * W = 0.
    np.testing.assert_allclose(np.array(kernel), before - before, atol=1e-6)


def test_logs_each_widths_data_loss_and_the_regularization_once():
    # Issue 9: w1.0_loss used to include the weight decay, the other widths'
    # losses not. Golden values: the data loss computed independently at
    # each width, and 0.5 * l2 * sum(W^2) by hand.
    keras.utils.set_random_seed(0)
    l2 = 0.05
    inputs = keras.Input((4,))
    hidden = ks.SlimmableDense(
        (2, 4), use_bias=False, kernel_regularizer=keras.regularizers.L2(l2)
    )(inputs)
    outputs = ks.SlimmableDense(3, use_bias=False)(hidden)
    model = ks.SlimmableModel(inputs, outputs, widths=(0.5, 1.0))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4)).astype("float32")
    y = rng.normal(size=(8, 3)).astype("float32")
    kernel = np.array(model.layers[1].kernel, "float64")
    model.compile(keras.optimizers.SGD(0.0), "mse")
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    logs = {k: v[-1] for k, v in history.history.items()}
    regularization = l2 * np.sum(kernel**2)
    assert logs["regularization_loss"] == pytest.approx(regularization)
    data_losses = {}
    for w in (0.5, 1.0):
        prediction = np.array(model(x, width=w), "float64")
        data_losses[w] = np.mean((prediction - y) ** 2)
        assert logs[f"{ks.widths.width_name(w)}_loss"] == pytest.approx(
            data_losses[w], rel=1e-5
        )
    # The optimized objective: every width's data loss plus the
    # regularization, counted once.
    assert logs["loss"] == pytest.approx(
        sum(data_losses.values()) + regularization, rel=1e-5
    )
    evaluated = model.evaluate(x, y, verbose=0, return_dict=True)
    assert evaluated["regularization_loss"] == pytest.approx(regularization)
    assert evaluated["w1.0_loss"] == pytest.approx(data_losses[1.0], rel=1e-5)


def test_no_regularization_loss_without_regularizers():
    model = build_model()
    x, y = data(8)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(True))
    history = model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    assert "regularization_loss" not in history.history


def _all_values(model):
    variables = list(model.variables) + list(model.optimizer.variables)
    return [np.array(v) for v in variables]


def _assert_unchanged(model, before):
    after = _all_values(model)
    assert len(after) == len(before)
    for old, new in zip(before, after):
        np.testing.assert_array_equal(new, old)


@pytest.mark.parametrize("suffix", [".weights.h5", ".keras"])
def test_a_failed_load_weights_leaves_the_model_as_it_was(tmp_path, suffix):
    # Issue 10: a four-width file loaded into a two-width model overwrote
    # the conv kernels (same shapes) before failing on the batch norms.
    source = build_model(seed=1)
    source.compile("adam", keras.losses.SparseCategoricalCrossentropy(True))
    x, y = data(8)
    source.fit(x, y, epochs=1, verbose=0)
    path = str(tmp_path / f"four_widths{suffix}")
    if suffix == ".keras":
        source.save(path)
    else:
        source.save_weights(path)

    target = build_model(widths=(0.5, 1.0), seed=2)
    target.compile("adam", keras.losses.SparseCategoricalCrossentropy(True))
    target.fit(x, y, epochs=1, verbose=0)  # the optimizer has state too
    before = _all_values(target)
    outputs = np.array(target(x, width=0.5))
    with pytest.raises(ValueError):
        target.load_weights(path)
    _assert_unchanged(target, before)
    np.testing.assert_array_equal(np.array(target(x, width=0.5)), outputs)


def test_a_truncated_weights_file_changes_nothing(tmp_path):
    model = build_model()
    path = tmp_path / "model.weights.h5"
    build_model(seed=3).save_weights(str(path))
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(True))
    before = _all_values(model)
    with pytest.raises((OSError, ValueError)):  # h5py or Keras
        model.load_weights(str(path))
    _assert_unchanged(model, before)


def test_fit_logs_summed_and_per_width_loss_and_metrics():
    model = build_model()
    x, y = data(16)
    model.compile(
        keras.optimizers.SGD(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    history = model.fit(
        x, y, batch_size=16, epochs=1, validation_data=(x, y), verbose=0
    )
    logs = {k: v[-1] for k, v in history.history.items()}
    names = [ks.widths.width_name(w) for w in WIDTHS]
    for prefix in ("", "val_"):
        for name in names:
            assert f"{prefix}{name}_loss" in logs
            assert f"{prefix}{name}_accuracy" in logs
    # One batch: the summed loss is the sum of the widths' losses.
    assert logs["loss"] == pytest.approx(
        sum(logs[f"{n}_loss"] for n in names), rel=1e-5
    )
    # Validation measures every width at inference: compare independently.
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    for w, name in zip(WIDTHS, names):
        logits = model(x, width=w)
        accuracy = np.mean(np.argmax(np.array(logits), -1) == y)
        assert logs[f"val_{name}_accuracy"] == pytest.approx(accuracy)
        assert logs[f"val_{name}_loss"] == pytest.approx(
            float(loss_fn(y, logits)), rel=1e-4
        )


def test_metric_instances_are_measured_per_width():
    """A metric object given to compile is copied for every width."""
    model = build_model()
    x, y = data(16)
    model.compile(
        keras.optimizers.SGD(0.0),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[keras.metrics.SparseTopKCategoricalAccuracy(k=2, name="top2")],
    )
    logs = model.evaluate(x, y, batch_size=16, verbose=0, return_dict=True)
    for w in WIDTHS:
        logits = np.array(model(x, width=w))
        top2 = np.argsort(-logits, axis=-1)[:, :2]
        expected = np.mean([label in row for label, row in zip(y, top2)])
        name = ks.widths.width_name(w)
        assert logs[f"{name}_top2"] == pytest.approx(expected), name


def test_train_without_loss_is_a_clear_error():
    model = build_model()
    x, y = data(4)
    model.compile("sgd")
    with pytest.raises(ValueError, match="loss"):
        model.train_on_batch(x, y)


def test_mixed_precision_loss_scaling_is_undone():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_model()
        x, y = data(16)
        expected = independent_summed_gradients(clone(model), x, y)
        before = [np.array(v) for v in model.trainable_variables]
        model.compile(
            keras.optimizers.SGD(0.1),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        model.train_on_batch(x, y)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    for v, old, g in zip(model.trainable_variables, before, expected):
        delta = (old - np.array(v)) / 0.1
        np.testing.assert_allclose(delta, g, atol=5e-3, rtol=5e-2)


# Saving ----------


def test_keras_round_trip_outputs_identical_and_training_continues(tmp_path):
    model = build_model()
    x, y = data(16)
    model.compile(
        keras.optimizers.SGD(0.05, momentum=0.9),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    model.fit(x, y, epochs=1, verbose=0)
    model.set_width(0.5)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, ks.SlimmableModel)
    assert loaded.widths == WIDTHS
    assert loaded.width == 0.5
    for w in WIDTHS:
        np.testing.assert_array_equal(
            np.array(loaded(x, width=w)), np.array(model(x, width=w))
        )
    # Training continues from the same optimizer state: one more step on
    # both gives the same weights.
    model.train_on_batch(x, y)
    loaded.train_on_batch(x, y)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_get_config_round_trip():
    model = build_model(shared_batch_norm=True)
    config = model.get_config()
    assert config["widths"] == list(WIDTHS)
    copy = ks.SlimmableModel.from_config(config)
    assert copy.get_config() == config
    copy.set_weights(model.get_weights())
    x, _ = data(4)
    for w in WIDTHS:
        np.testing.assert_array_equal(
            np.array(copy(x, width=w)), np.array(model(x, width=w))
        )


# Distribution ----------


def test_mirrored_strategy_update_equals_single_device_update(tmp_path):
    """A global batch over two replicas gives the single-device update.

    Runs in a fresh process: logical devices must be configured before
    TensorFlow starts. Each replica gets the same half batch, so batch-norm
    statistics per replica equal the statistics of the whole batch.
    """
    script = textwrap.dedent(
        f"""
        import sys
        import numpy as np
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * 2
        )
        import keras
        sys.path.insert(0, {os.path.dirname(__file__)!r})
        from test_model import build_model, data

        def update(strategy):
            with strategy.scope():
                model = build_model()
                model.compile(
                    keras.optimizers.SGD(0.1),
                    keras.losses.SparseCategoricalCrossentropy(
                        from_logits=True
                    ),
                )
            before = [np.array(v) for v in model.trainable_variables]
            half, y_half = data(8)
            x = np.concatenate([half, half])
            y = np.concatenate([y_half, y_half])
            model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
            after = [np.array(v) for v in model.trainable_variables]
            return [b - a for a, b in zip(after, before)]

        mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        assert mirrored.num_replicas_in_sync == 2
        distributed = update(mirrored)
        single = update(tf.distribute.OneDeviceStrategy("/cpu:0"))
        worst = max(float(np.abs(a - b).max()) for a, b in
                    zip(distributed, single))
        largest = max(float(np.abs(b).max()) for b in single)
        print("WORST", worst, "LARGEST", largest)
        assert largest > 1e-3
        assert worst < 1e-5, worst
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "WORST" in result.stdout
