"""Universally slimmable networks on every backend: any width of a range,
batch-norm calibration, the sandwich rule and inplace distillation.

The golden values come from outside the code under test: the channel rule's
formula evaluated in NumPy, batch statistics computed in NumPy from a plain
convolution, the soft cross-entropy written out, and (for the sandwich
rule's drawn widths) Algorithm 1 at the same widths listed, whose step
equals the reference's (tests/test_reference_training.py and
tests/backends/test_training.py).
"""

import keras
import numpy as np
import pytest

import keras_slimmable as ks
from keras_slimmable.layers import UniversalBatchNormalization

RULE = ks.ScaledChannels


def build(widths=(0.25, 1.0), calibrated=(0.25, 1.0), seed=1):
    """conv (rule) -> universal BN -> ReLU -> depthwise -> universal BN ->
    ReLU -> pool -> dense, on 8 x 8 x 3 images, widths 0.25 to 1.0."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = ks.SlimmableConv2D(RULE(32), 3, padding=1, use_bias=False, name="conv")(
        inputs
    )
    x = UniversalBatchNormalization(
        RULE(32), calibrated_widths=calibrated, epsilon=1e-5, name="bn"
    )(x)
    x = keras.layers.ReLU()(x)
    x = ks.SlimmableDepthwiseConv2D(
        3, padding=1, use_bias=False, channels=RULE(32), name="dw"
    )(x)
    x = UniversalBatchNormalization(
        RULE(32), calibrated_widths=calibrated, epsilon=1e-5, name="bn2"
    )(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = ks.SlimmableDense(10, name="fc")(x)
    return ks.SlimmableModel(
        inputs, outputs, widths=widths, width_range=(0.25, 1.0)
    )


def images(count=16, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(count, 8, 8, 3)).astype("float32")


def labels(count=16):
    return (np.arange(count) % 10).astype("int32")


def numpy_values(model):
    return [keras.ops.convert_to_numpy(v) for v in model.variables]


def md(value):
    """The reference's make_divisible, written out again (divisor 8)."""
    rounded = max(1, int(value + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * value else rounded


# Any width ---------------------------------------------------------------


def test_any_width_of_the_range_runs_with_the_rules_channels():
    model = build()
    model.set_uncalibrated_batch_norm("batch_statistics")
    x = images()
    conv = model.get_layer("conv")
    for width in (0.25, 0.3, 0.4, 0.61803, 1.0):
        assert model(x, width=width).shape == (16, 10)
        with ks.width_scope(width=width):
            assert conv.compute_output_shape((1, 8, 8, 3))[-1] == md(32 * width)
    for bad in (0.2, 1.01, "0.5"):
        with pytest.raises(ValueError, match=r"\[0\.25, 1\.0\]"):
            model(x, width=bad)
    with pytest.raises(ValueError, match="width"):
        model.set_width(None)
    model.set_width(0.4)
    assert model.width == 0.4


def test_uncalibrated_width_says_how_to_calibrate():
    model = build()
    with pytest.raises(ValueError, match=r"calibrate_batch_norm\(\[0\.4\]"):
        model(images(), width=0.4)
    # The calibrated ends run.
    assert model(images(), width=0.25).shape == (16, 10)


def test_batch_statistics_on_request():
    model = build()
    model.set_uncalibrated_batch_norm("batch_statistics")
    x = images()
    # Batch statistics at inference equal the training-mode forward (which
    # normalizes with batch statistics too, and tracks nothing at 0.4).
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(x, width=0.4)),
        keras.ops.convert_to_numpy(model(x, width=0.4, training=True)),
        atol=1e-5,
    )
    with pytest.raises(ValueError, match="'error' or 'batch_statistics'"):
        model.set_uncalibrated_batch_norm("zeros")


def test_compiled_functions_stay_bounded():
    model = build()
    model.set_uncalibrated_batch_norm("batch_statistics")
    x = images(2)
    for width in np.linspace(0.25, 1.0, 45):
        model(x, width=float(width))
    kept = len(model._functions.inference)
    assert kept <= model._functions.CAPACITY
    if keras.backend.backend() != "torch":  # eager there: nothing compiled
        assert kept == model._functions.CAPACITY


def test_a_listed_layer_cannot_join_a_range_model():
    inputs = keras.Input((8, 8, 3))
    x = ks.SlimmableConv2D((8, 16), 3, name="listed")(inputs)
    with pytest.raises(ValueError, match="'listed'.*channel rule"):
        ks.SlimmableModel(inputs, x, widths=(0.5, 1.0), width_range=(0.5, 1))
    for bad in ((1.0, 0.5), (0, 1.0), "ab", (0.5,)):
        with pytest.raises(ValueError, match="width_range"):
            ks.SlimmableModel(inputs, x, widths=(0.5, 1.0), width_range=bad)


