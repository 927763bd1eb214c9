"""benchmarks/on_device_accuracy.py in --quick mode on a tiny model: the
float32 file predicts what the Keras model predicts, at every width."""

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_slimmable as ks

pytest.importorskip("ai_edge_litert")
from PIL import Image  # noqa: E402

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = SCRIPT / "on_device_accuracy.py"
SIZE = 16


def _model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = ks.SlimmableConv2D((8, 16), 3, padding=1, use_bias=False)(inputs)
    x = ks.SwitchableBatchNormalization((8, 16))(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = ks.SlimmableDense(3)(x)
    return ks.SlimmableModel(inputs, outputs, widths=(0.5, 1.0))


def _folder(root, seed):
    rng = np.random.default_rng(seed)
    for name in ("a", "b", "c"):
        (root / name).mkdir(parents=True)
        for i in range(8):
            pixels = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def run(*args):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_quick_accuracy_per_format(tmp_path):
    _model().save(tmp_path / "model.keras")
    train = _folder(tmp_path / "train", seed=0)
    test = _folder(tmp_path / "test", seed=1)
    out = tmp_path / "result.json"
    result = run(
        f"--model_file={tmp_path / 'model.keras'}",
        f"--train_dir={train}",
        f"--test_dir={test}",
        "--quick",
        "--test_images=18",
        "--calibration_images=6",
        f"--json_out={out}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(out.read_text())
    assert found["test_images"] == 18
    assert found["calibration_images"] == 6
    for width in ("0.5", "1.0"):
        # float32 in LiteRT: the Keras model's predictions, image by image.
        assert found["agreement"]["float32"][width] == 1.0
        assert found["top1"]["float32"][width] == found["top1"]["keras"][width]
        for fmt in ("float16", "dynamic_range", "int8"):
            assert 0.0 <= found["top1"][fmt][width] <= 1.0
        assert found["latency_ms"]["int8"][width] > 0
    assert "| 0.5 | " in result.stdout and "| 1.0 | " in result.stdout


def test_calibrating_on_the_test_folder_is_refused(tmp_path):
    _model().save(tmp_path / "model.keras")
    test = _folder(tmp_path / "test", seed=1)
    result = run(
        f"--model_file={tmp_path / 'model.keras'}",
        f"--train_dir={test}",
        f"--test_dir={test}",
    )
    assert result.returncode == 2
    assert "never on the test images" in result.stderr
