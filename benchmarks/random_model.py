"""Random weights that time like trained ones (no flags: any benchmark
imports it)."""


def calibrate(model, size):
    """Random weights with batch norm statistics measured at every width.

    A fresh model's batch norms are identities, so its activations shrink
    layer after layer into float32 subnormals, which x86 computes about
    ten times slower: timing such a model measures the subnormals. Here
    every batch norm's moving statistics are those of a batch of random
    images at its width (momentum 0), as in a trained model.
    """
    import keras
    import numpy as np

    from keras_slimmable import SwitchableBatchNormalization

    batch_norms = []
    for layer in model._flatten_layers():
        if isinstance(layer, SwitchableBatchNormalization):
            batch_norms.extend(layer.batch_norms)
        elif isinstance(layer, keras.layers.BatchNormalization):
            batch_norms.append(layer)
    images = np.random.default_rng(0).normal(size=(4, size, size, 3))
    for batch_norm in batch_norms:
        batch_norm.momentum = 0.0
    for width in model.widths:
        model(images.astype("float32"), width=width, training=True)
    for batch_norm in batch_norms:
        batch_norm.momentum = 0.99
