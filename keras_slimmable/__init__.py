"""keras-slimmable: slimmable neural networks for Keras 3.

One network that runs at several widths, switchable at run time
(Yu et al., Slimmable Neural Networks, ICLR 2019).

The layers, the model and the recipes' schedules are imported with the
package, so that `keras.saving.load_model` finds them once `keras_slimmable`
is imported. Everything else (the zoo, data pipelines, export) is imported on
first use (PEP 562). The command lines defer even those: nothing is imported
while Python locates a `python -m keras_slimmable.<tool>`, nor when a script
sets `KERAS_SLIMMABLE_DEFER_IMPORTS=1` before importing the package (as the
examples do); `keras_slimmable._cli` then imports them, quietly, after
parsing the flags, so `--help` answers without importing TensorFlow.
"""

import importlib
import os
import sys

__version__ = "0.1.0.dev0"

# Public name -> the module that defines it (a module's own name for the
# subpackages).
_EXPORTS = {
    "callbacks": "keras_slimmable.callbacks",
    "data": "keras_slimmable.data",
    "detection": "keras_slimmable.detection",
    "distribute": "keras_slimmable.distribute",
    "export": "keras_slimmable.export",
    "layers": "keras_slimmable.layers",
    "recipes": "keras_slimmable.recipes",
    "sandwich": "keras_slimmable.sandwich",
    "search": "keras_slimmable.search",
    "zoo": "keras_slimmable.zoo",
    "load_reference_checkpoint": "keras_slimmable.zoo",
    "ScaledChannels": "keras_slimmable.layers",
    "SlimmableConv2D": "keras_slimmable.layers",
    "SlimmableDense": "keras_slimmable.layers",
    "SlimmableDepthwiseConv2D": "keras_slimmable.layers",
    "SlimmableGroupedConv2D": "keras_slimmable.layers",
    "SlimmableLayer": "keras_slimmable.layers",
    "SwitchableBatchNormalization": "keras_slimmable.layers",
    "UniversalBatchNormalization": "keras_slimmable.layers",
    "SandwichRule": "keras_slimmable.sandwich",
    "SlimmableModel": "keras_slimmable.model",
    "measure_latency": "keras_slimmable.profiling",
    "profile": "keras_slimmable.profiling",
    "select_width": "keras_slimmable.profiling",
    "ActiveWidth": "keras_slimmable.widths",
    "active_width": "keras_slimmable.widths",
    "make_divisible": "keras_slimmable.widths",
    "scale_channels": "keras_slimmable.widths",
    "width_scope": "keras_slimmable.widths",
}

__all__ = sorted(_EXPORTS)


def _import_serializables():
    """Imports (and so registers with Keras) every serializable class."""
    from keras_slimmable import layers  # noqa: F401
    from keras_slimmable import model  # noqa: F401
    from keras_slimmable import recipes  # noqa: F401
    from keras_slimmable import sandwich  # noqa: F401


# `sys.argv[0]` is "-m" exactly while `python -m` locates its module.
if (
    sys.argv[:1] != ["-m"]
    and os.environ.get("KERAS_SLIMMABLE_DEFER_IMPORTS") != "1"
):
    _import_serializables()


def __getattr__(name):
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(
            f"module 'keras_slimmable' has no attribute {name!r}"
        )
    module = importlib.import_module(module_name)
    value = (
        module if module_name.endswith("." + name) else getattr(module, name)
    )
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
