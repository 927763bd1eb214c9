"""Tests of the AutoSlim zoo models and of the blocks they share.

The golden figures come from outside the code: `counts.json` (the
reference profiler's MACs and parameters per switch), the reference
fixture `autoslim_mobilenet_v2.pt` with the logits the reference PyTorch
code computed from it, and the key counts and budgets that
ARCHITECTURES.md and the reference's model zoo publish.
"""

import inspect
import re
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_slimmable import ScaledChannels
from keras_slimmable import SlimmableConv2D
from keras_slimmable import SlimmableDense
from keras_slimmable import SlimmableDepthwiseConv2D
from keras_slimmable import SlimmableModel
from keras_slimmable import SwitchableBatchNormalization
from keras_slimmable import profile
from keras_slimmable import zoo
from keras_slimmable.convert.reference import CheckpointMismatchError
from keras_slimmable.zoo import autoslim_switch
from keras_slimmable.zoo import load_reference_checkpoint
from keras_slimmable.zoo import mobilenet_v1
from keras_slimmable.zoo import mobilenet_v2
from keras_slimmable.zoo import resnet


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
NAMES = (
    "autoslim_mobilenet_v1",
    "autoslim_mobilenet_v2",
    "autoslim_mnasnet",
    "autoslim_resnet50",
)
# The switch names as the reference's model zoo gives the budgets, and the
# key counts of the reference checkpoints (ARCHITECTURES.md).
PUBLISHED_BUDGETS = {
    "autoslim_mobilenet_v1": {1.0: "150M", 2.0: "325M", 3.0: "572M"},
    "autoslim_mobilenet_v2": {1.0: "207M", 2.0: "305M", 3.0: "505M"},
    "autoslim_mnasnet": {1.0: "217M", 2.0: "315M", 3.0: "532M"},
    "autoslim_resnet50": {1.0: "570M", 2.0: "1.0G", 3.0: "2.0G", 4.0: "3.0G"},
}
REFERENCE_KEYS = {
    "autoslim_mobilenet_v1": 434,
    "autoslim_mobilenet_v2": 834,
    "autoslim_mnasnet": 834,
    "autoslim_resnet50": 1115,
}


