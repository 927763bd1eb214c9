"""The builders' `input_tensor` and `classifier_activation`, as in
keras.applications.

One builder per architecture; the deeper S-ResNets share `s_resnet`'s code
and `test_registry.py` checks that every registered builder takes both
arguments. Models are 32 pixels and run eagerly inside `width_scope`
(tracing one function per width costs more than these checks), in training
mode where the outputs must depend on the images: at initialization the
moving variances (1) do not match the activations, and the MobileNets'
inference logits are below 1e-10 for any image.
"""

import re

import keras
import numpy as np
import pytest

import keras_slimmable as ks
from keras_slimmable import zoo

ARCHITECTURES = (
    "s_mobilenet_v1",
    "s_mobilenet_v2",
    "s_resnet50",
    "s_shufflenet",
)
SHAPE = (32, 32, 3)
CLASSES = 7
WIDTHS = (0.5, 1.0)  # two widths: half the build and run time


def images(n=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-2, 2, size=(n,) + SHAPE).astype("float32")


def outputs_per_width(model, x, training=False):
    """{width: output}, the graph run eagerly at each width."""
    graph = keras.Model(model.input, model.output)
    outputs = {}
    for index, width in enumerate(model.widths):
        with ks.width_scope(index):
            outputs[width] = np.asarray(graph(x, training=training))
    return outputs


def numpy_softmax(logits):
    logits = logits.astype("float64")
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def sharpen_classifier(model):
    """Scales the classifier so that the logits are far from uniform."""
    dense = model.get_layer("predictions")
    kernel, bias = dense.get_weights()
    bias = np.linspace(-1.0, 2.0, bias.shape[0])  # they sum to 3.5 for 7
    dense.set_weights([kernel * 30.0, bias])


class Models:
    """Each architecture's model with logits, built once for the module."""

    def __init__(self):
        self._models = {}

    def __getitem__(self, name):
        if name not in self._models:
            keras.utils.set_random_seed(0)
            model = zoo.create_model(
                name, widths=WIDTHS, input_shape=SHAPE, classes=CLASSES
            )
            sharpen_classifier(model)
            self._models[name] = model
        return self._models[name]


@pytest.fixture(scope="module")
def logits_models():
    return Models()


@pytest.mark.slow
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_softmax_gives_the_probabilities_of_the_logits(name, logits_models):
    logits_model = logits_models[name]
    probabilities_model = zoo.create_model(
        name,
        widths=WIDTHS,
        input_shape=SHAPE,
        classes=CLASSES,
        classifier_activation="softmax",
    )
    probabilities_model.set_weights(logits_model.get_weights())
    x = images(4)
    logits = outputs_per_width(logits_model, x, training=True)
    probabilities = outputs_per_width(probabilities_model, x, training=True)
    for width in logits_model.widths:
        # The default output is logits, not probabilities.
        assert np.abs(logits[width].sum(axis=-1) - 1).min() > 0.1
        assert logits[width].min() < 0
        assert np.abs(logits[width][0] - logits[width][1]).max() > 0.01
        np.testing.assert_allclose(
            probabilities[width].sum(axis=-1), 1.0, rtol=1e-5
        )
        np.testing.assert_allclose(
            probabilities[width], numpy_softmax(logits[width]), atol=1e-5
        )
        assert probabilities[width].max() > 2.0 / CLASSES  # not uniform


