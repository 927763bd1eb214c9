"""Helpers for `SlimmableLayer.plain_equivalent`: building plain Keras
layers that hold copies of one width's weights."""

import contextlib

import keras

from keras_slimmable.layers.base import weight_arguments_config


def numpy_value(variable):
    """A variable's value as a NumPy array."""
    return keras.ops.convert_to_numpy(variable)


@contextlib.contextmanager
def zero_initialized(*layers):
    """Builds `layers` with zeros instead of their initializers.

    Their weights are overwritten with copies right after, and drawing the
    random initial values would take most of the time `materialize` takes.
    The layers keep their own initializers (and configs) afterwards.
    """
    saved = [
        (layer, name, value)
        for layer in layers
        if layer is not None
        for name, value in list(vars(layer).items())
        if name.endswith("_initializer") and value is not None
    ]
    zeros = keras.initializers.Zeros()
    for layer, name, _ in saved:
        setattr(layer, name, zeros)
    try:
        yield
    finally:
        for layer, name, value in saved:
            setattr(layer, name, value)


def chain(*layers):
    """`apply(x)` calling `layers` (`None`s skipped) one after the other."""
    layers = [layer for layer in layers if layer is not None]

    def apply(x, *unused_args, **unused_kwargs):
        for layer in layers:
            x = layer(x)
        return x

    return apply


def build_and_copy(apply, inputs, weights):
    """Calls `apply` on `inputs` (building its layers with zeros), then
    copies `weights` into them.

    Args:
        apply: the function `chain` returns (or one like it).
        inputs: the symbolic input.
        weights: a list of `(layer, [arrays])`, for `layer.set_weights`.

    Returns:
        `(outputs, apply)`, as `plain_equivalent` returns.
    """
    with zero_initialized(*(layer for layer, _ in weights)):
        outputs = apply(inputs)
    for layer, values in weights:
        layer.set_weights(values)
    return outputs, apply


def conv_arguments(layer):
    """The arguments of a Keras convolution that a slimmable convolution
    carries over: kernel size, strides, dilation, dtype, activation, bias
    and the kernel and bias initializers, regularizers and constraints."""
    arguments = dict(
        kernel_size=layer.kernel_size,
        strides=layer.strides,
        dilation_rate=layer.dilation_rate,
        dtype=layer.dtype_policy,
        trainable=layer.trainable,
    )
    arguments.update(weight_arguments_config(layer))
    return arguments


def padding_layers(layer):
    """A convolution's padding as plain Keras: `(ZeroPadding2D or None,
    the padding of the convolution op)`. Symmetric padding that `"same"`
    reproduces (stride 1, odd kernel) needs no separate layer."""
    padding = layer._op_padding  # within the layers package
    if isinstance(padding, str):
        return None, padding
    if not any(any(p) for p in layer.padding):
        return None, "valid"
    pad = keras.layers.ZeroPadding2D(
        padding=layer.padding, name=f"{layer.name}_pad"
    )
    return pad, "valid"
