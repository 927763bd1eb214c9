"""`decode_predictions`, the shipped class names, and `preprocess_input`,
against `keras.applications.imagenet_utils`."""

import collections
import re

import keras
import numpy as np
import pytest
from keras.src.applications import imagenet_utils as keras_imagenet_utils

from keras_slimmable import zoo
from keras_slimmable.zoo.imagenet_classes import IMAGENET_CLASSES

# Entries of Keras's imagenet_class_index.json (class index: wnid, name),
# copied from that file: the first classes, the last, and every name
# that is not a plain word.
KERAS_CLASS_INDEX = {
    0: ("n01440764", "tench"),
    1: ("n01443537", "goldfish"),
    2: ("n01484850", "great_white_shark"),
    134: ("n02012849", "crane"),
    386: ("n02504458", "African_elephant"),
    444: ("n02835271", "bicycle-built-for-two"),
    477: ("n02966687", "carpenter's_kit"),
    485: ("n02988304", "CD_player"),
    517: ("n03126707", "crane"),
    605: ("n03584254", "iPod"),
    607: ("n03590841", "jack-o'-lantern"),
    638: ("n03710637", "maillot"),
    639: ("n03710721", "maillot"),
    707: ("n03902125", "pay-phone"),
    739: ("n03992509", "potter's_wheel"),
    765: ("n04099969", "rocking_chair"),
    831: ("n04344873", "studio_couch"),
    850: ("n04399382", "teddy"),
    986: ("n12057211", "yellow_lady's_slipper"),
    996: ("n13052670", "hen-of-the-woods"),
    999: ("n15075141", "toilet_tissue"),
}


def test_class_names_are_keras_imagenet_class_index():
    assert len(IMAGENET_CLASSES) == 1000
    for index, pair in KERAS_CLASS_INDEX.items():
        assert IMAGENET_CLASSES[index] == pair
    wnids = [wnid for wnid, _ in IMAGENET_CLASSES]
    # Class i of the reference checkpoints is the i-th sorted wnid.
    assert wnids == sorted(wnids)
    assert len(set(wnids)) == 1000
    assert all(re.fullmatch(r"n\d{8}", wnid) for wnid in wnids)
    names = collections.Counter(name for _, name in IMAGENET_CLASSES)
    # Keras's names repeat exactly twice: two cranes, two maillots.
    assert {n: c for n, c in names.items() if c > 1} == {
        "crane": 2,
        "maillot": 2,
    }
    assert all(name and " " not in name for name in names)


@pytest.fixture
def keras_with_our_class_index(monkeypatch):
    """Keras's decode_predictions reading our names instead of its download
    (it caches its index in this module global)."""
    index = {str(i): list(pair) for i, pair in enumerate(IMAGENET_CLASSES)}
    monkeypatch.setattr(keras_imagenet_utils, "CLASS_INDEX", index)
    return keras_imagenet_utils.decode_predictions


@pytest.mark.parametrize("top", [1, 5, 12])
def test_decode_predictions_matches_keras(keras_with_our_class_index, top):
    rng = np.random.default_rng(0)
    predictions = rng.random((3, 1000)).astype("float32")
    expected = keras_with_our_class_index(predictions, top=top)
    decoded = zoo.decode_predictions(predictions, top=top)
    assert decoded == expected
    assert [type(v) for v in decoded[0][0]] == [type(v) for v in expected[0][0]]
    for sample, scores in zip(decoded, predictions):
        assert len(sample) == top
        assert [s for _, _, s in sample] == sorted(scores)[::-1][:top]
    # A tensor (the output of a model) decodes the same.
    tensor = keras.ops.convert_to_tensor(predictions)
    assert zoo.decode_predictions(tensor, top=top) == expected


def test_decode_predictions_names_the_classes():
    predictions = np.zeros((2, 1000), "float32")
    predictions[0, 386] = 0.9
    predictions[0, 0] = 0.05
    predictions[1, 999] = 1.0
    decoded = zoo.decode_predictions(predictions, top=2)
    assert decoded[0] == [
        ("n02504458", "African_elephant", np.float32(0.9)),
        ("n01440764", "tench", np.float32(0.05)),
    ]
    assert decoded[1][0] == ("n15075141", "toilet_tissue", 1.0)
    assert zoo.decode_predictions(predictions)[0][0][1] == "African_elephant"
    assert len(zoo.decode_predictions(predictions)[0]) == 5


@pytest.mark.parametrize("shape", [(1000,), (2, 999), (2, 1000, 1), (1, 10)])
def test_decode_predictions_shape_errors_match_keras(shape):
    predictions = np.zeros(shape, "float32")
    # Keras checks the shape before it would download its index.
    with pytest.raises(ValueError) as keras_error:
        keras_imagenet_utils.decode_predictions(predictions)
    with pytest.raises(ValueError) as error:
        zoo.decode_predictions(predictions)
    assert str(error.value) == str(keras_error.value)
    assert str(shape) in str(error.value)


@pytest.mark.parametrize("top", [0, -1, 2.5, "5", True])
def test_decode_predictions_bad_top(top):
    with pytest.raises(ValueError) as error:
        zoo.decode_predictions(np.zeros((1, 1000)), top=top)
    assert f"top={top!r}" in str(error.value)


def _keras_reference(x, data_format):
    """Keras's mode="torch" result, given what Keras itself accepts."""
    x = np.array(x)
    if not np.issubdtype(x.dtype, np.floating):
        # Keras's NumPy path casts integers to floatx; its tensor path
        # cannot divide an integer tensor by 255.0.
        x = x.astype(keras.backend.floatx())
    return keras_imagenet_utils.preprocess_input(
        x.copy(), data_format=data_format, mode="torch"
    )


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("container", ["numpy", "tensor"])
@pytest.mark.parametrize("dtype", ["float32", "uint8", "float64"])
@pytest.mark.parametrize("batched", [True, False])
def test_preprocess_input_is_keras_torch_mode(
    data_format, container, dtype, batched
):
    rng = np.random.default_rng(0)
    shape = (4, 5, 3) if data_format == "channels_last" else (3, 4, 5)
    if batched:
        shape = (2,) + shape
    images = rng.integers(0, 256, size=shape).astype(dtype)
    original = images.copy()
    x = images if container == "numpy" else keras.ops.convert_to_tensor(images)
    expected = _keras_reference(images, data_format)
    # Keras's own tensor path, where it accepts the input.
    if container == "tensor" and dtype != "uint8":
        expected_tensor = keras_imagenet_utils.preprocess_input(
            keras.ops.convert_to_tensor(images),
            data_format=data_format,
            mode="torch",
        )
        expected = keras.ops.convert_to_numpy(expected_tensor)
    result = zoo.preprocess_input(x, data_format=data_format)
    if container == "numpy":
        assert isinstance(result, np.ndarray)
    else:
        assert keras.ops.is_tensor(result)
    result = keras.ops.convert_to_numpy(result)
    assert result.shape == shape
    assert result.dtype == expected.dtype
    np.testing.assert_array_equal(result, expected)
    # Unlike Keras's, the caller's array is never overwritten.
    np.testing.assert_array_equal(images, original)


def test_preprocess_input_default_data_format_and_errors():
    images = np.full((1, 2, 2, 3), 255.0, "float32")
    result = zoo.preprocess_input(images)
    np.testing.assert_allclose(
        result[0, 0, 0],
        (1.0 - np.array([0.485, 0.456, 0.406])) / [0.229, 0.224, 0.225],
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match="data_format=channels_middle"):
        zoo.preprocess_input(images, data_format="channels_middle")
