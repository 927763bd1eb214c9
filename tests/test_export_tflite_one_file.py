"""One LiteRT file that switches width: `export_tflite(..., widths=...)`.

The files run in `ai_edge_litert`'s interpreter, each signature through
`get_signature_runner`, and are compared with the in-memory model at that
width. The model: a small MobileNet-like network (a strided convolution,
a depthwise-separable block, a classifier; 16x16 inputs), random weights
and per-width batch norm statistics that differ, so a signature that ran
the wrong width would show. Small, because every conversion converts every
width (the zoo models are measured in `benchmarks/on_device.py`).
"""

import os
import re
import signal
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_slimmable as ks
from keras_slimmable import export

SIZE = 16
CLASSES = 10
WIDTHS = (0.25, 0.5, 1.0)
FLOAT32_TOLERANCE = 1e-4
ALL_SIGNATURES = [
    "serving_default",
    "serving_w0_25",
    "serving_w0_5",
    "serving_w1_0",
]


def small_mobilenet():
    def channels(c):
        return ks.scale_channels(c, WIDTHS)

    inputs = keras.Input((SIZE, SIZE, 3))
    x = ks.SlimmableConv2D(
        channels(64), 3, strides=2, padding=1, use_bias=False, name="stem"
    )(inputs)
    x = ks.SwitchableBatchNormalization(channels(64), name="stem_bn")(x)
    x = keras.layers.ReLU(6.0)(x)
    x = ks.SlimmableDepthwiseConv2D(
        3, strides=2, padding=1, use_bias=False, name="dw"
    )(x)
    x = ks.SwitchableBatchNormalization(channels(64), name="dw_bn")(x)
    x = keras.layers.ReLU(6.0)(x)
    x = ks.SlimmableConv2D(channels(128), 1, use_bias=False, name="pw")(x)
    x = ks.SwitchableBatchNormalization(channels(128), name="pw_bn")(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = ks.SlimmableDense(CLASSES, name="logits")(x)
    return ks.SlimmableModel(inputs, outputs, widths=WIDTHS, name="small")


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(0)
    model = small_mobilenet()
    rng = np.random.default_rng(0)
    for variable in model.weights:
        shape = tuple(variable.shape)
        if variable.path.endswith(("moving_variance", "gamma")):
            variable.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
        elif variable.path.endswith(("moving_mean", "beta")):
            variable.assign(rng.normal(0.0, 0.2, shape).astype("float32"))
    # Not the widest: `serving_default` must follow the model's width.
    model.set_width(0.5)
    return model


@pytest.fixture(scope="module")
def one_files(model, tmp_path_factory):
    """{name: path} of the multi-width files, each converted once."""
    folder = tmp_path_factory.mktemp("one_file")
    variants = {
        "materialized": {},
        "sliced": {"layout": "sliced"},
        "shared": {"layout": "shared"},
        "folded": {"fold_batch_norm": True},
        "float16": {"quantization": "float16"},
        "dynamic_range": {"quantization": "dynamic_range"},
    }
    files = {}
    for name, kwargs in variants.items():
        files[name] = export.export_tflite(
            model, folder / f"{name}.tflite", widths="all", **kwargs
        )
    assert sorted(os.listdir(folder)) == sorted(f"{n}.tflite" for n in files)
    return files


def images(batch, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, SIZE, SIZE, 3)).astype("float32")


def expected(model, x, width):
    return keras.ops.convert_to_numpy(model(x, width=width))