def test_the_activation_survives_config_and_materialize():
    keras.utils.set_random_seed(0)
    model = zoo.s_mobilenet_v1(
        widths=(0.5, 1.0),
        input_shape=SHAPE,
        classes=CLASSES,
        classifier_activation="softmax",
    )
    sharpen_classifier(model)
    copy = ks.SlimmableModel.from_config(model.get_config())
    assert copy.get_layer("predictions").activation is keras.activations.softmax
    narrow = model.materialize(0.5)
    x = images()
    expected = outputs_per_width(model, x)[0.5]
    np.testing.assert_allclose(np.asarray(narrow(x)), expected, atol=1e-5)
    np.testing.assert_allclose(expected.sum(axis=-1), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_activation_with_weights_follows_keras_applications(tmp_path):
    keras.utils.set_random_seed(0)
    model = zoo.s_mobilenet_v1(widths=(0.5, 1.0), input_shape=SHAPE, classes=5)
    sharpen_classifier(model)
    path = tmp_path / "trained.weights.h5"
    model.save_weights(path)
    arguments = dict(widths=(0.5, 1.0), input_shape=SHAPE, classes=5)
    # keras.applications allows only None and softmax with weights.
    with pytest.raises(ValueError) as keras_error:
        keras.applications.MobileNet(
            weights=str(path), input_shape=SHAPE, classifier_activation="relu"
        )
    assert "Only `None` and `softmax`" in str(keras_error.value)
    with pytest.raises(ValueError) as error:
        zoo.s_mobilenet_v1(
            weights=path, classifier_activation="relu", **arguments
        )
    message = str(error.value)
    assert "Only `None` and `softmax`" in message
    assert "classifier_activation='relu'" in message
    # Headless, the activation is unused and so allowed, as in Keras.
    zoo.s_mobilenet_v1(
        weights=path,
        classifier_activation="relu",
        include_top=False,
        **arguments,
    )
    probabilities = zoo.s_mobilenet_v1(
        weights=path, classifier_activation="softmax", **arguments
    )
    x = images()
    logits = outputs_per_width(model, x)
    for width, output in outputs_per_width(probabilities, x).items():
        np.testing.assert_allclose(
            output, numpy_softmax(logits[width]), atol=1e-5
        )


@pytest.mark.parametrize("activation", ["no_such_activation", 3])
def test_unknown_activation_is_named(activation):
    with pytest.raises(ValueError) as error:
        zoo.s_mobilenet_v1(input_shape=SHAPE, classifier_activation=activation)
    assert f"classifier_activation={activation!r}" in str(error.value)


@pytest.mark.slow
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_input_tensor_from_a_layer(name, logits_models):
    raw = keras.Input(SHAPE, name="raw_images")
    squashed = keras.layers.Activation("tanh", name="squash")(raw)
    model = zoo.create_model(
        name, widths=WIDTHS, input_tensor=squashed, classes=CLASSES
    )
    assert isinstance(model, ks.SlimmableModel)
    # The model's input is the source of `input_tensor`, as in Keras.
    assert model.inputs == keras.utils.get_source_inputs(squashed)
    assert model.input is raw
    assert model.input_shape == (None,) + SHAPE
    assert model.get_layer("squash") is not None
    # It is the builder's model applied to the squashed images.
    plain = logits_models[name]
    model.set_weights(plain.get_weights())
    x = images(4)
    tanh = np.asarray(keras.ops.tanh(x))  # the layer's own arithmetic
    expected = outputs_per_width(plain, tanh, training=True)
    unsquashed = outputs_per_width(plain, x, training=True)
    for width, output in outputs_per_width(model, x, training=True).items():
        np.testing.assert_allclose(output, expected[width], atol=1e-4)
        assert np.abs(output - unsquashed[width]).max() > 1e-3


def test_input_tensor_from_an_input_and_dynamic_sizes():
    inputs = keras.Input((None, None, 3), name="any_size")
    model = zoo.s_mobilenet_v2(
        widths=WIDTHS, input_tensor=inputs, include_top=False, pooling="avg"
    )
    assert model.input is inputs
    assert model.output_shape == (None, 1280)
    x = np.zeros((1, 40, 48, 3), "float32")
    assert outputs_per_width(model, x)[1.0].shape == (1, 1280)


@pytest.mark.slow
def test_input_tensor_with_weights_loads_only_the_builders_layers(tmp_path):
    keras.utils.set_random_seed(0)
    trained = zoo.s_mobilenet_v1(
        widths=WIDTHS, input_shape=SHAPE, classes=CLASSES
    )
    path = tmp_path / "trained.weights.h5"
    trained.save_weights(path)
    raw = keras.Input(SHAPE)
    adapter = keras.layers.Conv2D(3, 1, name="adapter")
    model = zoo.s_mobilenet_v1(
        widths=WIDTHS, input_tensor=adapter(raw), classes=CLASSES, weights=path
    )
    assert model.input is raw
    adapter_weights = [np.array(w) for w in adapter.get_weights()]
    loaded = [layer for layer in trained.layers if layer.weights]
    assert len(loaded) > 40
    for layer in loaded:
        for a, b in zip(
            layer.get_weights(), model.get_layer(layer.name).get_weights()
        ):
            np.testing.assert_array_equal(a, b)
    # The adapter keeps its own (random) weights.
    for a, b in zip(adapter_weights, adapter.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert np.abs(adapter_weights[0]).sum() > 0


def test_bad_input_tensors_are_named():
    with pytest.raises(ValueError, match="input_tensor") as error:
        zoo.s_mobilenet_v1(input_tensor=np.zeros((1,) + SHAPE, "float32"))
    assert "Keras tensor" in str(error.value)
    assert "ndarray" in str(error.value)
    with pytest.raises(ValueError) as error:
        zoo.s_resnet50(input_tensor=keras.Input((32, 32)))
    assert "Received: input_tensor.shape=(None, 32, 32)" in str(error.value)
    with pytest.raises(ValueError) as error:
        zoo.s_shufflenet(input_tensor=keras.Input((32, 32, 1)))
    assert "Received: input_tensor.shape=(None, 32, 32, 1)" in str(error.value)
    with pytest.raises(ValueError) as error:
        zoo.s_mobilenet_v2(
            input_tensor=keras.Input((64, 64, 3)), input_shape=SHAPE
        )
    message = str(error.value)
    assert re.search(r"input_shape=\(32, 32, 3\)", message), message
    assert "input_tensor.shape=(None, 64, 64, 3)" in message
