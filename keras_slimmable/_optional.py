"""Imports of what only some parts of the package need, with clear errors."""

import importlib


def require_tensorflow(feature):
    """Imports TensorFlow for `feature`, or says how to install it.

    The layers, the model, the zoo, `profile`, `materialize` and reference
    checkpoints work on every Keras backend without TensorFlow; tf.data
    pipelines and SavedModel / TF Serving / TFLite export need it.
    """
    try:
        return importlib.import_module("tensorflow")
    except ImportError as error:
        raise ImportError(
            f"{feature} needs TensorFlow, which is not installed. Install it "
            "with `pip install keras-slimmable[tensorflow]` (or `pip install "
            "tensorflow`). The layers, models, zoo and checkpoint loading "
            "work without it, on the JAX and PyTorch backends of Keras."
        ) from error


def require_keras_hub(feature):
    """Imports keras-hub for `feature`, or says which extra installs it."""
    try:
        return importlib.import_module("keras_hub")
    except ImportError as error:
        raise ImportError(
            f"{feature} needs keras-hub, which is not installed. Install it "
            "with `pip install keras-slimmable[detection]` (or `pip install "
            "keras-hub`). The rest of the package works without it."
        ) from error