def run_signature(path, signature, x):
    """Runs a signature image by image (the signatures take batch 1)."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner(signature)
    outputs = []
    for image in x:
        (output,) = runner(images=image[None]).values()
        outputs.append(output[0])
    return np.stack(outputs)


def signatures(path):
    from ai_edge_litert.interpreter import Interpreter

    return sorted(Interpreter(model_path=str(path)).get_signature_list())


def relative_drift(output, reference):
    return float(np.linalg.norm(output - reference) / np.linalg.norm(reference))


@pytest.mark.parametrize("name", ["materialized", "sliced", "shared", "folded"])
def test_every_signature_equals_the_model_at_its_width(model, one_files, name):
    path = one_files[name]
    extra = ["keep_weights_as_variables"] if name == "shared" else []
    assert signatures(path) == sorted(ALL_SIGNATURES + extra)
    x = images(3, seed=1)
    differences = {}
    for width in WIDTHS:
        output = run_signature(path, export.signature_name(width), x)
        differences[width] = float(
            np.abs(output - expected(model, x, width)).max()
        )
    default = run_signature(path, "serving_default", x)
    differences["default"] = float(
        np.abs(default - expected(model, x, 0.5)).max()
    )
    print(f"\n{name}: max abs difference per signature {differences}")
    assert max(differences.values()) <= FLOAT32_TOLERANCE, differences
    # The widths differ by far more than the tolerance: a wrong width shows.
    for narrow, wide in zip(WIDTHS, WIDTHS[1:]):
        gap = np.abs(expected(model, x, narrow) - expected(model, x, wide))
        assert gap.max() > 100 * FLOAT32_TOLERANCE


def test_the_converter_stores_one_copy_per_width(model, one_files, tmp_path):
    """Measured, not wished: slicing shared kernels in the graph does not
    share them in the file; the converter folds every slice into a
    constant, so both layouts store each width's weights once per width,
    and one file is about the size of the per-width files together."""
    per_width = {
        w: export.export_tflite(model, tmp_path / f"{w}.tflite", width=w)
        .stat()
        .st_size
        for w in WIDTHS
    }
    together = sum(per_width.values())
    float32_weights = 4 * sum(
        model.materialize(w, fold_batch_norm=True).count_params()
        for w in WIDTHS
    )
    sizes = {
        name: one_files[name].stat().st_size
        for name in ("materialized", "sliced", "folded")
    }
    print(
        f"\none file: {sizes}; per-width files {per_width}, together "
        f"{together}; float32 weights of every width {float32_weights}"
    )
    for size in sizes.values():
        assert size >= float32_weights
        assert 0.9 * together <= size <= 1.1 * together
        assert per_width[max(WIDTHS)] < 0.8 * size
    # The "shared" layout stores every variable once, at full width; on
    # this small model the variables' handling ops outweigh that saving
    # (at 224 px it is half the size: docs/on_device.md).
    shared = one_files["shared"].stat().st_size
    print(f"shared: {shared}; all variables {4 * model.count_params()}")
    assert 4 * model.count_params() <= shared


def test_shared_layout_is_float32_only(model, tmp_path):
    with pytest.raises(ValueError, match="float16"):
        export.export_tflite(
            model,
            tmp_path / "m.tflite",
            widths="all",
            layout="shared",
            quantization="float16",
        )
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("name", ["float16", "dynamic_range"])
def test_quantized_one_file(model, one_files, name):
    """Quantized files drift by design: a tenth of the gap to the next
    narrower width bounds it (see test_export.py's quantized test). The
    drift shows the weights were quantized; their size at 224 px is in
    docs/on_device.md (this model's small tensors are partly left in
    float32 by the converter)."""
    path = one_files[name]
    assert signatures(path) == ALL_SIGNATURES
    x = images(4, seed=2)
    for width in WIDTHS[1:]:
        reference = expected(model, x, width)
        narrower = WIDTHS[WIDTHS.index(width) - 1]
        gap = relative_drift(expected(model, x, narrower), reference)
        drift = relative_drift(
            run_signature(path, export.signature_name(width), x), reference
        )
        print(f"\n{name} at {width}: drift {drift:.2e}, gap {gap:.2f}")
        assert 1e-5 < drift < 0.1 * gap
    assert path.stat().st_size < one_files["materialized"].stat().st_size


def test_some_widths_default_to_the_widest_exported(model, tmp_path):
    path = export.export_tflite(
        model, tmp_path / "two.tflite", widths=[1.0, 0.25]
    )
    assert signatures(path) == [
        "serving_default",
        "serving_w0_25",
        "serving_w1_0",
    ]
    x = images(1, seed=3)
    np.testing.assert_allclose(
        run_signature(path, "serving_default", x),
        expected(model, x, 1.0),
        atol=FLOAT32_TOLERANCE,
    )


# Bad input: clear errors, nothing written -----------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"widths": [0.25, 0.3]}, r"0\.3"),
        ({"widths": []}, "at least one width"),
        ({"widths": "some"}, "'some'"),
        ({"widths": 0.5}, "list of widths"),
        ({"width": 0.5, "widths": "all"}, "not both"),
        ({"width": 2.0}, r"2\.0"),
        ({"widths": "all", "layout": "packed"}, "'packed'"),
        ({"widths": "all", "quantization": "int4"}, "'int4'"),
        (
            {"widths": "all", "layout": "sliced", "fold_batch_norm": True},
            "fold_batch_norm",
        ),
    ],
)
def test_bad_arguments_write_nothing(model, tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        export.export_tflite(model, tmp_path / "out" / "m.tflite", **kwargs)
    assert os.listdir(tmp_path) == []


def fake_conversion(monkeypatch, flatbuffer, convert=None):
    class FakeConverter:
        optimizations = []

        def convert(self):
            return flatbuffer if convert is None else convert()

    monkeypatch.setattr(
        tf.lite.TFLiteConverter,
        "from_saved_model",
        staticmethod(lambda path: FakeConverter()),
    )


def test_an_existing_file_is_refused_unless_overwrite(
    model, tmp_path, monkeypatch
):
    fake_conversion(monkeypatch, b"new")
    target = tmp_path / "m.tflite"
    target.write_bytes(b"mine")
    with pytest.raises(FileExistsError, match=re.escape(str(target))):
        export.export_tflite(model, target, widths="all")
    assert os.listdir(tmp_path) == ["m.tflite"]
    assert target.read_bytes() == b"mine"
    export.export_tflite(model, target, widths="all", overwrite=True)
    assert os.listdir(tmp_path) == ["m.tflite"]
    assert target.read_bytes() == b"new"


def test_a_failed_conversion_leaves_nothing(model, tmp_path, monkeypatch):
    def fail():
        raise RuntimeError("converter failed")

    fake_conversion(monkeypatch, None, convert=fail)
    target = tmp_path / "out" / "m.tflite"
    with pytest.raises(RuntimeError, match="converter failed"):
        export.export_tflite(model, target, widths="all")
    assert os.listdir(tmp_path) == []


KILLED_EXPORT = textwrap.dedent(
    """
    import os
    import signal
    import sys

    import keras
    import tensorflow as tf

    import keras_slimmable as ks
    from keras_slimmable import export


    class Killed:
        optimizations = []

        def convert(self):
            os.kill(os.getpid(), signal.SIGKILL)


    tf.lite.TFLiteConverter.from_saved_model = staticmethod(
        lambda path: Killed()
    )
    inputs = keras.Input((8, 8, 3))
    x = ks.SlimmableConv2D((4, 8), 3, name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = ks.SlimmableDense(3, name="logits")(x)
    model = ks.SlimmableModel(inputs, outputs, widths=(0.5, 1.0))
    export.export_tflite(model, sys.argv[1], widths="all", overwrite=True)
    """
)


@pytest.mark.slow
def test_killed_during_conversion_keeps_the_old_file(
    model, tmp_path, monkeypatch
):
    """SIGKILL while converting: the old file stays whole; the next export
    removes the scratch SavedModel the killed one left."""
    target = tmp_path / "m.tflite"
    target.write_bytes(b"old")
    script = tmp_path.parent / f"{tmp_path.name}_killed.py"
    script.write_text(KILLED_EXPORT)
    result = subprocess.run(
        [sys.executable, str(script), str(target)],
        capture_output=True,
        timeout=300,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    assert target.read_bytes() == b"old"
    leftovers = [name for name in os.listdir(tmp_path) if name != "m.tflite"]
    assert len(leftovers) == 1 and ".scratch-" in leftovers[0], leftovers
    fake_conversion(monkeypatch, b"new")
    export.export_tflite(model, target, widths="all", overwrite=True)
    assert os.listdir(tmp_path) == ["m.tflite"]
    assert target.read_bytes() == b"new"


class DenseWithoutPlainEquivalent(ks.SlimmableDense):
    """A slimmable layer of one's own that does not say what it becomes."""

    def plain_equivalent(self, inputs, width, **kwargs):
        return ks.layers.SlimmableLayer.plain_equivalent(
            self, inputs, width, **kwargs
        )


def test_sliced_layout_exports_a_layer_without_plain_equivalent(tmp_path):
    inputs = keras.Input((SIZE, SIZE, 3))
    x = ks.SlimmableConv2D((4, 8), 3, strides=4, name="conv")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = DenseWithoutPlainEquivalent(CLASSES, name="custom")(x)
    custom = ks.SlimmableModel(inputs, outputs, widths=(0.5, 1.0))
    with pytest.raises(NotImplementedError, match="plain_equivalent"):
        export.export_tflite(custom, tmp_path / "m.tflite", widths="all")
    assert os.listdir(tmp_path) == []
    path = export.export_tflite(
        custom, tmp_path / "m.tflite", widths="all", layout="sliced"
    )
    x = images(2, seed=4)
    for width in (0.5, 1.0):
        output = run_signature(path, export.signature_name(width), x)
        np.testing.assert_allclose(
            output, expected(custom, x, width), atol=FLOAT32_TOLERANCE
        )
