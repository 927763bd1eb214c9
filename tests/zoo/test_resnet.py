"""S-ResNet: the reference fixture number for number, shapes, depths, saving.

Everything but the fixture test runs at 32x32 (ResNet-50 at 224 is slow on
a CPU), and runs the graph eagerly inside `width_scope`: tracing one
compiled function per width, as `model(x, width=w)` does, costs ten times
more than the forward pass itself at this size. The fixture test goes
through `model(x, width=w)`.
"""

import re
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_slimmable as ks
from keras_slimmable import zoo

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
FIXTURES = SHARED / "fixtures" / "official"
WIDTHS = (0.25, 0.5, 0.75, 1.0)
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
    return zoo.s_resnet50(input_shape=SMALL, classes=10)


def test_reference_fixture_logits_at_every_width():
    checkpoint = FIXTURES / "s_resnet50.pt"
    reference = FIXTURES / "s_resnet50_reference.npz"
    if not checkpoint.exists() or not reference.exists():
        pytest.skip(f"reference fixtures not found in {FIXTURES}")
    from keras_slimmable.zoo import load_reference_checkpoint

    expected = np.load(reference)
    model = zoo.s_resnet50()
    load_reference_checkpoint(model, checkpoint)
    assert model.widths == tuple(float(w) for w in expected["widths"])
    differences = {}
    for width in model.widths:
        logits = np.asarray(model(expected["input_nhwc"], width=width))
        differences[width] = float(
            np.max(np.abs(logits - expected[f"logits_{width}"]))
        )
    print("s_resnet50 max abs logit difference per width:", differences)
    assert max(differences.values()) <= 1e-4, differences


def test_output_shapes_at_every_width(small_model):
    outputs = outputs_per_width(small_model, images())
    assert {w: o.shape for w, o in outputs.items()} == {
        w: (2, 10) for w in WIDTHS
    }


@pytest.mark.parametrize("pooling", [None, "avg", "max"])
def test_headless_output_shapes(pooling):
    model = zoo.s_resnet50(
        widths=(0.25, 1.0),
        input_shape=SMALL,
        include_top=False,
        pooling=pooling,
    )
    assert "predictions" not in [layer.name for layer in model.layers]
    for width, output in outputs_per_width(model, images()).items():
        features = int(2048 * width)
        expected = (2, 1, 1, features) if pooling is None else (2, features)
        assert output.shape == expected


def test_channel_counts_scale_with_width(small_model):
    assert small_model.get_layer("stem_conv").filters == (16, 32, 48, 64)
    assert small_model.get_layer("stage1_block1_conv1").filters == (
        16,
        32,
        48,
        64,
    )
    assert small_model.get_layer("stage4_block3_conv3").filters == (
        512,
        1024,
        1536,
        2048,
    )
    assert small_model.get_layer("predictions").kernel.shape == (2048, 10)


def test_stem_padding_and_pooling(small_model):
    """7x7/2 padding 3, then a padded 3x3/2 max pool: 32 -> 16 -> 8."""
    stem = keras.Model(
        small_model.input, small_model.get_layer("stem_pool").output
    )
    assert stem.output.shape == (None, 8, 8, 64)
    assert small_model.get_layer("stem_conv").padding == ((3, 3), (3, 3))


def block_counts(model):
    counts = {}
    for layer in model.layers:
        match = re.fullmatch(r"stage(\d)_block(\d+)_conv1", layer.name)
        if match:
            stage = int(match[1])
            counts[stage] = counts.get(stage, 0) + 1
    return tuple(counts[s] for s in sorted(counts))


def test_resnet50_block_counts(small_model):
    assert block_counts(small_model) == (3, 4, 6, 3)
    shortcuts = [
        layer.name
        for layer in small_model.layers
        if layer.name.endswith("_shortcut_conv")
    ]
    assert shortcuts == [f"stage{s}_block1_shortcut_conv" for s in (1, 2, 3, 4)]


@pytest.mark.parametrize(
    "builder,depth,expected",
    [
        (zoo.s_resnet101, 101, (3, 4, 23, 3)),
        (zoo.s_resnet152, 152, (3, 8, 36, 3)),
    ],
)
def test_deeper_resnets_build(builder, depth, expected):
    # Two widths are enough here and build faster than the default four.
    model = builder(widths=(0.5, 1.0), input_shape=SMALL, classes=10)
    assert model.name == f"s_resnet{depth}"
    assert block_counts(model) == expected
    assert "s_resnet" + str(depth) in zoo.list_models()
    # Its checkpoint keys: one `features.<n>` per block after the stem.
    from keras_slimmable.zoo.resnet import key_map

    mapping = key_map(model)
    assert mapping["stage4_block3_conv3"] == f"features.{sum(expected)}.body.6"


def test_key_map_layout(small_model):
    from keras_slimmable.zoo.resnet import key_map

    mapping = key_map(small_model)
    weighted = {layer.name for layer in small_model.layers if layer.weights}
    assert set(mapping) == weighted
    assert mapping["stem_conv"] == "features.0.0"
    assert mapping["stem_bn"] == "features.0.1"
    assert mapping["stage1_block1_shortcut_bn"] == "features.1.shortcut.1"
    assert mapping["stage2_block1_conv2"] == "features.4.body.3"
    assert mapping["stage4_block3_bn3"] == "features.16.body.7"
    assert mapping["predictions"] == "classifier.0"


def test_create_model_and_thin_entry_point():
    model = zoo.create_model(
        "s_resnet50", widths=(0.5, 1.0), input_shape=SMALL, classes=3
    )
    assert isinstance(model, ks.SlimmableModel)
    assert model.widths == (0.5, 1.0)
    assert model(images(1), width=0.5).shape == (1, 3)


def test_shared_batch_norm_baseline():
    model = zoo.s_resnet50(
        widths=(0.5, 1.0), input_shape=SMALL, shared_batch_norm=True
    )
    norms = [
        layer
        for layer in model.layers
        if isinstance(layer, ks.SwitchableBatchNormalization)
    ]
    assert norms and all(n.shared and len(n.batch_norms) == 1 for n in norms)
    assert outputs_per_width(model, images(1))[0.5].shape == (1, 1000)


def test_bad_arguments():
    with pytest.raises(ValueError, match="depth"):
        zoo.s_resnet(depth=34)
    with pytest.raises(ValueError, match="pooling"):
        zoo.s_resnet50(include_top=False, pooling="min")
    with pytest.raises(ValueError, match="depth 50 only"):
        zoo.s_resnet101(weights="imagenet")


def test_config_and_keras_file_round_trips(small_model, tmp_path):
    x = images()
    expected = outputs_per_width(small_model, x)

    copy = ks.SlimmableModel.from_config(small_model.get_config())
    copy.set_weights(small_model.get_weights())
    assert copy.widths == WIDTHS
    for width, output in outputs_per_width(copy, x).items():
        np.testing.assert_array_equal(output, expected[width])

    path = tmp_path / "s_resnet50.keras"
    small_model.save(path)
    restored = keras.saving.load_model(path)
    assert isinstance(restored, ks.SlimmableModel)
    assert restored.widths == WIDTHS
    for width, output in outputs_per_width(restored, x).items():
        np.testing.assert_array_equal(output, expected[width])
    # And through the model's own call, at one width.
    np.testing.assert_array_equal(
        np.asarray(restored(x, width=0.25)), expected[0.25]
    )