# Calibration -------------------------------------------------------------


def batch_statistics(model, x, width, batch):
    """Per-batch mean and unbiased variance of the first batch norm's input
    at `width`, from a plain convolution on the kernel's prefix."""
    kernel = keras.ops.convert_to_numpy(model.get_layer("conv").kernel)
    kernel = kernel[..., : md(32 * width)]
    means, variances = [], []
    for start in range(0, len(x), batch):
        y = keras.ops.convert_to_numpy(
            keras.ops.conv(x[start : start + batch], kernel, padding="same")
        ).astype("float64")
        means.append(y.mean(axis=(0, 1, 2)))
        variances.append(y.var(axis=(0, 1, 2), ddof=1))
    return np.mean(means, axis=0), np.mean(variances, axis=0)


def test_calibration_is_the_average_of_batch_statistics():
    model = build()
    x = images(24)
    before = {v.path: keras.ops.convert_to_numpy(v) for v in model.weights}
    model.calibrate_batch_norm([0.4, 1.0], x, batch_size=8, verbose=0)
    assert model.calibrated_widths == (0.25, 0.4, 1.0)
    layer = model.get_layer("bn")
    for width in (0.4, 1.0):
        mean, variance = layer.statistics[layer._slot(width)]
        expected_mean, expected_variance = batch_statistics(model, x, width, 8)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(mean), expected_mean, atol=1e-5
        )
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(variance), expected_variance, rtol=1e-4
        )
    # Nothing else moved: the weights and the statistics of 0.25.
    for variable in model.weights:
        if variable.path in before and not any(
            f"_{layer._slot(w)}" in variable.path for w in (0.4, 1.0)
        ):
            np.testing.assert_array_equal(
                keras.ops.convert_to_numpy(variable), before[variable.path]
            )
    assert model(x, width=0.4).shape == (24, 10)


def test_bad_calibration_data_changes_nothing():
    model = build()
    values = numpy_values(model)
    for bad, match in (
        (np.zeros((4, 9, 9, 3), "float32"), r"shape \(4, 9, 9, 3\)"),
        (np.zeros((0, 8, 8, 3), "float32"), "no batch"),
        (np.array([["a"] * 3] * 4), "shape"),
    ):
        with pytest.raises(ValueError, match=match):
            model.calibrate_batch_norm([0.4], bad, verbose=0)
    with pytest.raises(ValueError, match=r"Unknown width 1\.5"):
        model.calibrate_batch_norm([0.4, 1.5], images(), verbose=0)
    with pytest.raises(ValueError, match="steps=3"):
        model.calibrate_batch_norm([0.4], images(8), steps=3, batch_size=4)
    assert model.calibrated_widths == (0.25, 1.0)
    for before, after in zip(values, numpy_values(model)):
        np.testing.assert_array_equal(before, after)


def test_calibrated_widths_are_saved(tmp_path):
    model = build()
    x = images()
    model.calibrate_batch_norm([0.6], x, verbose=0)
    path = str(tmp_path / "us.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.calibrated_widths == (0.25, 0.6, 1.0)
    assert loaded.width_range == (0.25, 1.0)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(x, width=0.6)),
        keras.ops.convert_to_numpy(model(x, width=0.6)),
        atol=1e-6,
    )


# The sandwich rule -----------------------------------------------------------


def compile_sgd(model, **kwargs):
    model.compile(
        keras.optimizers.SGD(0.5),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        **kwargs,
    )


def draw_fixed(value):
    """Replaces the random draw by `value` (as a traced constant)."""

    def draw(count, *unused):
        return [keras.ops.convert_to_tensor(value, "float32")] * count

    return draw


def test_a_drawn_width_trains_as_the_same_width_listed():
    # The sandwich step at 1.0, 0.25 and a drawn 0.6 (channels zeroed
    # beyond the count) against Algorithm 1 with 0.6 listed (channels
    # sliced): the same weights after one step.
    sandwich = build()
    compile_sgd(sandwich, sandwich_rule=ks.SandwichRule(3, seed=0))
    sandwich._draw_widths = draw_fixed(0.6)
    listed = build(widths=(0.25, 0.6, 1.0))
    compile_sgd(listed)
    x, y = images(), labels()
    logs = sandwich.train_on_batch(x, y, return_dict=True)
    listed_logs = listed.train_on_batch(x, y, return_dict=True)
    assert set(logs) == {"loss", "w0.25_loss", "w1.0_loss", "sampled_loss"}
    np.testing.assert_allclose(
        logs["sampled_loss"], listed_logs["w0.6_loss"], rtol=1e-5
    )
    np.testing.assert_allclose(logs["loss"], listed_logs["loss"], rtol=1e-5)
    for a, b in zip(sandwich.trainable_variables, listed.trainable_variables):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(a),
            keras.ops.convert_to_numpy(b),
            atol=1e-5,
        )


