"""The export command line's int8 (a folder of calibration images) and
`--model_file` (a trained `.keras` model)."""

import os
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_slimmable as ks
from keras_slimmable import export

pytest.importorskip("ai_edge_litert")
from ai_edge_litert.interpreter import Interpreter  # noqa: E402
from PIL import Image  # noqa: E402

SIZE = 16
PROGRAM = "python -m keras_slimmable.export: error:"


def _model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = ks.SlimmableConv2D((8, 16), 3, padding=1, use_bias=False)(inputs)
    x = ks.SwitchableBatchNormalization((8, 16))(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = ks.SlimmableDense(5)(x)
    model = ks.SlimmableModel(inputs, outputs, widths=(0.5, 1.0))
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, ks.SwitchableBatchNormalization):
            for batch_norm in layer.batch_norms:
                n = batch_norm.gamma.shape[0]
                batch_norm.set_weights(
                    [
                        rng.uniform(0.5, 1.5, n),
                        rng.normal(0, 0.2, n),
                        rng.normal(0, 0.2, n),
                        rng.uniform(0.5, 1.5, n),
                    ]
                )
    return model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A saved `.keras` model and a folder of two classes of PNG images."""
    root = tmp_path_factory.mktemp("cli_int8")
    model = _model()
    model.save(root / "model.keras")
    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (root / "train" / name).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / "train" / name / f"{i}.png")
    return root, model


def run_cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "keras_slimmable.export", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ),
    )


@pytest.mark.slow
def test_int8_file_from_model_file_and_image_folder(files, tmp_path):
    root, model = files
    out = tmp_path / "int8.tflite"
    result = run_cli(
        f"--model_file={root / 'model.keras'}",
        "--format=tflite",
        "--widths=all",
        "--quantization=int8",
        f"--calibration_dir={root / 'train'}",
        "--calibration_images=8",
        f"--calibration_resize_size={SIZE}",
        f"--out={out}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Calibrating int8 on 8 images of" in result.stdout
    assert "Exported model.keras at widths 0.5, 1.0, int8" in result.stdout
    # The same file as the library writes from the same 8 images, read as
    # `image_folder` reads them (the first 8, every class in proportion):
    # the command line calibrated on those, preprocessed that way.
    from keras_slimmable.data import image_folder

    dataset, _ = image_folder(
        root / "train", training=False, image_size=SIZE, resize_size=SIZE
    )
    images = np.concatenate([x.numpy() for x, _ in dataset])[:8]
    expected = export.export_tflite(
        model,
        tmp_path / "library.tflite",
        widths="all",
        quantization="int8",
        representative_dataset=images,
    )
    assert out.read_bytes() == expected.read_bytes()
    interpreter = Interpreter(model_path=str(out))
    assert set(interpreter.get_signature_list()) == {
        "serving_default",
        "serving_w0_5",
        "serving_w1_0",
    }
    kinds = {d["dtype"] for d in interpreter.get_tensor_details()}
    assert np.int8 in kinds


BAD_FLAGS = [
    (
        ["--quantization=int8"],
        "--quantization int8 needs --calibration_dir",
    ),
    (
        ["--quantization=int8", "--calibration_dir=/no/such/folder"],
        "No folder at --calibration_dir=/no/such/folder",
    ),
    (
        ["--quantization=int8", "--calibration_dir=/tmp"]
        + ["--calibration_images=0"],
        "--calibration_images must be at least 1. Received: "
        "--calibration_images=0",
    ),
    (
        ["--quantization=float16", "--calibration_images=10"],
        "--calibration_images calibrates --quantization int8 only. "
        "Received: --quantization=float16, --calibration_images=10",
    ),
    (
        ["--calibration_dir=/tmp"],
        "--calibration_dir calibrates --quantization int8 only",
    ),
    (
        ["--model_file=MODEL", "--model=s_mobilenet_v1"],
        "--model does not go with --model_file",
    ),
    (
        ["--model_file=MODEL", "--image_size=32"],
        "--image_size does not go with --model_file",
    ),
    (
        ["--model_file=/no/model.keras"],
        "No file at --model_file=/no/model.keras",
    ),
    (["--model_file=IMAGE"], "--model_file must be a .keras file"),
    (
        [],
        "--model (a zoo model name) or --model_file (a .keras file) is "
        "required",
    ),
]

CHECK_FLAGS = """
import json, sys
from keras_slimmable import _cli
from keras_slimmable.export import __main__ as cli
messages = []
for args in json.loads(sys.argv[1]):
    cli.FLAGS.unparse_flags()
    cli.FLAGS(["export", "--format=tflite", "--out=x.tflite", *args])
    try:
        cli._check_flags()
        messages.append(None)
    except _cli.CommandLineError as error:
        messages.append(str(error))
print(json.dumps(messages))
"""


def test_bad_int8_and_model_file_flags_are_refused(files):
    # Every case in one process (each command line imports TensorFlow).
    import json

    root, _ = files
    cases = [
        [
            a.replace("MODEL", str(root / "model.keras")).replace(
                "IMAGE", str(root / "train" / "cat" / "0.png")
            )
            for a in args
        ]
        for args, _ in BAD_FLAGS
    ]
    for args in cases:
        if args and not any(a.startswith("--model") for a in args):
            args += ["--model=s_mobilenet_v1", "--weights=none"]
    result = subprocess.run(
        [sys.executable, "-c", CHECK_FLAGS, json.dumps(cases)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    messages = json.loads(result.stdout.splitlines()[-1])
    for (args, expected), message in zip(BAD_FLAGS, messages):
        assert message is not None and expected in message, (args, message)


def test_int8_without_calibration_dir_is_one_error_line(tmp_path):
    out = tmp_path / "x.tflite"
    result = run_cli(
        "--model=s_mobilenet_v1",
        "--weights=none",
        "--format=tflite",
        "--quantization=int8",
        f"--out={out}",
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{PROGRAM} --quantization int8 needs --calibration_dir" in (
        result.stderr
    )
    assert not out.exists()
