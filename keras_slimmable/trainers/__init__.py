"""The backend-specific half of `SlimmableModel`: training and compiling.

Keras picks its trainer by backend; so do we. Only TensorFlow is
implemented; JAX and PyTorch are on the roadmap.
"""

import keras

if keras.backend.backend() == "tensorflow":
    from keras_slimmable.trainers.tensorflow import (
        TensorFlowSlimmableTrainer as SlimmableTrainer,
    )
    from keras_slimmable.trainers.weight_cache import WeightCache
else:

    class WeightCache:
        """Eager inference slices in the graph on other backends."""

        enabled = False

    class SlimmableTrainer:
        """Inference only: slimmable training needs the TensorFlow backend."""

        def _run_at_width(self, inputs, index, training=None, mask=None):
            return self._forward(inputs, index, training=training, mask=mask)

        def train_step(self, data):
            raise NotImplementedError(
                "Slimmable training is implemented for the TensorFlow "
                f"backend only. Received: backend={keras.backend.backend()!r}"
            )

        test_step = train_step


__all__ = ["SlimmableTrainer", "WeightCache"]
