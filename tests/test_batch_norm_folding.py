"""Tests for batch norm folding: `materialize(..., fold_batch_norm=True)`."""

import keras
import numpy as np
import pytest

from keras_slimmable import SlimmableConv2D
from keras_slimmable import SlimmableDense
from keras_slimmable import SlimmableDepthwiseConv2D
from keras_slimmable import SlimmableModel
from keras_slimmable import SwitchableBatchNormalization
from keras_slimmable.materialize import fold_batch_norms
from keras_slimmable.materialize import materialize

TOLERANCE = 1e-5
ZOO_MODELS = ("s_mobilenet_v1", "s_mobilenet_v2", "s_shufflenet", "s_resnet50")


def randomize(model, seed=0):
    """Random weights, and batch norm statistics measured on random images
    at every width (non-zero means, variances far from 1, per width), so
    that activations keep a scale near 1 and a wrong fold shows.

    0.1 is added to every measured variance: on 32x32 images the last
    layers see 1x1 maps, and four images give channels a variance near
    1e-8, whose batch norm multiplies by about 300 and would turn float32
    rounding into differences that say nothing about the fold.
    """
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape = tuple(variable.shape)
        if "gamma" in variable.path:
            value = rng.uniform(0.5, 1.5, shape)
        elif len(shape) > 1:
            fan_in = np.prod(shape[:-1])
            if "depthwise" in variable.path:
                fan_in = np.prod(shape[:2])
            value = rng.normal(0.0, np.sqrt(1.0 / fan_in), shape)
        else:
            value = rng.normal(0.0, 0.1, shape)
        variable.assign(value.astype(variable.dtype))
    batch_norms = []
    for layer in model.layers:
        if isinstance(layer, SwitchableBatchNormalization):
            batch_norms.extend(layer.batch_norms)
        elif isinstance(layer, keras.layers.BatchNormalization):
            batch_norms.append(layer)
    images = rng.normal(size=(4,) + tuple(model.input_shape[1:]))
    for batch_norm in batch_norms:
        batch_norm.momentum = 0.0  # moving statistics := batch statistics
    for width in model.widths:
        model(images.astype("float32"), width=width, training=True)
    for batch_norm in batch_norms:
        batch_norm.momentum = 0.99
        batch_norm.moving_variance.assign(batch_norm.moving_variance + 0.1)


def predict(model, images):
    return model.predict(images, batch_size=len(images), verbose=0)


def batch_norm_names(model):
    return sorted(
        layer.name
        for layer in model.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    )


