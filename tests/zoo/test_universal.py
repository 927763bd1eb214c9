"""The universally slimmable zoo models: US-MobileNet v1 and v2.

The golden figures come from outside the code: `counts.json` (the
reference profiler's MACs and parameters per width, including a width no
checkpoint lists), the reference fixture `us_mobilenet_v1.pt` with the
logits the reference computed at its 31 calibrated widths, and
`us_mobilenet_v1_calibration.npz` (the reference's intended post-training
calibration, at two widths the checkpoint has no statistics for).
"""

from pathlib import Path

import keras
import numpy as np
import pytest

from keras_slimmable import ScaledChannels
from keras_slimmable import profile
from keras_slimmable import zoo
from keras_slimmable.convert.reference import CheckpointMismatchError
from keras_slimmable.zoo import load_reference_checkpoint


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
NAMES = ("us_mobilenet_v1", "us_mobilenet_v2")


@pytest.fixture(scope="module")
def reference_model():
    if OFFICIAL is None:
        pytest.skip("the shared reference fixtures are not beside the checkout")
    return zoo.us_mobilenet_v1(weights=OFFICIAL / "us_mobilenet_v1.pt")


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_profile_equals_the_reference_counts(name, reference_counts):
    model = zoo.create_model(name)
    expected = reference_counts[name]
    counted = profile(model, widths=[float(w) for w in expected])
    for width, counts in expected.items():
        assert counted[float(width)] == counts, width


def test_width_rule_is_computed_in_double_precision():
    # ARCHITECTURES.md: at 0.525, v2's 960-channel expanded layers get 528
    # channels in double precision (480 in float32).
    model = zoo.us_mobilenet_v2(input_shape=(32, 32, 3))
    rule = model.get_layer("block15_expand").filters
    assert rule == ScaledChannels(960, ratio=6)
    assert rule(0.525) == 528
    assert model.width_range == (0.35, 1.0)
    assert model.widths == (0.35, 1.0)
    assert model.calibrated_widths == (0.35, 1.0)


@needs_fixtures
@pytest.mark.slow
def test_reference_checkpoint_gives_the_reference_logits(reference_model):
    reference = np.load(OFFICIAL / "us_mobilenet_v1_reference.npz")
    widths = [float(w) for w in reference["widths"]]
    assert len(widths) == 31
    assert reference_model.calibrated_widths == tuple(widths)
    for width in widths:
        logits = keras.ops.convert_to_numpy(
            reference_model(reference["input_nhwc"], width=width)
        )
        np.testing.assert_allclose(
            logits, reference[f"logits_{width}"], atol=1e-4, err_msg=width
        )


@needs_fixtures
@pytest.mark.slow
def test_calibration_gives_the_reference_statistics_and_logits():
    model = zoo.us_mobilenet_v1(weights=OFFICIAL / "us_mobilenet_v1.pt")
    data = np.load(OFFICIAL / "us_mobilenet_v1_calibration.npz")
    widths = [float(w) for w in data["widths"]]
    assert 0.31415926 in widths and 0.6180339 in widths
    with pytest.raises(ValueError, match="calibrate_batch_norm"):
        model(data["input_nhwc"], width=0.31415926)
    model.calibrate_batch_norm(widths, list(data["calib_input_nhwc"]))
    layers = {
        "module.features.0.1": "stem_bn",
        "module.features.13.body.4": "block13_pointwise_bn",
    }
    keys = [str(k) for k in data["bn_keys"]]
    for j, key in enumerate(keys):
        layer = model.get_layer(layers[key])
        for width in widths:
            mean, variance = layer.statistics[layer._slot(width)]
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(mean),
                data[f"bn{j}_running_mean_{width}"],
                atol=1e-4,
                rtol=1e-4,
            )
            np.testing.assert_allclose(
                keras.ops.convert_to_numpy(variance),
                data[f"bn{j}_running_var_{width}"],
                rtol=1e-4,
            )
    for width in widths:
        logits = keras.ops.convert_to_numpy(
            model(data["input_nhwc"], width=width)
        )
        np.testing.assert_allclose(
            logits, data[f"logits_{width}"], atol=1e-4, err_msg=width
        )


