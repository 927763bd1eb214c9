"""The README's code example runs as written."""

import os
import re
from pathlib import Path

import numpy as np

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks(text):
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_in_code_example_runs(tmp_path, monkeypatch):
    block = python_blocks(README.read_text())[0]
    assert "SlimmableModel" in block and "set_width" in block
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    namespace = {
        "images": rng.normal(size=(8, 32, 32, 3)).astype("float32"),
        "labels": rng.integers(0, 10, size=(8,)),
    }
    exec(compile(block, str(README), "exec"), namespace)
    model = namespace["model"]
    assert model.width == 0.5
    assert os.path.exists(tmp_path / "slimmable.keras")


def test_any_width_example_runs():
    (block,) = [
        b for b in python_blocks(README.read_text()) if "sandwich_rule" in b
    ]
    import keras

    import keras_slimmable as ks

    rng = np.random.default_rng(0)
    namespace = {
        "keras": keras,
        "ks": ks,
        "images": rng.normal(size=(16, 32, 32, 3)).astype("float32"),
        "labels": rng.integers(0, 10, size=(16,)),
    }
    exec(compile(block, str(README), "exec"), namespace)
    assert namespace["model"].calibrated_widths == (0.25, 0.4, 0.6, 1.0)


def test_detection_example_runs():
    import pytest

    pytest.importorskip("keras_hub")
    (block,) = [
        b for b in python_blocks(README.read_text()) if "retinanet(" in b
    ]
    import keras_slimmable as ks

    rng = np.random.default_rng(0)
    boxes = np.array([[[10, 20, 60, 70], [70, 70, 120, 110]]] * 4, "float32")
    namespace = {
        "ks": ks,
        "images": rng.random((4, 128, 128, 3)).astype("float32"),
        "boxes": boxes,
        "labels": np.array([[1, 7]] * 4, "int32"),
    }
    exec(compile(block, str(README), "exec"), namespace)
    detector = namespace["detector"]
    assert detector.widths == (0.35, 0.5, 0.75, 1.0)
    assert "w0.35_loss" in detector.history.history
    detections = detector.detect(namespace["images"], width=0.35)
    assert detections["boxes"].shape == (4, 100, 4)
