"""Reading the reference implementation's PyTorch checkpoints.

`load_reference_checkpoint(model, path, key_map)` loads a reference
checkpoint into a model by the key map it is given. Checkpoints are read
without torch and without executing any pickled code. This package knows
no architecture and imports nothing of the zoo: the key maps live with the
zoo's architectures, and `keras_slimmable.load_reference_checkpoint(model,
path)` (`keras_slimmable.zoo.load_reference_checkpoint`) finds a zoo
model's by its name.

`python -m keras_slimmable.convert --model NAME CHECKPOINT` converts a
reference checkpoint into this package's weights cache; it names
architectures, so its code lives beside the zoo
(`keras_slimmable/zoo/convert.py`, see `__main__.py`).

The names below are imported on first use (PEP 562), so that the command
line's `--help` answers without importing Keras or TensorFlow.
"""

import importlib

# Public name -> the module that defines it.
_EXPORTS = {
    "CheckpointError": "keras_slimmable.convert.torch_checkpoint",
    "CheckpointFormatError": "keras_slimmable.convert.torch_checkpoint",
    "CheckpointMismatchError": "keras_slimmable.convert.reference",
    "UnsafeCheckpointError": "keras_slimmable.convert.torch_checkpoint",
    "load_reference_checkpoint": "keras_slimmable.convert.reference",
    "load_state_dict": "keras_slimmable.convert.torch_checkpoint",
    "read_torch_checkpoint": "keras_slimmable.convert.torch_checkpoint",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(
            f"module 'keras_slimmable.convert' has no attribute {name!r}"
        )
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
