"""The intended arrows between the package's parts (issue 11, item 8).

`keras_slimmable.convert` reads checkpoints and applies the key map it is
given: it imports nothing of the zoo, neither when imported nor when it
loads a checkpoint; the command that names architectures lives beside the
zoo. `keras_slimmable.data` needs no model. Each check runs in a fresh
interpreter and reads `sys.modules`.
"""

import ast
import pathlib
import subprocess
import sys

import pytest

import keras_slimmable

PACKAGE = pathlib.Path(keras_slimmable.__file__).parent


def _run(code):
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()


def _imported_modules(path):
    """Every module `path` imports, at any depth of its code."""
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names += [f"{node.module}.{alias.name}" for alias in node.names]
    return names


def test_no_convert_library_module_names_the_zoo():
    # `__main__.py` is the entry point of the command beside the zoo.
    library = sorted(
        path
        for path in (PACKAGE / "convert").rglob("*.py")
        if path.name != "__main__.py"
    )
    assert {path.name for path in library} >= {
        "__init__.py",
        "reference.py",
        "torch_checkpoint.py",
    }
    for path in library:
        zoo = [
            name
            for name in _imported_modules(path)
            if name.startswith("keras_slimmable.zoo")
            or name == "keras_slimmable"
        ]
        assert zoo == [], (path, zoo)


@pytest.mark.slow
def test_convert_imports_and_loads_without_the_zoo():
    lines = _run(
        """
import sys
import keras_slimmable.convert
import keras_slimmable.convert.reference as reference
import keras_slimmable.convert.torch_checkpoint
print(sorted(m for m in sys.modules if m.startswith("keras_slimmable.zoo")))

import keras
import numpy as np
from keras_slimmable import SlimmableDense, SlimmableModel

inputs = keras.Input((4,))
outputs = SlimmableDense((2, 3), name="dense")(inputs)
model = SlimmableModel(inputs, outputs, widths=(0.5, 1.0))
state = {"fc.weight": np.ones((3, 4), "float32"), "fc.bias": np.ones(3)}
reference.load_reference_checkpoint(model, state, {"dense": "fc"})
print(float(np.asarray(model.get_layer("dense").kernel).sum()))
print(sorted(m for m in sys.modules if m.startswith("keras_slimmable.zoo")))
"""
    )
    assert lines[-3:] == ["[]", "12.0", "[]"]


@pytest.mark.slow
def test_data_does_not_import_the_zoo():
    lines = _run(
        """
import sys
import keras_slimmable.data
from keras_slimmable.data import augment, pipelines
print(sorted(m for m in sys.modules if m.startswith("keras_slimmable.zoo")))
print("tensorflow" in sys.modules)
"""
    )
    # TensorFlow was imported (data's pipelines are tf.data): the check
    # above ran with the real imports, not an empty shell.
    assert lines[-2:] == ["[]", "True"]


@pytest.mark.slow
def test_the_zoo_imports_its_architectures_on_first_use():
    lines = _run(
        """
import sys
sys.argv = ["-m"]  # as while `python -m` locates its module
import keras_slimmable.zoo as zoo
import keras_slimmable.zoo.convert
print("keras" in sys.modules, "tensorflow" in sys.modules)
sys.argv = ["x"]
print(zoo.list_models())
print(zoo.s_mobilenet_v1 is zoo.get_architecture("s_mobilenet_v1").builder)
"""
    )
    assert lines[-3] == "False False"
    assert "s_mobilenet_v1" in lines[-2] and "s_resnet50" in lines[-2]
    assert lines[-1] == "True"


def test_the_package_loads_reference_checkpoints_by_architecture_name():
    import keras_slimmable as ks

    # The top-level name finds a zoo model's key map by its name; the
    # convert module's needs the key map.
    assert ks.load_reference_checkpoint is ks.zoo.load_reference_checkpoint