def test_drawn_widths_depend_on_the_seed_and_the_step_only(tmp_path):
    x, y = images(32), labels(32)

    def trained(seed, epochs, model=None):
        if model is None:
            model = build()
            compile_sgd(model, sandwich_rule=ks.SandwichRule(4, seed=seed))
        model.fit(x, y, batch_size=8, epochs=epochs, shuffle=False, verbose=0)
        return model

    straight = numpy_values(trained(7, 2))
    again = numpy_values(trained(7, 2))
    other = numpy_values(trained(8, 2))
    for a, b in zip(straight, again):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(straight, other))
    # Saved after one epoch and resumed: the same as straight through.
    path = str(tmp_path / "half.keras")
    trained(7, 1).save(path)
    resumed = trained(7, 1, keras.saving.load_model(path))
    assert resumed.sandwich_rule.seed == 7
    for a, b in zip(straight, numpy_values(resumed)):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_sandwich_rule_needs_a_range_with_listed_ends():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.GlobalAveragePooling2D()(inputs)
    outputs = ks.SlimmableDense(10)(x)
    fixed = ks.SlimmableModel(inputs, outputs, widths=(0.5, 1.0))
    with pytest.raises(ValueError, match="width range"):
        compile_sgd(fixed, sandwich_rule=4)
    model = build(widths=(0.5, 1.0), calibrated=(0.5, 1.0))
    with pytest.raises(ValueError, match=r"list \[0\.25\]"):
        compile_sgd(model, sandwich_rule=4)
    for bad in (1, 2.5, "4"):
        with pytest.raises(ValueError, match="num_widths|sandwich_rule"):
            compile_sgd(build(), sandwich_rule=bad)


# Inplace distillation -------------------------------------------------------


def soft_cross_entropy(teacher_logits, student_logits):
    """-sum_k p_k log q_k, averaged over the batch (NumPy, float64)."""
    teacher = np.asarray(teacher_logits, "float64")
    student = np.asarray(student_logits, "float64")
    p = np.exp(teacher - teacher.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    shifted = student - student.max(-1, keepdims=True)
    log_q = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return float(np.mean(-(p * log_q).sum(-1)))


def hard_cross_entropy(logits, y):
    logits = np.asarray(logits, "float64")
    shifted = logits - logits.max(-1, keepdims=True)
    log_q = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return float(np.mean(-log_q[np.arange(len(y)), y]))


@pytest.mark.parametrize("sandwich", [False, True])
def test_narrower_widths_learn_from_the_widest(sandwich):
    model = build()
    rule = ks.SandwichRule(2, seed=0) if sandwich else None
    compile_sgd(model, sandwich_rule=rule, inplace_distillation=True)
    assert model.inplace_distillation
    x, y = images(), labels()
    # Training-mode logits before the step (batch statistics): what the
    # step's forward passes compute.
    wide = keras.ops.convert_to_numpy(model(x, width=1.0, training=True))
    narrow = keras.ops.convert_to_numpy(model(x, width=0.25, training=True))
    logs = model.train_on_batch(x, y, return_dict=True)
    np.testing.assert_allclose(
        logs["w1.0_loss"], hard_cross_entropy(wide, y), rtol=1e-5
    )
    np.testing.assert_allclose(
        logs["w0.25_loss"], soft_cross_entropy(wide, narrow), rtol=1e-5
    )
    assert abs(hard_cross_entropy(narrow, y) - logs["w0.25_loss"]) > 1e-3


def test_distillation_sends_no_gradient_to_the_widest():
    # With distillation, the step's update equals the widest's label
    # gradient plus the narrowest's gradient against fixed soft targets:
    # Algorithm 1 on a model whose narrowest width is trained on the
    # widest's (precomputed) probabilities as labels.
    x, y = images(), labels()
    distilled = build()
    compile_sgd(distilled, inplace_distillation=True)
    targets = keras.ops.convert_to_numpy(
        keras.ops.softmax(distilled(x, width=1.0, training=True))
    )
    distilled.train_on_batch(x, y)
    start = numpy_values(build())
    one_hot = np.eye(10, dtype="float32")[y]
    deltas = []
    for width, target in ((1.0, one_hot), (0.25, targets)):
        single = build(widths=(width,))  # the same initial weights
        single.compile(
            keras.optimizers.SGD(0.5),
            keras.losses.CategoricalCrossentropy(from_logits=True),
        )
        single.train_on_batch(x, target)
        deltas.append(
            [
                keras.ops.convert_to_numpy(v) - s
                for v, s in zip(single.variables, start)
            ]
        )
    trainable = [v.path for v in build().trainable_variables]
    for variable, initial, d_wide, d_narrow in zip(
        distilled.variables, start, *deltas
    ):
        if variable.path not in trainable:
            continue
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(variable),
            initial + d_wide + d_narrow,
            atol=1e-5,
        )


