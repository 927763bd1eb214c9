"""The zoo: the reference slimmable architectures, keras.applications-style.

```python
model = keras_slimmable.zoo.s_mobilenet_v1(weights="s_mobilenet_v1.pt")
model = keras_slimmable.zoo.create_model("s_resnet50", classes=10)
keras_slimmable.zoo.list_models()
```

The builders follow keras.applications (`input_tensor`,
`classifier_activation`, inputs of at least 32x32 pixels), but output
logits by default; `preprocess_input` and `decode_predictions` are
keras.applications' for these models, with the ImageNet class names
shipped in the package.

One module holds one architecture: its builder, the key map of its
reference checkpoints, its weights manifest and its recipes, declared as
one `keras_slimmable.zoo.registry.Architecture` (see that module for what
adding an architecture takes). The names below are imported on first use
(PEP 562), so that `python -m keras_slimmable.zoo.convert --help` answers
without importing Keras or TensorFlow.
"""

import importlib

# Public name -> the module that defines it.
_EXPORTS = {
    "Architecture": "keras_slimmable.zoo.registry",
    "autoslim_mnasnet": "keras_slimmable.zoo.autoslim.mnasnet",
    "autoslim_mobilenet_v1": "keras_slimmable.zoo.autoslim.mobilenet_v1",
    "autoslim_mobilenet_v2": "keras_slimmable.zoo.autoslim.mobilenet_v2",
    "autoslim_resnet50": "keras_slimmable.zoo.autoslim.resnet50",
    "autoslim_switch": "keras_slimmable.zoo.autoslim",
    "us_mobilenet_v1": "keras_slimmable.zoo.universal.mobilenet_v1",
    "us_mobilenet_v2": "keras_slimmable.zoo.universal.mobilenet_v2",
    "create_model": "keras_slimmable.zoo.registry",
    "decode_predictions": "keras_slimmable.zoo.imagenet_utils",
    "get_architecture": "keras_slimmable.zoo.registry",
    "list_models": "keras_slimmable.zoo.registry",
    "load_reference_checkpoint": "keras_slimmable.zoo.weights",
    "preprocess_input": "keras_slimmable.zoo.imagenet_utils",
    "s_mobilenet_v1": "keras_slimmable.zoo.mobilenet_v1",
    "s_mobilenet_v2": "keras_slimmable.zoo.mobilenet_v2",
    "s_resnet": "keras_slimmable.zoo.resnet",
    "s_resnet50": "keras_slimmable.zoo.resnet",
    "s_resnet101": "keras_slimmable.zoo.resnet",
    "s_resnet152": "keras_slimmable.zoo.resnet",
    "s_shufflenet": "keras_slimmable.zoo.shufflenet",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    module_name = _EXPORTS.get(name)
    if module_name is None:
        if name.startswith("__"):
            raise AttributeError(name)
        # The submodules (`keras_slimmable.zoo.registry`, ...), as the
        # eager package offered them.
        try:
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{name}":
                raise
            raise AttributeError(
                f"module 'keras_slimmable.zoo' has no attribute {name!r}"
            ) from None
    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
