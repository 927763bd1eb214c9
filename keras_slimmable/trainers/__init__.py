"""The backend-specific half of `SlimmableModel`: training and compiling.

Keras picks its trainer by backend; so do we. `base.py` holds what the
backends share; `tensorflow.py`, `jax.py` and `torch.py` only what each
backend does its own way. The eager weight-slice cache (`weight_cache.py`)
is a TensorFlow-only optimisation.
"""

import keras

_BACKEND = keras.backend.backend()

if _BACKEND == "tensorflow":
    from keras_slimmable.trainers.tensorflow import (
        TensorFlowSlimmableTrainer as SlimmableTrainer,
    )
    from keras_slimmable.trainers.weight_cache import WeightCache
else:
    if _BACKEND == "jax":
        from keras_slimmable.trainers.jax import (
            JaxSlimmableTrainer as SlimmableTrainer,
        )
    elif _BACKEND == "torch":
        from keras_slimmable.trainers.torch import (
            TorchSlimmableTrainer as SlimmableTrainer,
        )
    else:
        raise ImportError(
            "keras_slimmable supports the tensorflow, jax and torch "
            f"backends of Keras. Received: KERAS_BACKEND={_BACKEND!r}"
        )

    class WeightCache:
        """The TensorFlow-only eager weight-slice cache, absent here."""

        enabled = False

        def release(self):
            pass


__all__ = ["SlimmableTrainer", "WeightCache"]
