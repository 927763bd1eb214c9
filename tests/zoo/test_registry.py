"""Every registered zoo model, at every width, at a small input size.

Output shapes, config and `.keras` round trips, and `materialize` equality,
parametrised over `keras_slimmable.zoo.list_models()` so a new builder is
covered as soon as it is registered.
"""

import keras
import numpy as np
import pytest

import keras_slimmable as ks
from keras_slimmable import zoo

SIZE = 32
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
