"""Tests of the S-MobileNet v1 and v2 builders.

The golden logits come from the reference fixtures in the `shared` folder
beside the repository: checkpoints in the reference format with the logits
the reference PyTorch code computed from them.
"""

from pathlib import Path

import keras
import numpy as np
import pytest

from keras_slimmable import SlimmableConv2D
from keras_slimmable import SlimmableDepthwiseConv2D
from keras_slimmable import SlimmableModel
from keras_slimmable import SwitchableBatchNormalization
from keras_slimmable import zoo
from keras_slimmable.zoo import load_reference_checkpoint
from keras_slimmable.zoo import s_mobilenet_v1
from keras_slimmable.zoo import s_mobilenet_v2
from keras_slimmable.zoo.weights import WeightsNotFoundError


def _find_official_fixtures():
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "fixtures" / "official"
        if candidate.is_dir():
            return candidate
    return None


OFFICIAL = _find_official_fixtures()
needs_fixtures = pytest.mark.skipif(
    OFFICIAL is None,
    reason="the shared reference fixtures (shared/fixtures/official) are "
    "not beside the repository",
)
BUILDERS = {"s_mobilenet_v1": s_mobilenet_v1, "s_mobilenet_v2": s_mobilenet_v2}
DEFAULT_WIDTHS = {
    "s_mobilenet_v1": (0.25, 0.5, 0.75, 1.0),
    "s_mobilenet_v2": (0.35, 0.5, 0.75, 1.0),
}
# The last feature channels per default width (ARCHITECTURES.md).
FEATURES = {
    "s_mobilenet_v1": (256, 512, 768, 1024),
    "s_mobilenet_v2": (1280, 1280, 1280, 1280),
}


@needs_fixtures
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_reference_checkpoint_gives_the_reference_logits(name, record_property):
    model = BUILDERS[name]()
    load_reference_checkpoint(model, OFFICIAL / f"{name}.pt")
    reference = np.load(OFFICIAL / f"{name}_reference.npz")
    assert tuple(reference["widths"]) == model.widths
    differences = {}
    for width in model.widths:
        logits = np.array(model(reference["input_nhwc"], width=width))
        expected = reference[f"logits_{float(width)}"]
        differences[width] = float(np.abs(logits - expected).max())
    record_property("max_abs_logit_difference", differences)
    print(f"{name} max abs logit difference per width: {differences}")
    assert all(d <= 1e-4 for d in differences.values()), differences


@pytest.fixture(scope="module")
def small_models():
    """One 32-px, 10-class model per builder, shared (traces are cached)."""
    return {
        name: builder(input_shape=(32, 32, 3), classes=10)
        for name, builder in BUILDERS.items()
    }


def _output_shape(model, width, input_shape=(1, 32, 32, 3)):
    spec = model.compute_output_spec(
        keras.KerasTensor(input_shape), width=width
    )
    return tuple(spec.shape)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_output_shapes_at_every_width(name, small_models):
    model = small_models[name]
    assert model.widths == DEFAULT_WIDTHS[name]
    x = np.zeros((2, 32, 32, 3), "float32")
    for width in model.widths:
        assert tuple(model(x, width=width).shape) == (2, 10)

    narrowest, widest = 0, len(model.widths) - 1
    for pooling in (None, "avg", "max"):
        headless = BUILDERS[name](
            input_shape=(64, 64, 3), include_top=False, pooling=pooling
        )
        assert "predictions" not in [layer.name for layer in headless.layers]
        spatial = (2, 2) if pooling is None else ()
        for index in (narrowest, widest):
            expected = (1,) + spatial + (FEATURES[name][index],)
            width = headless.widths[index]
            assert _output_shape(headless, width, (1, 64, 64, 3)) == expected
            if pooling is None and index == narrowest:
                features = headless(np.zeros((1, 64, 64, 3)), width=width)
                assert tuple(features.shape) == expected


def test_any_ascending_width_list():
    widths = (0.25, 0.35, 0.5, 0.75, 1.0)
    v1 = s_mobilenet_v1(widths=widths, input_shape=(32, 32, 3), classes=3)
    assert v1.get_layer("stem_conv").filters == (8, 16, 16, 24, 32)
    assert v1.get_layer("block13_pointwise").filters == (
        256,
        360,
        512,
        768,
        1024,
    )
    v2 = s_mobilenet_v2(widths=widths, input_shape=(32, 32, 3), classes=3)
    # t * (input channels) = 6 * make_divisible(16 * w), no more rounding.
    assert v2.get_layer("block2_expand").filters == (48, 48, 48, 96, 96)
    for width in widths:
        assert _output_shape(v1, width) == (1, 3)
        assert _output_shape(v2, width) == (1, 3)
    assert tuple(v1(np.ones((1, 32, 32, 3)), width=0.35).shape) == (1, 3)


