"""Every registered zoo model, at every width, at a small input size.

Output shapes, config and `.keras` round trips, `materialize` equality and
the keras.applications conventions (the 32-pixel minimum input size, the
`input_tensor` and `classifier_activation` arguments), parametrised over
`keras_slimmable.zoo.list_models()` so a new builder is covered as soon as
it is registered. The models are built at the minimum size, 32 pixels.
"""

import inspect
import re
import sys

import keras
import numpy as np
import pytest

import keras_slimmable as ks
from keras_slimmable import zoo

SIZE = 32  # keras.applications' minimum input size
CLASSES = 7


@pytest.fixture(scope="module", params=zoo.list_models())
def model(request):
    keras.utils.set_random_seed(0)
    return zoo.create_model(
        request.param, input_shape=(SIZE, SIZE, 3), classes=CLASSES
    )


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.normal(size=(2, SIZE, SIZE, 3)).astype("float32")


def test_registry_lists_the_reference_models():
    names = zoo.list_models()
    for name in ("s_mobilenet_v1", "s_mobilenet_v2", "s_shufflenet"):
        assert name in names
    assert "s_resnet50" in names
    with pytest.raises(ValueError, match="s_mobilenet_v9"):
        zoo.create_model("s_mobilenet_v9")


def test_output_shape_at_every_width(model, images):
    assert isinstance(model, ks.SlimmableModel)
    for width in model.widths:
        assert model(images, width=width).shape == (2, CLASSES)


def test_config_round_trip(model, images):
    copy = ks.SlimmableModel.from_config(model.get_config())
    assert copy.get_config() == model.get_config()
    copy.set_weights(model.get_weights())
    for width in model.widths:
        np.testing.assert_array_equal(
            np.array(copy(images, width=width)),
            np.array(model(images, width=width)),
        )


def test_keras_file_round_trip(model, images, tmp_path):
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.widths == model.widths
    for width in model.widths:
        np.testing.assert_array_equal(
            np.array(loaded(images, width=width)),
            np.array(model(images, width=width)),
        )


def test_materialize_equals_every_width(model, images):
    for width in model.widths:
        narrow = model.materialize(width)
        assert not isinstance(narrow, ks.SlimmableModel)
        model.set_width(width)
        expected = model.predict(images, verbose=0)
        actual = narrow.predict(images, verbose=0)
        np.testing.assert_allclose(actual, expected, atol=1e-5)
        figures = ks.profile(model, input_shape=(SIZE, SIZE, 3))[width]
        bn_statistics = figures["bn_affine_params"]  # moving mean + var
        assert narrow.count_params() == (
            figures["conv_fc_params"]
            + figures["bn_affine_params"]
            + bn_statistics
        )


@pytest.mark.parametrize("name", zoo.list_models())
def test_builder_takes_the_keras_applications_arguments(name):
    parameters = inspect.signature(zoo.registry.get_builder(name)).parameters
    for argument in ("input_tensor", "classifier_activation"):
        assert argument in parameters
        assert parameters[argument].default is None


def test_the_fixture_models_are_built_at_the_minimum_size(model, images):
    # The module's models are 32 pixels: every other test here shows that
    # each registered model builds and runs at the minimum size.
    assert model.input_shape == (None, 32, 32, 3)
    assert images.shape[1:3] == (32, 32)
    outputs = keras.Model(model.input, model.output)(images, training=False)
    assert np.all(np.isfinite(np.asarray(outputs)))


@pytest.mark.parametrize("name", zoo.list_models())
@pytest.mark.parametrize("shape", [(31, 31, 3), (31, 32, 3), (32, 31, 3)])
def test_inputs_below_32_pixels_are_rejected_up_front(name, shape):
    # keras.applications' own message for the same shape.
    with pytest.raises(ValueError) as keras_error:
        keras.applications.ResNet50(weights=None, input_shape=shape)
    with pytest.raises(ValueError) as error:
        zoo.create_model(name, input_shape=shape)
    assert str(error.value) == str(keras_error.value)
    assert f"Received: input_shape={shape}" in str(error.value)


@pytest.mark.parametrize("name", zoo.list_models())
def test_an_input_tensor_below_32_pixels_is_rejected(name):
    tensor = keras.Input((16, 64, 3))
    message = "Input size must be at least 32x32; Received: input_tensor"
    with pytest.raises(ValueError, match=re.escape(message)) as error:
        zoo.create_model(name, input_tensor=tensor)
    assert "(None, 16, 64, 3)" in str(error.value)


