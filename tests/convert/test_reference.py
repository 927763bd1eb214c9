"""Tests of `load_reference_checkpoint`, the key-map contract and the CLI.

Most tests load through the zoo's front
(`keras_slimmable.zoo.load_reference_checkpoint`, which finds the key map
by the model's name); the key-map contract itself goes through
`keras_slimmable.convert.reference`, which knows no architecture.

Golden numbers come from the reference fixtures in the `shared` folder
beside the repository (the logits the reference PyTorch code computed).
"""

import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from keras_slimmable import SlimmableGroupedConv2D
from keras_slimmable import SlimmableModel
from keras_slimmable import SwitchableBatchNormalization
from keras_slimmable.convert import reference
from keras_slimmable.convert.reference import CheckpointMismatchError
from keras_slimmable.convert.torch_checkpoint import CheckpointFormatError
from keras_slimmable.convert.torch_checkpoint import load_state_dict
from keras_slimmable.zoo import load_reference_checkpoint
from keras_slimmable.zoo import s_mobilenet_v1


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


def _weights(model):
    return [np.array(v) for v in model.get_weights()]


def _assert_bitwise_equal(before, after):
    assert len(before) == len(after)
    for a, b in zip(before, after):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert a.tobytes() == b.tobytes()


@pytest.fixture(scope="module")
def v1_state():
    if OFFICIAL is None:
        pytest.skip("the shared reference fixtures are absent")
    return load_state_dict(OFFICIAL / "s_mobilenet_v1.pt")


@pytest.fixture(scope="module")
def small_v1():
    # Any input size holds the same weights: 32 px keeps the test fast.
    return s_mobilenet_v1(input_shape=(32, 32, 3))


@needs_fixtures
def test_mismatches_are_listed_together_and_nothing_changes(small_v1, v1_state):
    state = dict(v1_state)
    del state["features.5.body.3.weight"]
    del state["features.0.1.bn.2.running_var"]
    state["features.14.body.0.weight"] = np.zeros((3, 1, 3, 3), "float32")
    state["classifier.0.weight"] = np.zeros((1000, 1023), "float32")
    state["features.2.body.1.bn.0.bias"] = np.zeros((9,), "float32")
    before = _weights(small_v1)

    with pytest.raises(CheckpointMismatchError) as info:
        load_reference_checkpoint(small_v1, state)

    message = str(info.value)
    assert "Missing keys (2)" in message
    assert "features.0.1.bn.2.running_var: expected (24)" in message
    assert "features.5.body.3.weight: expected (256, 256, 1, 1)" in message
    assert "Unexpected keys (1)" in message
    assert "features.14.body.0.weight: found (3, 1, 3, 3)" in message
    assert "Shape mismatches (2)" in message
    assert (
        "classifier.0.weight: expected (1000, 1024), found (1000, 1023)"
        in message
    )
    assert "features.2.body.1.bn.0.bias: expected (16), found (9)" in message
    # Sorted, and kept on the error.
    assert info.value.missing == [
        "features.0.1.bn.2.running_var",
        "features.5.body.3.weight",
    ]
    assert info.value.unexpected == ["features.14.body.0.weight"]
    assert info.value.mismatched == [
        "classifier.0.weight",
        "features.2.body.1.bn.0.bias",
    ]
    assert isinstance(info.value, ValueError)
    _assert_bitwise_equal(before, _weights(small_v1))


@needs_fixtures
@pytest.mark.parametrize("case", ["missing", "unexpected", "shape"])
def test_each_mismatch_alone_leaves_the_model_unchanged(
    small_v1, v1_state, case
):
    state = dict(v1_state)
    if case == "missing":
        del state["classifier.0.bias"]
    elif case == "unexpected":
        state["extra.weight"] = np.ones((2,), "float32")
    else:
        state["features.1.body.0.weight"] = np.ones((32, 1, 5, 5), "float32")
    before = _weights(small_v1)
    with pytest.raises(CheckpointMismatchError):
        load_reference_checkpoint(small_v1, state)
    _assert_bitwise_equal(before, _weights(small_v1))


