"""S-ShuffleNet: the reference fixture number for number, shapes, saving.

Everything but the fixture test runs at 32x32, with the graph run eagerly
inside `width_scope` (tracing a compiled function per width, as
`model(x, width=w)` does, costs far more than the forward pass at this
size). The fixture test goes through `model(x, width=w)`.
"""

from pathlib import Path

import keras
import numpy as np
import pytest

import keras_slimmable as ks
from keras_slimmable import zoo

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
FIXTURES = SHARED / "fixtures" / "official"
WIDTHS = (0.5, 1.0, 2.0)
SMALL = (32, 32, 3)


def images(n=2, shape=SMALL, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n,) + shape).astype("float32")


def outputs_per_width(model, x):
    """{width: output}, the graph run eagerly at each width."""
    graph = keras.Model(model.input, model.output)
    outputs = {}
    for index, width in enumerate(model.widths):
        with ks.width_scope(index):
            outputs[width] = np.asarray(graph(x, training=False))
    return outputs


@pytest.fixture(scope="module")
def small_model():
    keras.utils.set_random_seed(0)
    return zoo.s_shufflenet(input_shape=SMALL, classes=10)


def test_reference_fixture_logits_at_every_width():
    checkpoint = FIXTURES / "s_shufflenet.pt"
    reference = FIXTURES / "s_shufflenet_reference.npz"
    if not checkpoint.exists() or not reference.exists():
        pytest.skip(f"reference fixtures not found in {FIXTURES}")
    from keras_slimmable.zoo import load_reference_checkpoint

    expected = np.load(reference)
    model = zoo.s_shufflenet()
    load_reference_checkpoint(model, checkpoint)
    assert model.widths == tuple(float(w) for w in expected["widths"])
    differences = {}
    for width in model.widths:
        logits = np.asarray(model(expected["input_nhwc"], width=width))
        differences[width] = float(
            np.max(np.abs(logits - expected[f"logits_{width}"]))
        )
    print("s_shufflenet max abs logit difference per width:", differences)
    assert max(differences.values()) <= 1e-4, differences


def test_output_shapes_at_every_width(small_model):
    outputs = outputs_per_width(small_model, images())
    assert {w: o.shape for w, o in outputs.items()} == {
        w: (2, 10) for w in WIDTHS
    }


@pytest.mark.parametrize("pooling", [None, "avg", "max"])
def test_headless_output_shapes(pooling):
    model = zoo.s_shufflenet(
        input_shape=SMALL, include_top=False, pooling=pooling
    )
    assert "predictions" not in [layer.name for layer in model.layers]
    for width, output in outputs_per_width(model, images()).items():
        features = int(960 * width)
        expected = (2, 1, 1, features) if pooling is None else (2, features)
        assert output.shape == expected


def test_stem_max_pool_has_no_padding():
    """3x3/2 conv with padding 1, then an unpadded 3x3/2 max pool."""
    model = zoo.s_shufflenet(input_shape=(64, 64, 3), include_top=False)
    assert model.get_layer("stem_conv").output.shape == (None, 32, 32, 48)
    assert model.get_layer("stem_pool").output.shape == (None, 15, 15, 48)
    # The stride-2 units pad by 1 (conv and average pool alike): 15 -> 8.
    assert model.get_layer("stage2_unit1_out").output.shape == (
        None,
        8,
        8,
        480,
    )


def test_channel_counts(small_model):
    def layer(name):
        return small_model.get_layer(name)

    assert layer("stem_conv").filters == (12, 24, 48)
    assert layer("stem_conv").groups == 3
    # The first unit's first convs each read the whole stem output.
    assert layer("stage2_unit1_gconv1").split_inputs is False
    assert layer("stage2_unit1_gconv1").kernel.shape == (1, 1, 48, 120)
    assert layer("stage2_unit2_gconv1").split_inputs is True
    assert layer("stage2_unit2_gconv1").kernel.shape == (1, 1, 160, 120)
    assert layer("stage2_unit1_gconv1").filters == (30, 60, 120)
    # A stride-2 unit's branch makes what the pooled input does not.
    assert layer("stage2_unit1_gconv2").filters == (108, 216, 432)
    assert layer("stage3_unit1_gconv2").filters == (120, 240, 480)
    assert layer("stage4_unit4_gconv2").filters == (480, 960, 1920)
    assert layer("stage3_unit8_dwconv").channels == (60, 120, 240)
    assert layer("predictions").kernel.shape == (1920, 10)
    units = [
        lay.name for lay in small_model.layers if lay.name.endswith("_gconv1")
    ]
    assert len(units) == 16


def test_key_map_layout(small_model):
    from keras_slimmable.zoo.shufflenet import key_map

    mapping = key_map(small_model)
    weighted = {layer.name for layer in small_model.layers if layer.weights}
    assert set(mapping) == weighted
    assert mapping["stem_conv"] == ["head_0.0", "head_1.0", "head_2.0"]
    assert mapping["stem_bn"] == ["head_0.1", "head_1.1", "head_2.1"]
    assert mapping["stage2_unit1_gconv1"] == [
        "features.0.a_0.0",
        "features.0.a_1.0",
        "features.0.a_2.0",
    ]
    assert mapping["stage3_unit1_bn3"] == [
        "features.4.c_0.1",
        "features.4.c_1.1",
        "features.4.c_2.1",
    ]
    assert mapping["stage4_unit4_dwconv"] == "features.15.b.1"
    assert mapping["stage4_unit4_bn2"] == "features.15.b.2"
    assert mapping["predictions"] == "classifier.0"


def test_create_model():
    model = zoo.create_model(
        "s_shufflenet", widths=(0.5, 1.0), input_shape=SMALL, classes=3
    )
    assert isinstance(model, ks.SlimmableModel)
    assert model.widths == (0.5, 1.0)
    assert model(images(1), width=0.5).shape == (1, 3)


def test_shared_batch_norm_baseline():
    model = zoo.s_shufflenet(
        widths=(1.0, 2.0), input_shape=SMALL, shared_batch_norm=True
    )
    norms = [
        layer
        for layer in model.layers
        if isinstance(layer, ks.SwitchableBatchNormalization)
    ]
    assert norms and all(n.shared and len(n.batch_norms) == 1 for n in norms)
    assert outputs_per_width(model, images(1))[1.0].shape == (1, 1000)


def test_widths_that_do_not_split_into_groups():
    with pytest.raises(ValueError, match="divisible by 3"):
        zoo.s_shufflenet(widths=(0.51, 1.0), input_shape=SMALL)


def test_config_and_keras_file_round_trips(small_model, tmp_path):
    x = images()
    expected = outputs_per_width(small_model, x)

    copy = ks.SlimmableModel.from_config(small_model.get_config())
    copy.set_weights(small_model.get_weights())
    assert copy.widths == WIDTHS
    for width, output in outputs_per_width(copy, x).items():
        np.testing.assert_array_equal(output, expected[width])

    path = tmp_path / "s_shufflenet.keras"
    small_model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, ks.SlimmableModel)
    assert restored.widths == WIDTHS
    for width, output in outputs_per_width(restored, x).items():
        np.testing.assert_array_equal(output, expected[width])
    np.testing.assert_array_equal(
        np.asarray(restored(x, width=0.5)), expected[0.5]
    )