def test_mobilenet_v2_structure(small_models):
    model = small_models["s_mobilenet_v2"]
    names = [layer.name for layer in model.layers]
    assert "block1_expand" not in names  # t == 1
    adds = sorted(n for n in names if n.endswith("_add"))
    # Stride 1 and the same channels: blocks 3, 5-6, 8-10, 12-13, 15-16.
    expected = [3, 5, 6, 8, 9, 10, 12, 13, 15, 16]
    assert adds == sorted(f"block{b}_add" for b in expected)
    assert type(model.get_layer("last_bn")) is keras.layers.BatchNormalization
    assert type(model.get_layer("predictions")) is keras.layers.Dense
    assert model.get_layer("last_conv").filters == 1280
    wide = s_mobilenet_v2(widths=(0.5, 1.4), input_shape=(32, 32, 3))
    assert wide.get_layer("last_conv").filters == 1792


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_batch_norm_settings_and_shared_baseline(name, small_models):
    model = BUILDERS[name](input_shape=(32, 32, 3), shared_batch_norm=True)
    switchable = [
        layer
        for layer in model.layers
        if isinstance(layer, SwitchableBatchNormalization)
    ]
    assert switchable and all(layer.shared for layer in switchable)
    for layer in switchable:
        assert layer.momentum == pytest.approx(0.9)
        assert layer.epsilon == pytest.approx(1e-5)
    x = np.ones((1, 32, 32, 3), "float32")
    assert tuple(model(x, width=model.widths[0]).shape) == (1, 1000)
    plain = small_models[name]
    assert not any(getattr(layer, "shared", False) for layer in plain.layers)
    convolutions = [
        layer
        for layer in plain.layers
        if isinstance(layer, (SlimmableConv2D, SlimmableDepthwiseConv2D))
    ]
    assert convolutions and not any(layer.use_bias for layer in convolutions)


def _perturb_batch_norms(model):
    """Moving statistics away from 0/1, so that the widths differ."""
    rng = np.random.default_rng(1)
    for variable in model.weights:
        if "moving" in variable.path or "gamma" in variable.path:
            variable.assign(rng.uniform(0.5, 1.5, variable.shape))


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_config_and_keras_file_round_trip(name, tmp_path, small_models):
    model = small_models[name]
    _perturb_batch_norms(model)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")

    clone = SlimmableModel.from_config(model.get_config())
    clone.set_weights(model.get_weights())
    assert clone.widths == model.widths
    assert [layer.name for layer in clone.layers] == [
        layer.name for layer in model.layers
    ]
    path = tmp_path / f"{name}.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, SlimmableModel)
    for width in (model.widths[0], model.widths[-1]):
        expected = np.array(model(x, width=width))
        np.testing.assert_allclose(clone(x, width=width), expected, atol=1e-6)
        np.testing.assert_allclose(loaded(x, width=width), expected, atol=1e-6)


def test_weights_h5_argument(tmp_path):
    model = s_mobilenet_v1(input_shape=(32, 32, 3), classes=5)
    _perturb_batch_norms(model)
    path = tmp_path / "mine.weights.h5"
    model.save_weights(path)
    again = s_mobilenet_v1(input_shape=(32, 32, 3), classes=5, weights=path)
    for a, b in zip(model.get_weights(), again.get_weights()):
        np.testing.assert_array_equal(a, b)


@needs_fixtures
def test_reference_checkpoint_as_weights_argument_headless():
    checkpoint = OFFICIAL / "s_mobilenet_v2.pt"
    full = s_mobilenet_v2(input_shape=(32, 32, 3), weights=str(checkpoint))
    headless = s_mobilenet_v2(
        input_shape=(32, 32, 3), weights=checkpoint, include_top=False
    )
    for layer in headless.layers:
        for a, b in zip(
            full.get_layer(layer.name).get_weights(), layer.get_weights()
        ):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "weights",
    [123, "", "imagenet21k", "no/such/file.pt", ["imagenet"]],
)
def test_wrong_weights_argument(weights):
    with pytest.raises(ValueError) as info:
        s_mobilenet_v1(input_shape=(32, 32, 3), weights=weights)
    message = str(info.value)
    assert repr(weights) in message
    assert "'imagenet'" in message and ".weights.h5" in message


def test_imagenet_argument_checks():
    with pytest.raises(ValueError, match="classes"):
        s_mobilenet_v1(weights="imagenet", classes=10)
    with pytest.raises(ValueError, match="widths"):
        s_mobilenet_v2(weights="imagenet", widths=(0.5, 1.0))
    with pytest.raises(ValueError, match="shared_batch_norm"):
        s_mobilenet_v1(weights="imagenet", shared_batch_norm=True)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_imagenet_without_cache_explains_how_to_convert(
    name, tmp_path, monkeypatch
):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    with pytest.raises(WeightsNotFoundError) as info:
        BUILDERS[name](weights="imagenet", input_shape=(32, 32, 3))
    message = str(info.value)
    assert isinstance(info.value, (FileNotFoundError, ValueError))
    assert "github.com/JiahuiYu/slimmable_networks" in message
    assert f"python -m keras_slimmable.convert --model {name}" in message
    assert str(tmp_path / "models" / "keras_slimmable") in message
    assert "CC BY-NC 4.0" in message


def test_registered():
    assert {"s_mobilenet_v1", "s_mobilenet_v2"} <= set(zoo.list_models())
    model = zoo.create_model(
        "s_mobilenet_v1", widths=(0.5, 1.0), input_shape=(32, 32, 3)
    )
    assert model.widths == (0.5, 1.0)
