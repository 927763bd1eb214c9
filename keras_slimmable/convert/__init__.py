"""Reading the reference implementation's PyTorch checkpoints.

`load_reference_checkpoint(model, path)` maps a reference checkpoint onto a
zoo model; `python -m keras_slimmable.convert --model NAME CHECKPOINT`
converts one into this package's weights cache. Checkpoints are read
without torch and without executing any pickled code.
"""

from keras_slimmable.convert.reference import CheckpointMismatchError
from keras_slimmable.convert.reference import load_reference_checkpoint
from keras_slimmable.convert.torch_checkpoint import CheckpointError
from keras_slimmable.convert.torch_checkpoint import CheckpointFormatError
from keras_slimmable.convert.torch_checkpoint import UnsafeCheckpointError
from keras_slimmable.convert.torch_checkpoint import load_state_dict
from keras_slimmable.convert.torch_checkpoint import read_torch_checkpoint

__all__ = [
    "CheckpointError",
    "CheckpointFormatError",
    "CheckpointMismatchError",
    "UnsafeCheckpointError",
    "load_reference_checkpoint",
    "load_state_dict",
    "read_torch_checkpoint",
]