def _every_variable(model):
    """Every variable's value, trainable or not (batch-norm statistics)."""
    return [np.array(v) for v in model.variables]


def _hostile_state(state, kind, tmp_path):
    """A state dict (or a file) that must fail to load, and the error."""
    state = dict(state)
    if kind == "shape":
        state["classifier.0.weight"] = np.zeros((1000, 1023), "float32")
        return state, CheckpointMismatchError
    if kind == "missing":
        del state["features.13.body.4.bn.3.running_mean"]
        return state, CheckpointMismatchError
    if kind in ("nan", "inf"):
        bad = state["classifier.0.weight"].copy()
        bad[7, 11] = np.nan if kind == "nan" else -np.inf
        state["classifier.0.weight"] = bad
        return state, ValueError
    if kind == "negative_variance":
        bad = state["features.13.body.4.bn.3.running_var"].copy()
        bad[0] = -0.5
        state["features.13.body.4.bn.3.running_var"] = bad
        return state, ValueError
    if kind in ("int64", "bool", "uint8", "complex64"):
        bias = state["classifier.0.bias"]
        state["classifier.0.bias"] = bias.astype(kind)
        return state, CheckpointMismatchError
    assert kind == "truncated"
    data = (OFFICIAL / "s_mobilenet_v1.pt").read_bytes()
    path = tmp_path / "truncated.pt"
    path.write_bytes(data[: len(data) * 9 // 10])
    return path, CheckpointFormatError


HOSTILE_KINDS = [
    "shape",
    "missing",
    "nan",
    "inf",
    "negative_variance",
    "int64",
    "bool",
    "uint8",
    "complex64",
    "truncated",
]


@needs_fixtures
@pytest.mark.parametrize("kind", HOSTILE_KINDS)
def test_a_failed_load_leaves_every_variable_as_it_was(
    small_v1, v1_state, tmp_path, kind
):
    # Start from the checkpoint's values with one kernel changed, so that a
    # partial load would show as a changed variable.
    load_reference_checkpoint(small_v1, v1_state)
    kernel = small_v1.get_layer("stem_conv").kernel
    kernel.assign(np.full(kernel.shape, 0.5, "float32"))
    before = _every_variable(small_v1)
    checkpoint, error = _hostile_state(v1_state, kind, tmp_path)

    with pytest.raises(error):
        load_reference_checkpoint(small_v1, checkpoint)
    _assert_bitwise_equal(before, _every_variable(small_v1))


@needs_fixtures
@pytest.mark.parametrize("dtype", ["int64", "bool", "uint8", "complex64"])
def test_non_float_tensors_are_refused_naming_key_and_dtype(
    small_v1, v1_state, tmp_path, dtype
):
    state, _ = _hostile_state(v1_state, dtype, tmp_path)
    with pytest.raises(CheckpointMismatchError) as info:
        load_reference_checkpoint(small_v1, state)
    assert f"classifier.0.bias: {dtype}, expected one of float16" in str(
        info.value
    )
    assert info.value.wrong_dtype == ["classifier.0.bias"]


@needs_fixtures
def test_non_finite_weights_and_negative_variances_are_named(
    small_v1, v1_state, tmp_path
):
    for kind, key, what in [
        ("nan", "classifier.0.weight", "has NaN or infinite values"),
        ("inf", "classifier.0.weight", "has NaN or infinite values"),
        (
            "negative_variance",
            "features.13.body.4.bn.3.running_var",
            "is a variance with negative values (-0.5)",
        ),
    ]:
        state, _ = _hostile_state(v1_state, kind, tmp_path)
        with pytest.raises(ValueError) as info:
            load_reference_checkpoint(small_v1, state)
        assert f"{key}: {what}" in str(info.value)
        assert "Nothing was loaded" in str(info.value)
    # A float64 value too large for float32 would become infinite.
    state = dict(v1_state)
    state["classifier.0.bias"] = np.full(1000, 1e300)
    with pytest.raises(ValueError, match="classifier.0.bias: has NaN"):
        load_reference_checkpoint(small_v1, state)


@needs_fixtures
def test_other_float_dtypes_load_and_batch_counts_stay_int64(
    small_v1, v1_state
):
    import ml_dtypes

    assert v1_state["features.0.1.bn.0.num_batches_tracked"].dtype == "int64"
    state = dict(v1_state)
    bias = v1_state["classifier.0.bias"]
    state["classifier.0.bias"] = bias.astype(np.float64)
    state["classifier.0.weight"] = v1_state["classifier.0.weight"].astype(
        ml_dtypes.bfloat16
    )
    load_reference_checkpoint(small_v1, state)
    head = small_v1.get_layer("predictions")
    np.testing.assert_array_equal(np.array(head.bias), bias)
    np.testing.assert_array_equal(
        np.array(head.kernel),
        state["classifier.0.weight"].astype(np.float32).T,
    )


@needs_fixtures
def test_another_architecture_gives_a_short_message_and_every_key(small_v1):
    v2_state = load_state_dict(OFFICIAL / "s_mobilenet_v2.pt")
    with pytest.raises(CheckpointMismatchError) as info:
        load_reference_checkpoint(small_v1, v2_state)
    error = info.value
    message = str(error)
    assert len(message.splitlines()) <= 30, message
    assert "is it a checkpoint of another architecture" in message
    total = len(error.missing) + len(error.unexpected) + len(error.mismatched)
    assert total > 400
    assert f"Unexpected keys ({len(error.unexpected)}):" in message
    assert f"Shape mismatches ({len(error.mismatched)}):" in message
    assert f"... and {len(error.mismatched) - 5} more" in message
    # Every key is kept, and `details` lists them all.
    assert len(error.details.splitlines()) > total
    for key in error.missing + error.unexpected + error.mismatched:
        assert f"  {key}: " in error.details


@needs_fixtures
def test_a_failing_assignment_restores_every_variable(
    small_v1, v1_state, monkeypatch
):
    before = _weights(small_v1)
    # The classifier is assigned last: everything else is already loaded
    # when it fails.
    kernel = small_v1.get_layer("predictions").kernel

    def broken_assign(value):
        raise RuntimeError("simulated failure while assigning")

    monkeypatch.setattr(kernel, "assign", broken_assign)
    with pytest.raises(RuntimeError, match="simulated failure"):
        load_reference_checkpoint(small_v1, v1_state)
    monkeypatch.undo()
    _assert_bitwise_equal(before, _weights(small_v1))


@needs_fixtures
def test_loads_from_a_file_a_state_dict_and_without_batch_counts(
    small_v1, v1_state
):
    load_reference_checkpoint(small_v1, OFFICIAL / "s_mobilenet_v1.pt")
    from_file = _weights(small_v1)
    kernel = small_v1.get_layer("stem_conv").kernel
    np.testing.assert_array_equal(
        np.array(kernel),
        v1_state["features.0.0.weight"].transpose(2, 3, 1, 0),
    )
    depthwise = small_v1.get_layer("block1_depthwise").kernel
    np.testing.assert_array_equal(
        np.array(depthwise),
        v1_state["features.1.body.0.weight"].transpose(2, 3, 0, 1),
    )
    batch_norm = small_v1.get_layer("stem_bn").batch_norms[1]
    np.testing.assert_array_equal(
        np.array(batch_norm.moving_variance),
        v1_state["features.0.1.bn.1.running_var"],
    )

    for variable in small_v1.weights:
        variable.assign(np.zeros(variable.shape, variable.dtype))
    state = {
        "module." + key: value
        for key, value in v1_state.items()
        if not key.endswith("num_batches_tracked")
    }
    load_reference_checkpoint(small_v1, state, architecture="s_mobilenet_v1")
    _assert_bitwise_equal(from_file, _weights(small_v1))


@needs_fixtures
def test_truncated_and_corrupt_files_raise_the_readers_error(
    small_v1, tmp_path
):
    data = (OFFICIAL / "s_mobilenet_v1.pt").read_bytes()
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all" * 10)
    before = _weights(small_v1)
    for path in (truncated, garbage):
        with pytest.raises(CheckpointFormatError):
            load_reference_checkpoint(small_v1, path)
    _assert_bitwise_equal(before, _weights(small_v1))


@needs_fixtures
def test_shared_batch_norm_is_refused(v1_state):
    model = s_mobilenet_v1(input_shape=(32, 32, 3), shared_batch_norm=True)
    before = _weights(model)
    with pytest.raises(ValueError, match="shared batch norm"):
        load_reference_checkpoint(model, v1_state)
    _assert_bitwise_equal(before, _weights(model))


def test_unknown_architecture_names_the_known_ones(small_v1):
    with pytest.raises(ValueError, match="s_mobilenet_v2"):
        load_reference_checkpoint(small_v1, {}, architecture="lenet")
    renamed = s_mobilenet_v1(input_shape=(32, 32, 3), name="my_model")
    with pytest.raises(ValueError, match="architecture="):
        load_reference_checkpoint(renamed, {})


def test_a_layer_made_of_several_reference_modules():
    """The key-map contract for a list of prefixes (ShuffleNet's groups):
    the modules' tensors are concatenated on the output channels."""
    groups, widths = 3, (0.5, 1.0)
    inputs = keras.Input((4, 4, 6))
    conv = SlimmableGroupedConv2D(
        (6, 12), 1, groups=groups, use_bias=True, name="group_conv"
    )
    norm = SwitchableBatchNormalization((6, 12), epsilon=1e-5, name="norm")
    model = SlimmableModel(inputs, norm(conv(inputs)), widths=widths)
    rng = np.random.default_rng(0)
    state = {}
    for k in range(groups):
        state[f"g{k}.conv.weight"] = rng.normal(size=(4, 2, 1, 1))
        state[f"g{k}.conv.bias"] = rng.normal(size=(4,))
        for i, count in enumerate((2, 4)):
            prefix = f"g{k}.bn.bn.{i}"
            state[f"{prefix}.weight"] = rng.normal(size=(count,))
            state[f"{prefix}.bias"] = rng.normal(size=(count,))
            state[f"{prefix}.running_mean"] = rng.normal(size=(count,))
            state[f"{prefix}.running_var"] = rng.uniform(0.5, 2, (count,))
    key_map = {
        "group_conv": [f"g{k}.conv" for k in range(groups)],
        "norm": [f"g{k}.bn" for k in range(groups)],
    }
    reference.load_reference_checkpoint(model, state, key_map=key_map)

    x = rng.normal(size=(2, 4, 4, 6)).astype("float32")
    for i, per_group in enumerate((2, 4)):
        outputs = []
        for k in range(groups):
            w = state[f"g{k}.conv.weight"][:per_group, :, 0, 0]
            y = x[..., 2 * k : 2 * k + 2] @ w.T
            y = y + state[f"g{k}.conv.bias"][:per_group]
            p = f"g{k}.bn.bn.{i}"
            y = (y - state[f"{p}.running_mean"]) / np.sqrt(
                state[f"{p}.running_var"] + 1e-5
            ) * state[f"{p}.weight"] + state[f"{p}.bias"]
            outputs.append(y)
        expected = np.concatenate(outputs, axis=-1)
        actual = np.array(model(x, width=widths[i]))
        np.testing.assert_allclose(actual, expected, atol=1e-5)

    wrong = dict(state)
    wrong["g1.conv.weight"] = np.zeros((5, 2, 1, 1))
    with pytest.raises(CheckpointMismatchError) as info:
        reference.load_reference_checkpoint(
            model, wrong, lambda model: key_map, architecture="grouped_test"
        )
    assert "g1.conv.weight: expected (4, 2, 1, 1), found (5, 2, 1, 1)" in str(
        info.value
    )
    assert "architecture 'grouped_test'" in str(info.value)


@pytest.mark.parametrize("key_map", [None, "s_mobilenet_v1", 3])
def test_the_library_loader_needs_a_key_map(small_v1, key_map):
    before = _weights(small_v1)
    with pytest.raises(ValueError, match="`key_map` must be") as info:
        reference.load_reference_checkpoint(small_v1, {}, key_map)
    assert f"Received: key_map={key_map!r}" in str(info.value)
    assert "keras_slimmable.load_reference_checkpoint" in str(info.value)
    _assert_bitwise_equal(before, _weights(small_v1))


@needs_fixtures
def test_convert_cli_then_imagenet_weights(tmp_path, monkeypatch):
    keras_home = tmp_path / "keras_home"
    environment = dict(os.environ, KERAS_HOME=str(keras_home))
    # TensorFlow's own start-up messages are hidden without the user's help.
    environment.pop("TF_CPP_MIN_LOG_LEVEL", None)
    checkpoint = OFFICIAL / "s_mobilenet_v1.pt"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "keras_slimmable.convert",
            "--model",
            "s_mobilenet_v1",
            str(checkpoint),
        ],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for noise in ("cuInit", "oneDNN", "absl::InitializeLog", "Traceback"):
        assert noise not in result.stderr, result.stderr[-3000:]
    folder = keras_home / "models" / "keras_slimmable"
    weights_path = folder / "s_mobilenet_v1_imagenet.weights.h5"
    assert weights_path.is_file()
    recorded = (folder / (weights_path.name + ".sha256")).read_text().split()
    assert str(weights_path) in result.stdout
    assert f"sha256 {recorded[0]}" in result.stdout
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]

    monkeypatch.setenv("KERAS_HOME", str(keras_home))
    model = s_mobilenet_v1(weights="imagenet")
    reference = np.load(OFFICIAL / "s_mobilenet_v1_reference.npz")
    for width in reference["widths"]:
        logits = np.array(model(reference["input_nhwc"], width=float(width)))
        expected = reference[f"logits_{float(width)}"]
        assert np.abs(logits - expected).max() <= 1e-4

    # Headless: every layer gets the full model's weights.
    headless = s_mobilenet_v1(
        weights="imagenet",
        input_shape=(32, 32, 3),
        include_top=False,
        pooling="avg",
    )
    assert headless.layers[-1].name == "avg_pool"
    for layer in headless.layers:
        _assert_bitwise_equal(
            model.get_layer(layer.name).get_weights(), layer.get_weights()
        )

    # A damaged cache file is refused.
    with open(weights_path, "r+b") as f:
        f.seek(-8, os.SEEK_END)
        f.write(b"\x00" * 8)
    with pytest.raises(ValueError, match="sha256"):
        s_mobilenet_v1(weights="imagenet")


