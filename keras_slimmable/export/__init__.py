"""Deploying slimmable models: SavedModels for TF Serving, TFLite for phones.

- `export_saved_model`: one SavedModel, one serving signature per width
  (`serving_w0_25`, ..., and `serving_default`, the widest), the variables
  stored once.
- `export_for_serving`: TF Serving's layout, one served model per width,
  each a narrow SavedModel holding only that width's weights, plus the
  `models.config` that `tensorflow_model_server --model_config_file` reads.
- `export_tflite`: a TFLite (LiteRT) file of one width, or one file with
  a signature per width (`widths=`).

Every export is written under a hidden name beside its target and renamed
into place at the end, so an interrupted export never leaves a half-written
model where a server would load it; the next export into the same folder
removes what a killed one left. The exports are TensorFlow-only (SavedModel
and TFLite are TensorFlow formats). TensorFlow is imported on first use of
an export function, so importing this package (and the command line's
`--help`) does not.
"""

import importlib

from keras_slimmable.export._names import INPUT_NAME
from keras_slimmable.export._names import QUANTIZATIONS
from keras_slimmable.export._names import served_model_name
from keras_slimmable.export._names import signature_name

# Names defined in `_export`, which imports TensorFlow (PEP 562).
_LAZY = ("export_for_serving", "export_saved_model", "export_tflite")

__all__ = [
    "INPUT_NAME",
    "QUANTIZATIONS",
    "export_for_serving",
    "export_saved_model",
    "export_tflite",
    "served_model_name",
    "signature_name",
]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(
            f"module 'keras_slimmable.export' has no attribute {name!r}"
        )
    value = getattr(
        importlib.import_module("keras_slimmable.export._export"), name
    )
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