def test_distillation_needs_a_cross_entropy():
    with pytest.raises(ValueError, match="categorical cross-entropy"):
        build().compile("sgd", "mse", inplace_distillation=True)
    with pytest.raises(ValueError, match="True or False"):
        build().compile(
            "sgd", "sparse_categorical_crossentropy", inplace_distillation=1
        )


# Per-layer channel configurations -----------------------------------------


def test_a_channel_configuration_runs_each_layer_at_its_count():
    model = build()
    model.set_uncalibrated_batch_norm("batch_statistics")
    x = images(4)
    uniform = {"conv": 16, "bn": 16, "dw": 16, "bn2": 16}
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(model(x, width=uniform)),
        keras.ops.convert_to_numpy(model(x, width=0.5)),
        atol=1e-6,
    )
    # A configuration no width gives (24 channels: no rule's count).
    assert model(x, width={"conv": 24, "bn": 24, "dw": 24, "bn2": 24}).shape
    for bad, match in (
        ({"conv": 16}, r"missing: \['bn', 'bn2', 'dw'\]"),
        ({}, r"missing: \['bn', 'bn2', 'conv', 'dw'\]"),
        ({"conv": -8, "bn": -8, "dw": -8, "bn2": -8}, "1 to 32"),
        ({"conv": 16, "bn": 16, "dw": 16, "bn2": 16, "fc": 10}, "Unknown"),
        ({"conv": 40, "bn": 40, "dw": 40, "bn2": 40}, "1 to 32"),
        ({"conv": 16, "bn": 8, "dw": 16, "bn2": 16}, "expects 8 channels"),
    ):
        with pytest.raises(ValueError, match=match):
            model(x, width=bad)


@pytest.mark.parametrize("shared", [False, True])
def test_switchable_batch_norms_calibrate_too(shared):
    keras.utils.set_random_seed(2)
    inputs = keras.Input((8, 8, 3))
    x = ks.SlimmableConv2D((16, 32), 3, padding=1, use_bias=False, name="conv")(
        inputs
    )
    x = ks.SwitchableBatchNormalization(
        (16, 32), epsilon=1e-5, shared=shared, name="bn"
    )(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = ks.SlimmableDense(10)(x)
    model = ks.SlimmableModel(inputs, outputs, widths=(0.5, 1.0))
    x = images(24)
    if shared:
        values = numpy_values(model)
        with pytest.raises(ValueError, match="shared batch norm"):
            model.calibrate_batch_norm([0.5], x, verbose=0)
        for before, after in zip(values, numpy_values(model)):
            np.testing.assert_array_equal(before, after)
        return
    model.calibrate_batch_norm([0.5], x, batch_size=8, verbose=0)
    expected_mean, expected_variance = batch_statistics(model, x, 0.5, 8)
    batch_norm = model.get_layer("bn").batch_norms[0]
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(batch_norm.moving_mean),
        expected_mean,
        atol=1e-5,
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(batch_norm.moving_variance),
        expected_variance,
        rtol=1e-4,
    )


def test_profile_counts_a_channel_configuration():
    model = build()
    uniform = {"conv": 16, "bn": 16, "dw": 16, "bn2": 16}
    counted = ks.profile(model, widths=[0.5, uniform])
    key = tuple(sorted(uniform.items()))
    assert counted[key] == counted[0.5]
    # 8x8 output positions: conv 3*3*3*16, depthwise 3*3*16, pool 8*8*16
    # (an add per position), dense 16*10.
    expected = 64 * 27 * 16 + 64 * 9 * 16 + 64 * 16 + 16 * 10
    assert counted[0.5]["macs"] == expected