def test_cli_requires_one_checkpoint():
    from absl import app

    from keras_slimmable.zoo import convert as cli

    with pytest.raises(app.UsageError, match="exactly one checkpoint"):
        cli.main(["convert"])
    with pytest.raises(app.UsageError, match="exactly one checkpoint"):
        cli.main(["convert", "a.pt", "b.pt"])


@needs_fixtures
def test_convert_output_argument(tmp_path):
    from keras_slimmable.zoo.convert import convert

    with pytest.raises(ValueError, match="--output"):
        convert("s_mobilenet_v1", OFFICIAL / "s_mobilenet_v1.pt", "x.h5")
    target = str(tmp_path / "converted.weights.h5")
    path, digest = convert(
        "s_mobilenet_v1", OFFICIAL / "s_mobilenet_v1.pt", output=target
    )
    assert path == target
    recorded = Path(target + ".sha256").read_text().split()
    assert recorded == [digest, "converted.weights.h5"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "converted.weights.h5",
        "converted.weights.h5.sha256",
    ]
    model = s_mobilenet_v1(weights=target, input_shape=(32, 32, 3))
    state = load_state_dict(OFFICIAL / "s_mobilenet_v1.pt")
    np.testing.assert_array_equal(
        np.array(model.get_layer("predictions").kernel),
        state["classifier.0.weight"].T,
    )