@pytest.mark.parametrize(
    "builder",
    [
        ks.zoo.s_mobilenet_v1,
        ks.zoo.s_mobilenet_v2,
        ks.zoo.s_resnet,
        ks.zoo.s_shufflenet,
    ],
)
def test_builders_document_every_argument(builder):
    # Shared paragraphs come from zoo.common's MODEL_ARGUMENTS_DOC and
    # KERAS_APPLICATIONS_ARGUMENTS_DOC.
    doc = builder.__doc__
    assert "{model_arguments}" not in doc
    assert "{keras_applications_arguments}" not in doc
    documented = re.findall(r"^        (\w+): ", doc, re.MULTILINE)
    assert documented == list(inspect.signature(builder).parameters)


@pytest.mark.parametrize("name", zoo.list_models())
def test_an_architecture_is_declared_in_one_place(name):
    """The record of each model: its builder, key map, weights manifest and
    recipes come from the builder's own module."""
    from keras_slimmable import recipes

    architecture = zoo.get_architecture(name)
    assert architecture.name == name
    assert zoo.create_model is zoo.registry.create_model
    assert getattr(zoo, name) is architecture.builder
    module = sys.modules[architecture.builder.__module__]
    assert architecture.widths == module.DEFAULT_WIDTHS
    assert architecture.key_map is module.key_map
    assert architecture.weights in (None, module.MANIFEST)
    if architecture.weights is not None:
        assert architecture.weights["architecture"] == name
    for dataset, table in (
        ("imagenet", recipes.RECIPES),
        ("cifar10", recipes.CIFAR10_RECIPES),
    ):
        if dataset in architecture.recipes:
            assert table[name] is architecture.recipes[dataset]
            assert recipes.get_recipe(name, dataset) is table[name]
        else:
            assert name not in table


def test_the_registry_refuses_duplicates_and_unknown_names():
    existing = zoo.get_architecture("s_mobilenet_v1")
    with pytest.raises(ValueError, match="'s_mobilenet_v1' already exists"):
        zoo.registry.register(existing)
    with pytest.raises(ValueError, match="takes an `Architecture`"):
        zoo.registry.register(zoo.s_mobilenet_v1)
    with pytest.raises(ValueError, match="Unknown zoo model 'lenet'"):
        zoo.get_architecture("lenet")
    assert zoo.list_models().count("s_mobilenet_v1") == 1


def test_the_reference_weights_and_recipes_are_the_published_ones():
    # Numbers from the reference repository's model zoo table and its
    # apps/*_train_val.yml, written out here independently of the zoo.
    expected_errors = {
        "s_mobilenet_v1": {1.0: 28.5, 0.75: 30.5, 0.5: 35.2, 0.25: 46.9},
        "s_mobilenet_v2": {1.0: 29.5, 0.75: 31.1, 0.5: 35.6, 0.35: 40.3},
        "s_resnet50": {1.0: 24.0, 0.75: 25.1, 0.5: 27.9, 0.25: 35.0},
        "s_shufflenet": {2.0: 28.6, 1.0: 34.5, 0.5: 42.8},
        # AutoSlim, by switch label (4.0 / 3.0 the largest budget).
        "autoslim_mobilenet_v1": {3.0: 27.0, 2.0: 28.5, 1.0: 32.1},
        "autoslim_mobilenet_v2": {3.0: 24.6, 2.0: 25.8, 1.0: 27.0},
        "autoslim_mnasnet": {3.0: 24.6, 2.0: 25.4, 1.0: 26.8},
        "autoslim_resnet50": {4.0: 24.0, 3.0: 24.4, 2.0: 26.0, 1.0: 27.8},
        # The US-Nets' checkpoints are published without a per-width table
        # this repository could check (ARCHITECTURES.md gives none): their
        # manifests claim none.
        "us_mobilenet_v1": {},
        "us_mobilenet_v2": {},
    }
    with_weights = {
        name: zoo.get_architecture(name).weights["top1_error"]
        for name in zoo.list_models()
        if zoo.get_architecture(name).weights is not None
    }
    assert with_weights == expected_errors
