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