def test_convert_refuses_a_model_without_a_key_map(monkeypatch, tmp_path):
    from keras_slimmable.zoo import registry
    from keras_slimmable.zoo.convert import convert

    registry.list_models()  # every architecture registered first
    architecture = registry.Architecture("plain_test", s_mobilenet_v1)
    monkeypatch.setitem(registry._ARCHITECTURES, "plain_test", architecture)
    with pytest.raises(ValueError, match="'plain_test' has no reference key"):
        convert("plain_test", __file__, output=str(tmp_path))
    with pytest.raises(ValueError, match="Unknown zoo model 'lenet'"):
        convert("lenet", __file__, output=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def _run_cli(*arguments, timeout=300):
    environment = dict(os.environ)
    environment.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return subprocess.run(
        [sys.executable, *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize(
    "module", ["keras_slimmable.convert", "keras_slimmable.zoo.convert"]
)
def test_cli_help_does_not_import_tensorflow(module):
    # `python -m keras_slimmable.convert` is the entry point of the command
    # whose code lives beside the zoo.
    result = _run_cli("-X", "importtime", "-m", module, "--help")
    assert "--model" in result.stdout and "--output" in result.stdout
    assert "Converts a reference slimmable checkpoint" in result.stdout
    imported = [
        line.rsplit("|", 1)[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:")
    ]
    assert "keras_slimmable.zoo" in imported
    heavy = [
        name
        for name in imported
        if name.split(".")[0] in ("tensorflow", "keras", "numpy")
    ]
    assert heavy == []


@pytest.mark.slow
def test_the_package_imports_its_names_on_first_use():
    code = """
import sys
sys.argv = ["-m"]  # as while `python -m` locates its module
import keras_slimmable.convert as convert
assert "tensorflow" not in sys.modules and "keras" not in sys.modules
assert "load_reference_checkpoint" in dir(convert)
sys.argv = ["x"]
from keras_slimmable.convert import CheckpointFormatError
from keras_slimmable.convert import load_reference_checkpoint
from keras_slimmable.convert import reference
assert load_reference_checkpoint is reference.load_reference_checkpoint
assert "keras_slimmable.zoo" not in sys.modules
assert issubclass(CheckpointFormatError, ValueError)
try:
    convert.no_such_name
except AttributeError as error:
    assert "no_such_name" in str(error)
else:
    raise AssertionError("no AttributeError")
print("ok")
"""
    result = _run_cli("-c", code)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "ok"


@pytest.mark.slow
@pytest.mark.parametrize(
    "module", ["keras_slimmable.convert", "keras_slimmable.zoo.convert"]
)
def test_cli_unknown_model_is_one_message(module):
    result = _run_cli("-m", module, "--model", "lenet", __file__)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "cuInit" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(
        f"python -m {module}: error: Unknown zoo model 'lenet'"
    )
    assert "s_mobilenet_v1" in lines[0]
    assert len(lines) == 2, result.stderr


@needs_fixtures
@pytest.mark.slow
def test_cli_checkpoint_of_another_architecture(tmp_path):
    arguments = [
        "-m",
        "keras_slimmable.convert",
        "--model",
        "s_mobilenet_v1",
        "--output",
        str(tmp_path),
        str(OFFICIAL / "s_mobilenet_v2.pt"),
    ]
    result = _run_cli(*arguments)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(
        "python -m keras_slimmable.convert: error: The checkpoint"
    )
    assert "another architecture" in result.stderr
    assert "Shape mismatches (430):" in result.stderr
    assert "  ... and 425 more" in result.stderr
    assert "(--verbose lists every key)" in result.stderr
    assert len(lines) <= 20, result.stderr
    assert list(tmp_path.iterdir()) == []

    verbose = _run_cli(*arguments, "--verbose")
    assert verbose.returncode != 0
    assert "features.0.1.bn.0.bias: expected (8), found (16)" in verbose.stderr
    listed = [
        line
        for line in verbose.stderr.splitlines()
        if line.startswith("  ") and (": expected" in line or ": found" in line)
    ]
    assert len(listed) >= 413 + 430