@pytest.fixture(scope="module")
def small_models():
    """Each model at 32 pixels and 1000 classes, built once."""
    return {
        name: zoo.create_model(name, input_shape=(32, 32, 3)) for name in NAMES
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_profile_equals_the_reference_counts(name, reference_counts):
    model = zoo.create_model(name)  # 224x224, 1000 classes
    counts = {str(w): c for w, c in profile(model).items()}
    print(f"{name} profile per switch: {counts}")
    assert counts == reference_counts[name]


@needs_fixtures
@pytest.mark.slow
def test_reference_checkpoint_gives_the_reference_logits(
    tmp_path, record_property
):
    from keras_slimmable.zoo.convert import convert

    checkpoint = OFFICIAL / "autoslim_mobilenet_v2.pt"
    model = zoo.autoslim_mobilenet_v2(weights=str(checkpoint))
    reference = np.load(OFFICIAL / "autoslim_mobilenet_v2_reference.npz")
    assert tuple(reference["widths"]) == model.widths == (1.0, 2.0, 3.0)
    differences = {}
    for width in model.widths:
        logits = np.array(model(reference["input_nhwc"], width=width))
        expected = reference[f"logits_{float(width)}"]
        differences[width] = float(np.abs(logits - expected).max())
    record_property("max_abs_logit_difference", differences)
    print(f"autoslim_mobilenet_v2 max abs logit difference: {differences}")
    assert all(d <= 1e-4 for d in differences.values()), differences

    # The conversion command is registry-driven: it converts it too.
    path, _ = convert("autoslim_mobilenet_v2", str(checkpoint), str(tmp_path))
    assert Path(path).name == "autoslim_mobilenet_v2_imagenet.weights.h5"
    converted = zoo.autoslim_mobilenet_v2(weights=path)
    for a, b in zip(model.get_weights(), converted.get_weights()):
        np.testing.assert_array_equal(a, b)


def _reference_key_count(model):
    """The keys of a reference checkpoint of `model`: one per conv (no
    bias), weight and bias per dense layer, and per switchable batch norm
    and switch: weight, bias, running mean and variance and
    num_batches_tracked."""
    count = 0
    for layer in model.layers:
        if isinstance(layer, SwitchableBatchNormalization):
            count += 5 * len(layer.batch_norms)
        elif isinstance(layer, (SlimmableConv2D, SlimmableDepthwiseConv2D)):
            assert not layer.use_bias
            count += 1
        elif isinstance(layer, SlimmableDense):
            count += 2
        else:
            assert not layer.weights, layer.name
    return count


@pytest.mark.parametrize("name", NAMES)
def test_structure_matches_the_reference_keys(name, small_models):
    model = small_models[name]
    assert _reference_key_count(model) == REFERENCE_KEYS[name]
    mapping = zoo.get_architecture(name).key_map(model)
    weighted = {layer.name for layer in model.layers if layer.weights}
    assert set(mapping) == weighted
    assert len(set(mapping.values())) == len(mapping)
    # Every batch norm is switchable, the tail's of v2 and MNasNet too.
    assert not any(
        type(layer) is keras.layers.BatchNormalization for layer in model.layers
    )


def test_mobilenet_v2_and_mnasnet_blocks(small_models):
    v2 = small_models["autoslim_mobilenet_v2"]
    names = {layer.name for layer in v2.layers}
    # Block 1: in 8/8/32, out 8/8/16, stride 1: no expansion and, though
    # the channels agree at switches 1 and 2, no residual add.
    assert "block1_expand" not in names and "block1_add" not in names
    assert v2.get_layer("block1_project").filters == (8, 8, 16)
    assert all(f"block{b}_expand" in names for b in range(2, 18))
    assert v2.get_layer("last_conv").filters == (1920, 1920, 1920)

    mnasnet = small_models["autoslim_mnasnet"]
    kernels = [
        mnasnet.get_layer(f"block{b}_depthwise").kernel_size[0]
        for b in range(1, 18)
    ]
    assert kernels == [3, 3, 3, 3, 5, 5, 5, 5, 5, 5, 3, 3, 5, 5, 5, 5, 3]
    paddings = [
        mnasnet.get_layer(f"block{b}_depthwise").padding for b in (1, 5)
    ]
    assert paddings == [((1, 1), (1, 1)), ((2, 2), (2, 2))]
    assert mnasnet.get_layer("last_conv").filters == (1280, 1920, 1920)
    # ARCHITECTURES.md's rule, on the published lists: an add iff stride 1
    # and the same input and output list at every switch (blocks 3, 4, 6,
    # 7, 9, 10, 12, 14, 15 and 16, counted by hand).
    from keras_slimmable.zoo.autoslim import mnasnet as module

    lists = [module.CHANNELS[s] for s in (1.0, 2.0, 3.0)]
    expected = []
    for block in range(2, 18):
        inputs = [c[2 * block - 3] for c in lists]
        outputs = [c[2 * block - 1] for c in lists]
        if module.STRIDES[block - 1] == 1 and inputs == outputs:
            expected.append(f"block{block}_add")
    adds = sorted(
        layer.name for layer in mnasnet.layers if layer.name.endswith("_add")
    )
    assert adds == sorted(expected) and len(adds) == 10


def test_resnet50_shortcuts_and_inner_channels(small_models):
    model = small_models["autoslim_resnet50"]
    mapping = zoo.get_architecture("autoslim_resnet50").key_map(model)
    shortcuts = sorted(
        int(prefix.split(".")[1])
        for prefix in mapping.values()
        if prefix.endswith("shortcut.0")
    )
    assert shortcuts == [1, 4, 8, 14]
    # The two inner convs have counts of their own (stage 1, block 1).
    assert model.get_layer("stage1_block1_conv1").filters == (8, 16, 16, 16)
    assert model.get_layer("stage1_block1_conv2").filters == (16, 16, 16, 16)
    assert (
        model.get_layer("stage4_block3_conv3").filters == (1680,) + (2016,) * 3
    )


@pytest.mark.parametrize("name", NAMES)
def test_switch_names_are_the_published_budgets(name, reference_counts):
    builder = getattr(zoo, name)
    assert builder.switches == PUBLISHED_BUDGETS[name]
    manifest = zoo.get_architecture(name).weights
    assert manifest["switches"] == PUBLISHED_BUDGETS[name]
    assert manifest["widths"] == tuple(PUBLISHED_BUDGETS[name])
    for width, budget in PUBLISHED_BUDGETS[name].items():
        assert autoslim_switch(name, budget) == width
        assert autoslim_switch(name, width) == width
        # The name is the measured MACs, rounded (532M: 531.9M measured).
        number = float(budget[:-1]) * (1e9 if budget[-1] == "G" else 1e6)
        macs = reference_counts[name][str(width)]["macs"]
        assert abs(macs - number) / number < 0.005, (budget, macs)


def test_unknown_switch_names_are_named():
    with pytest.raises(ValueError, match=r"Received: budget='300M'") as info:
        autoslim_switch("autoslim_mobilenet_v2", "300M")
    assert "'305M'" in str(info.value)
    with pytest.raises(ValueError, match=r"Received: budget=5\.0"):
        autoslim_switch("autoslim_resnet50", 5.0)
    with pytest.raises(ValueError, match="Unknown AutoSlim model 's_resnet50'"):
        autoslim_switch("s_resnet50", "570M")


def test_a_subset_of_switches():
    model = zoo.autoslim_mobilenet_v2(
        widths=(1.0, 3.0), input_shape=(32, 32, 3), classes=4
    )
    assert model.widths == (1.0, 3.0)
    assert model.get_layer("stem_conv").filters == (8, 32)
    assert model.get_layer("block17_project").filters == (280, 480)
    x = np.zeros((1, 32, 32, 3), "float32")
    assert model(x, width=1.0).shape == (1, 4)
    with pytest.raises(ValueError, match=r"Received: widths=\(0\.5, 1\.0\)"):
        zoo.autoslim_mobilenet_v2(widths=(0.5, 1.0), input_shape=(32, 32, 3))
    with pytest.raises(ValueError, match="widths"):
        zoo.autoslim_mobilenet_v2(weights="imagenet", widths=(1.0, 2.0))


def _perturb_batch_norms(model):
    rng = np.random.default_rng(1)
    for variable in model.weights:
        if "moving" in variable.path or "gamma" in variable.path:
            variable.assign(rng.uniform(0.5, 1.5, variable.shape))


@pytest.mark.slow
def test_config_and_keras_file_round_trip(tmp_path):
    model = zoo.autoslim_mnasnet(input_shape=(32, 32, 3), classes=5)
    _perturb_batch_norms(model)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("float32")
    config = model.get_config()
    clone = SlimmableModel.from_config(config)
    assert clone.get_config() == config
    clone.set_weights(model.get_weights())
    path = tmp_path / "autoslim_mnasnet.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, SlimmableModel)
    assert loaded.widths == (1.0, 2.0, 3.0)
    assert loaded.get_layer("block5_depthwise").kernel_size == (5, 5)
    outputs = [np.array(model(x, width=w)) for w in model.widths]
    assert not np.allclose(outputs[0], outputs[-1])
    for width, expected in zip(model.widths, outputs):
        np.testing.assert_allclose(clone(x, width=width), expected, atol=1e-6)
        np.testing.assert_allclose(loaded(x, width=width), expected, atol=1e-6)


@needs_fixtures
@pytest.mark.parametrize(
    "checkpoint, builder",
    [
        # Another architecture: other keys.
        ("s_mobilenet_v2.pt", "autoslim_mobilenet_v2"),
        # The same keys, other shapes.
        ("autoslim_mobilenet_v2.pt", "autoslim_mnasnet"),
    ],
)
def test_a_checkpoint_of_another_model_changes_nothing(checkpoint, builder):
    model = zoo.create_model(builder, input_shape=(32, 32, 3))
    before = [np.array(w) for w in model.get_weights()]
    with pytest.raises(CheckpointMismatchError, match="Nothing was loaded"):
        load_reference_checkpoint(model, OFFICIAL / checkpoint)
    for a, b in zip(before, model.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(CheckpointMismatchError, match="does not match"):
        zoo.create_model(
            builder, input_shape=(32, 32, 3), weights=OFFICIAL / checkpoint
        )


@needs_fixtures
def test_the_checkpoint_needs_every_switch():
    with pytest.raises(CheckpointMismatchError, match="Unexpected keys"):
        zoo.autoslim_mobilenet_v2(
            widths=(1.0, 2.0),
            input_shape=(32, 32, 3),
            weights=OFFICIAL / "autoslim_mobilenet_v2.pt",
        )


@pytest.mark.parametrize("name", NAMES)
def test_builders_document_every_argument(name):
    builder = getattr(zoo, name)
    s_builder = zoo.s_mobilenet_v1
    assert list(inspect.signature(builder).parameters) == list(
        inspect.signature(s_builder).parameters
    )
    documented = re.findall(r"^        (\w+): ", builder.__doc__, re.MULTILINE)
    assert documented == list(inspect.signature(builder).parameters)


# The shared blocks take any channel configuration and batch norm --------


def _record_batch_norms(calls):
    def batch_norm(channels, name):
        calls.append((name, channels))
        return keras.layers.Identity(name=name)

    return batch_norm


def _run_at(model, images, width):
    return tuple(model(images, width=width).shape)


def test_blocks_take_channel_rules_and_a_batch_norm_factory():
    images = keras.Input((32, 32, 3))
    x = np.zeros((1, 32, 32, 3), "float32")
    widths = (0.5, 1.0)

    calls = []
    v1 = mobilenet_v1.features(
        images,
        ScaledChannels(32),
        [(ScaledChannels(64), 1), (ScaledChannels(128), 2)],
        batch_norm=_record_batch_norms(calls),
    )
    v1 = SlimmableModel(images, v1, widths=widths)
    assert _run_at(v1, x, 0.5) == (1, 8, 8, 64)
    assert _run_at(v1, x, 1.0) == (1, 8, 8, 128)
    assert calls[0] == ("stem_bn", ScaledChannels(32))
    assert ("block2_pointwise_bn", ScaledChannels(128)) in calls

    calls = []
    images = keras.Input((32, 32, 3))
    blocks = [
        # t == 1: the expanded channels are the input's, no expansion.
        (ScaledChannels(32), ScaledChannels(16), 1, 3),
        (ScaledChannels(96, ratio=6), ScaledChannels(24), 2, 5),
        (ScaledChannels(144, ratio=6), ScaledChannels(24), 1, 3),
    ]
    v2 = mobilenet_v2.features(
        images, ScaledChannels(32), blocks, _record_batch_norms(calls)
    )
    v2 = SlimmableModel(images, v2, widths=widths)
    names = {layer.name for layer in v2.layers}
    assert "block1_expand" not in names and "block2_expand" in names
    assert "block3_add" in names and "block2_add" not in names
    assert _run_at(v2, x, 0.5) == (1, 8, 8, 16)
    assert ("block2_expand_bn", ScaledChannels(96, ratio=6)) in calls

    images = keras.Input((32, 32, 3))
    stages = [[(16, 16, 64), (16, 16, 64)], [(ScaledChannels(32),) * 3]]
    features = resnet.features(images, 16, stages, _record_batch_norms([]))
    model = SlimmableModel(images, features, widths=widths)
    names = {layer.name for layer in model.layers}
    assert "stage1_block1_shortcut_conv" in names
    assert "stage1_block2_shortcut_conv" not in names
    assert _run_at(model, x, 0.5) == (1, 4, 4, 16)


CARDS = Path(__file__).resolve().parents[2] / "zoo"


@pytest.mark.parametrize("name", NAMES)
def test_model_cards_quote_the_reference_figures(name, reference_counts):
    index = (CARDS / "README.md").read_text()
    assert f"({name}/README.md)" in index
    card = (CARDS / name / "README.md").read_text()
    budgets = PUBLISHED_BUDGETS[name]
    for width, figures in reference_counts[name].items():
        row = f"| {width} | {budgets[float(width)]} | {figures['macs']:,} ("
        row = next(line for line in card.splitlines() if line.startswith(row))
        for key in ("conv_fc_params", "bn_affine_params"):
            assert f"{figures[key]:,}" in row, (name, width, key)
    errors = zoo.get_architecture(name).weights["top1_error"]
    for width, error in errors.items():
        cells = f"{width} | {budgets[width]} | {error} | {100 - error:.1f}"
        row = "^" + re.escape(f"| {cells} |") + "$"
        assert re.search(row, card, flags=re.MULTILINE), (name, width)
    assert f"python -m keras_slimmable.convert --model {name}" in card
    assert f'keras_slimmable.zoo.{name}(weights="{name}.pt")' in card
    assert "CC BY-NC 4.0" in card and "does not redistribute" in card