@needs_fixtures
@pytest.mark.parametrize(
    "checkpoint, builder",
    [
        ("us_mobilenet_v1.pt", "s_mobilenet_v1"),
        ("s_mobilenet_v1.pt", "us_mobilenet_v1"),
    ],
)
def test_a_checkpoint_of_the_other_kind_changes_nothing(checkpoint, builder):
    # A US checkpoint into the fixed-width model, and the reverse.
    kwargs = {"calibrated_widths": (0.25, 1.0)} if builder[0] == "u" else {}
    model = zoo.create_model(builder, input_shape=(32, 32, 3), **kwargs)
    before = [np.array(w) for w in model.get_weights()]
    with pytest.raises(CheckpointMismatchError, match="Nothing was loaded"):
        load_reference_checkpoint(model, OFFICIAL / checkpoint)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_saved_with_its_calibrated_widths(tmp_path):
    model = zoo.us_mobilenet_v1(
        input_shape=(32, 32, 3), classes=10, calibrated_widths=(0.25, 1.0)
    )
    images = np.random.default_rng(0).normal(size=(8, 32, 32, 3))
    images = images.astype("float32")
    model.calibrate_batch_norm([0.4], images, verbose=0)
    path = str(tmp_path / "us.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert loaded.calibrated_widths == (0.25, 0.4, 1.0)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loaded(images, width=0.4)),
        keras.ops.convert_to_numpy(model(images, width=0.4)),
        atol=1e-5,
    )


def test_builder_arguments():
    with pytest.raises(ValueError, match="shared_batch_norm=True"):
        zoo.us_mobilenet_v1(shared_batch_norm=True)
    with pytest.raises(ValueError, match="width_range"):
        zoo.us_mobilenet_v1(widths=(0.2, 1.0))
    with pytest.raises(ValueError, match="calibrated_widths"):
        zoo.us_mobilenet_v1(calibrated_widths=(0.5, 0.5))
    assert "us_mobilenet_v1" in zoo.list_models()
    assert "us_mobilenet_v2" in zoo.list_models()


def test_a_calibrated_width_is_exported(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    from keras_slimmable import export

    model = zoo.us_mobilenet_v1(input_shape=(32, 32, 3), classes=10)
    rng = np.random.default_rng(1)
    images = rng.normal(size=(16, 32, 32, 3)).astype("float32")
    model.calibrate_batch_norm([0.4], images, verbose=0)
    expected = keras.ops.convert_to_numpy(model(images[:1], width=0.4))
    plain = model.materialize(0.4)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(plain(images[:1])), expected, atol=1e-5
    )
    # An uncalibrated width: a clear error, and no file.
    refused = tmp_path / "refused.tflite"
    with pytest.raises(ValueError, match=r"calibrate_batch_norm\(\[0\.6\]"):
        export.export_tflite(model, refused, widths=[0.6, 1.0])
    assert not refused.exists()
    path = tmp_path / "us.tflite"
    export.export_tflite(model, path, widths=[0.25, 0.4, 1.0])
    interpreter = Interpreter(model_path=str(path))
    runner = interpreter.get_signature_runner(export.signature_name(0.4))
    (logits,) = runner(images=images[:1]).values()
    np.testing.assert_allclose(logits, expected, atol=1e-4)


@needs_fixtures
@pytest.mark.slow
def test_converted_checkpoint_loads_as_imagenet(tmp_path, monkeypatch):
    from keras_slimmable.zoo import convert

    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    convert.convert("us_mobilenet_v1", str(OFFICIAL / "us_mobilenet_v1.pt"))
    model = zoo.us_mobilenet_v1(weights="imagenet")
    assert len(model.calibrated_widths) == 31
    reference = np.load(OFFICIAL / "us_mobilenet_v1_reference.npz")
    for width in (0.275, 0.8):
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(
                model(reference["input_nhwc"], width=width)
            ),
            reference[f"logits_{width}"],
            atol=1e-4,
        )


@pytest.mark.parametrize("name", NAMES)
def test_model_cards_quote_the_reference_figures(name, reference_counts):
    root = Path(__file__).resolve().parents[2] / "zoo"
    assert f"({name}/README.md)" in (root / "README.md").read_text()
    card = (root / name / "README.md").read_text()
    for counts in reference_counts[name].values():
        assert f"{counts['macs']:,}" in card
        assert f"{counts['conv_fc_params']:,}" in card
        assert f"{counts['bn_affine_params']:,}" in card
    assert "CC BY-NC 4.0" in card