def cases_model():
    """Batch norms that fold and batch norms that must not."""
    inputs = keras.Input((10, 10, 3))
    x = SlimmableConv2D((4, 8), 3, padding=1, use_bias=False, name="conv")(
        inputs
    )
    x = SwitchableBatchNormalization((4, 8), name="conv_bn")(x)
    x = keras.layers.ReLU()(x)
    x = SlimmableDepthwiseConv2D(3, strides=2, padding=1, name="dw")(x)
    x = SwitchableBatchNormalization((4, 8), name="dw_bn")(x)
    # An activation between: not folded.
    y = SlimmableConv2D((4, 8), 1, activation="relu", name="act")(x)
    y = SwitchableBatchNormalization((4, 8), name="act_bn")(y)
    # A convolution whose output has a second consumer: not folded.
    z = SlimmableConv2D((4, 8), 1, name="shared_out")(x)
    w = SwitchableBatchNormalization((4, 8), name="shared_out_bn")(z)
    x = keras.layers.Add()([y, w, z])
    # After a concatenation: not folded.
    x = keras.layers.Concatenate()([x, x])
    x = SwitchableBatchNormalization((8, 16), name="concat_bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = SlimmableDense((6, 12), name="fc")(x)
    x = SwitchableBatchNormalization((6, 12), name="fc_bn")(x)
    outputs = SlimmableDense(5, name="head")(x)
    return SlimmableModel(inputs, outputs, widths=(0.5, 1.0))


def test_folds_what_follows_a_layer_alone_and_keeps_the_rest():
    model = cases_model()
    randomize(model)
    images = np.random.default_rng(1).normal(size=(3, 10, 10, 3))
    images = images.astype("float32")
    for width in model.widths:
        plain = materialize(model, width)
        folded = materialize(model, width, fold_batch_norm=True)
        assert batch_norm_names(plain) == [
            "act_bn",
            "concat_bn",
            "conv_bn",
            "dw_bn",
            "fc_bn",
            "shared_out_bn",
        ]
        assert batch_norm_names(folded) == [
            "act_bn",
            "concat_bn",
            "shared_out_bn",
        ]
        by_name = {layer.name: layer for layer in folded.layers}
        # The convolution without a bias gained one; padding stays.
        assert by_name["conv"].use_bias and not plain.get_layer("conv").use_bias
        assert isinstance(by_name["dw_pad"], keras.layers.ZeroPadding2D)
        assert folded.name == plain.name
        difference = np.abs(predict(plain, images) - predict(folded, images))
        assert difference.max() <= TOLERANCE, (width, difference.max())
        # The folded batch norms' statistics are gone: 4 per channel each,
        # less the bias the convolution without one gained.
        channels = {0.5: 4, 1.0: 8}[width]
        features = {0.5: 6, 1.0: 12}[width]
        removed = 4 * (2 * channels + features) - channels
        assert plain.count_params() - folded.count_params() == removed


def test_the_folded_values_by_hand():
    """One Dense and its batch norm, folded values checked independently."""
    inputs = keras.Input((3,))
    x = keras.layers.Dense(2, name="fc")(inputs)
    outputs = keras.layers.BatchNormalization(epsilon=0.5, name="bn")(x)
    model = keras.Model(inputs, outputs)
    model.get_layer("fc").set_weights(
        [np.ones((3, 2), "float32"), np.array([1.0, 2.0], "float32")]
    )
    model.get_layer("bn").set_weights(
        [
            np.array([2.0, 3.0], "float32"),  # gamma
            np.array([0.5, -1.0], "float32"),  # beta
            np.array([1.0, 4.0], "float32"),  # moving mean
            np.array([3.5, 1.5], "float32"),  # moving variance
        ]
    )
    folded = fold_batch_norms(model)
    kernel, bias = folded.get_layer("fc").get_weights()
    # scale = gamma / sqrt(variance + 0.5) = (1.0, 2.1213...)
    np.testing.assert_allclose(kernel, [[1.0, 3 / np.sqrt(2)]] * 3, rtol=1e-6)
    np.testing.assert_allclose(
        bias, [(1 - 1) * 1.0 + 0.5, (2 - 4) * 3 / np.sqrt(2) - 1.0], rtol=1e-6
    )
    assert batch_norm_names(folded) == []
    assert fold_batch_norms(folded) is folded  # nothing left to fold


def test_method_and_the_unfolded_default():
    model = cases_model()
    folded = model.materialize(0.5, fold_batch_norm=True)
    assert "conv_bn" not in batch_norm_names(folded)
    assert "conv_bn" in batch_norm_names(model.materialize(0.5))


def test_folded_model_saves_and_reloads(tmp_path):
    model = cases_model()
    randomize(model)
    folded = model.materialize(1.0, fold_batch_norm=True)
    folded.save(tmp_path / "folded.keras")
    reloaded = keras.saving.load_model(tmp_path / "folded.keras")
    images = np.ones((1, 10, 10, 3), "float32")
    np.testing.assert_allclose(
        predict(reloaded, images), predict(folded, images), atol=1e-6
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ZOO_MODELS)
def test_zoo_models(name):
    """Every batch norm of the zoo models folds except those after a
    concatenation (ShuffleNet's grouped convolutions), with the same
    outputs at the widest width (the deepest sums; one width keeps the
    test short)."""
    from keras_slimmable import zoo

    model = zoo.create_model(name, input_shape=(32, 32, 3), classes=10)
    randomize(model)
    images = np.random.default_rng(2).normal(size=(2, 32, 32, 3))
    images = images.astype("float32")
    for width in (max(model.widths),):
        plain = materialize(model, width)
        folded = materialize(model, width, fold_batch_norm=True)
        expected = predict(plain, images)
        difference = np.abs(expected - predict(folded, images)).max()
        scale = max(1.0, float(np.abs(expected).max()))
        print(
            f"\n{name} at {width}: {len(batch_norm_names(plain))} batch "
            f"norms, {len(batch_norm_names(folded))} left after folding, "
            f"max abs difference {difference:.2e}, max abs output {scale:.2f}"
        )
        # Relative to the outputs' scale, and twice the 1e-5 of the small
        # model: float32 rounds the folded and unfolded products
        # differently, and 50 layers with residual sums add that up
        # (measured: 5.0e-5 on outputs up to 3.1 for S-ResNet-50 at 1.0,
        # 1.3e-6 to 3.9e-6 for the others).
        assert difference <= 2 * TOLERANCE * scale, (width, difference)
        # Every batch norm left follows something other than a lone
        # convolution or dense layer.
        for layer in folded.layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                source = layer.input._keras_history.operation
                assert not isinstance(
                    source,
                    (
                        keras.layers.Conv2D,
                        keras.layers.DepthwiseConv2D,
                        keras.layers.Dense,
                    ),
                ), (layer.name, source.name)
        if name != "s_shufflenet":
            assert batch_norm_names(folded) == []


def test_served_models_folded(tmp_path):
    """`export_for_serving(..., fold_batch_norm=True)`: each width's
    SavedModel holds no batch norm statistics and answers as the model."""
    import tensorflow as tf

    from keras_slimmable import export

    model = cases_model()
    randomize(model)
    written = export.export_for_serving(
        model, tmp_path, "cases", fold_batch_norm=True
    )
    images = np.random.default_rng(3).normal(size=(2, 10, 10, 3))
    images = images.astype("float32")
    for width, folder in written.items():
        variables = tf.train.list_variables(
            str(folder / "variables" / "variables")
        )
        stored = sum(
            int(np.prod(shape))
            for name, shape in variables
            if name.endswith("VARIABLE_VALUE")
        )
        folded = model.materialize(width, fold_batch_norm=True)
        assert stored == folded.count_params()
        assert stored < model.materialize(width).count_params()
        serve = tf.saved_model.load(str(folder)).signatures["serving_default"]
        (output,) = serve(images=tf.constant(images)).values()
        expected = keras.ops.convert_to_numpy(
            model(images, width=width, training=False)
        )
        np.testing.assert_allclose(output.numpy(), expected, atol=TOLERANCE)


def as_float64(model):
    """The same plain functional model computing in float64."""

    def to_float64(value):
        if isinstance(value, dict):
            if value.get("class_name") == "DTypePolicy":
                return {**value, "config": {"name": "float64"}}
            return {k: to_float64(v) for k, v in value.items()}
        if isinstance(value, list):
            return [to_float64(v) for v in value]
        return "float64" if value == "float32" else value

    double = model.__class__.from_config(to_float64(model.get_config()))
    double.set_weights([w.astype("float64") for w in model.get_weights()])
    return double


@pytest.mark.slow
def test_resnet50_fold_difference_is_float32_rounding():
    """S-ResNet-50's folded and unfolded outputs differ by more than 1e-5
    (about 5e-5 on outputs up to 3): float32 rounding, not the fold. In
    float64 the fold is exact to ~1e-12; rounding the folded weights to
    float32 moves the outputs by ~1e-6 of their scale; float32 arithmetic
    adds the rest, and leaves the folded model as close to the float64
    result as the unfolded one."""
    from keras_slimmable import zoo

    model = zoo.create_model("s_resnet50", input_shape=(32, 32, 3), classes=10)
    randomize(model)
    images = np.random.default_rng(2).normal(size=(2, 32, 32, 3))
    plain = materialize(model, 1.0)
    folded = materialize(model, 1.0, fold_batch_norm=True)
    plain64 = as_float64(plain)
    exact = predict(plain64, images)
    assert exact.dtype == np.float64
    scale = np.abs(exact).max()
    fold64 = np.abs(predict(fold_batch_norms(plain64), images) - exact)
    weights32 = np.abs(predict(as_float64(folded), images) - exact)
    plain_error = np.abs(predict(plain, images.astype("float32")) - exact)
    folded_error = np.abs(predict(folded, images.astype("float32")) - exact)
    between = np.abs(
        predict(plain, images.astype("float32"))
        - predict(folded, images.astype("float32"))
    )
    print(
        f"\nS-ResNet-50 at 1.0, outputs up to {scale:.2f}: folded in float64 "
        f"{fold64.max():.1e}; folded float32 weights in float64 arithmetic "
        f"{weights32.max():.1e}; float32 against float64: unfolded "
        f"{plain_error.max():.1e}, folded {folded_error.max():.1e}; folded "
        f"against unfolded in float32 {between.max():.1e}"
    )
    # The fold itself is exact algebra.
    assert fold64.max() <= 1e-10 * scale
    # Rounding the folded weights to float32 (relative 6e-8 each).
    assert weights32.max() <= 1e-5 * scale
    # float32 arithmetic, of the same order in both models.
    assert plain_error.max() <= 1e-4 * scale
    assert folded_error.max() <= 3 * plain_error.max() + 1e-6 * scale
