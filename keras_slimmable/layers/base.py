"""What every slimmable layer shares: per-width channel lists and padding."""

import contextlib
import contextvars
import numbers

import keras
import numpy as np
from keras import ops

from keras_slimmable.widths import active_width_index


def _positive_int(value):
    """`value` as an int if it is an integer (numpy's too) > 0, else None."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, numbers.Integral) and value > 0:
        return int(value)
    return None


def standardize_channels(value, name, allow_int=True):
    """Returns `value` as an int (same at every width) or a tuple of ints.

    Args:
        value: an int, or a sequence with one positive int per width.
        name: the argument name, for error messages.
        allow_int: whether a single int is accepted.
    """
    if isinstance(value, numbers.Integral) and not isinstance(
        value, (bool, np.bool_)
    ):
        if not allow_int:
            raise ValueError(
                f"`{name}` must list one channel count per width. "
                f"Received: {name}={value!r}"
            )
        if _positive_int(value) is None:
            raise ValueError(
                f"`{name}` must be positive. Received: {name}={value!r}"
            )
        return int(value)
    if isinstance(value, str) or not hasattr(value, "__iter__"):
        raise ValueError(
            f"`{name}` must be an int or a sequence of ints, one per width. "
            f"Received: {name}={value!r}"
        )
    result = tuple(_positive_int(v) for v in value)
    if not result or None in result:
        raise ValueError(
            f"`{name}` must hold positive ints, one per width. "
            f"Received: {name}={value!r}"
        )
    if any(a > b for a, b in zip(result, result[1:])):
        raise ValueError(
            f"`{name}` must not decrease with width (a narrower width uses a "
            f"prefix of the wider one's channels). Received: {name}={value!r}"
        )
    return result


# The weight cache of the model whose eager inference is being traced, if
# any (see `keras_slimmable/trainers/weight_cache.py`).
_WEIGHT_CACHE = contextvars.ContextVar(
    "keras_slimmable_weight_cache", default=None
)


@contextlib.contextmanager
def weight_cache_scope(recorder):
    """Within it, `active_weights` asks `recorder.lookup` for the weights."""
    token = _WEIGHT_CACHE.set(recorder)
    try:
        yield recorder
    finally:
        _WEIGHT_CACHE.reset(token)


def active_weights(layer, key, compute, *variables):
    """`compute(*variables)`: the part of `layer`'s weights a width uses.

    Layers slice their shared kernels through this function. Training and
    graph-mode calls slice in the graph, so that gradients reach the shared
    variables; a model's eager inference instead reads a cached copy of
    the slice (`recorder.lookup`), refreshed when the variables change.

    Args:
        layer: the layer owning the variables.
        key: hashable; identifies the slice within the layer (for example
            `("kernel", channels_in, channels_out)`).
        compute: a function of the variables' values returning the slice.
        *variables: the layer's variables `compute` reads.
    """
    recorder = _WEIGHT_CACHE.get()
    if recorder is None:
        return compute(*variables)
    return recorder.lookup(layer, key, compute, variables)


def weight_prefix(layer, name, variable, shape):
    """The leading block of `variable` of this `shape`, through
    `active_weights`: the part of a shared weight a narrower width uses
    (`variable` itself where `shape` is all of it).

    Args:
        layer: the layer owning `variable`.
        name: the weight's name within the layer, e.g. `"kernel"`.
        variable: the shared weight.
        shape: the shape of the block, one size per axis.
    """
    shape = tuple(shape)
    if shape == tuple(variable.shape):
        return variable
    index = tuple(slice(0, size) for size in shape)
    return active_weights(layer, (name,) + shape, lambda v: v[index], variable)


def channels_at(value, layer_name, index=None):
    """The entry of a per-width channel list for the active width.

    Args:
        value: an int (the same at every width) or a tuple per width.
        layer_name: for error messages.
        index: the width index; defaults to the active one (the widest
            outside any `width_scope`).
    """
    if isinstance(value, int):
        return value
    if index is None:
        index = active_width_index()
    if index is None:
        return value[-1]
    if index >= len(value):
        raise ValueError(
            f"Layer '{layer_name}' has {len(value)} widths, but width index "
            f"{index} is active. Every slimmable layer of a model needs one "
            "channel count per width of the model."
        )
    return value[index]


def max_channels(value):
    """The channel count at the widest width."""
    return value if isinstance(value, int) else value[-1]


def config_channels(value):
    """A per-width channel list as it is stored in `get_config`."""
    return value if isinstance(value, int) else list(value)


def standardize_padding(padding):
    """Returns `"valid"`, `"same"` or symmetric `((top, bottom), (l, r))`.

    An int `p` or a pair `(ph, pw)` means PyTorch's symmetric zero padding:
    `p` rows and columns on every side, then a `"valid"` convolution. A
    stride-2 Keras `"same"` pads only bottom and right, which differs.
    """
    if isinstance(padding, str):
        lowered = padding.lower()
        if lowered in ("valid", "same"):
            return lowered
    elif isinstance(padding, int) and not isinstance(padding, bool):
        if padding >= 0:
            return ((padding, padding), (padding, padding))
    elif isinstance(padding, (tuple, list)) and len(padding) == 2:
        if all(isinstance(p, int) and p >= 0 for p in padding):
            return ((padding[0], padding[0]), (padding[1], padding[1]))
        if all(
            isinstance(p, (tuple, list))
            and len(p) == 2
            and all(isinstance(q, int) and q >= 0 for q in p)
            for p in padding
        ):
            return tuple(tuple(p) for p in padding)
    raise ValueError(
        "`padding` must be 'valid', 'same', a non-negative int p (PyTorch's "
        "symmetric padding), a pair (ph, pw) or ((top, bottom), (left, "
        f"right)). Received: padding={padding!r}"
    )


def config_padding(padding):
    """A standardized padding as it is stored in `get_config`."""
    if isinstance(padding, str):
        return padding
    return [list(p) for p in padding]


def same_if_equivalent(padding, kernel_size, strides, dilation_rate):
    """Returns `"same"` where explicit padding is exactly what it does.

    At stride 1, `"same"` pads `d * (k - 1)` rows and columns split as
    evenly as possible, so PyTorch's symmetric `(k - 1) / 2` padding of an
    odd kernel is `"same"`, and the convolution needs no separate pad op.
    Any other padding is returned unchanged.
    """
    if isinstance(padding, str) or tuple(strides) != (1, 1):
        return padding
    for (before, after), k, d in zip(padding, kernel_size, dilation_rate):
        total = d * (k - 1)
        if before != total // 2 or after != total - total // 2:
            return padding
    return "same"


def pad_inputs(inputs, padding):
    """Applies explicit zero padding; returns the padding left for the op."""
    if isinstance(padding, str):
        return inputs, padding
    (top, bottom), (left, right) = padding
    if top or bottom or left or right:
        inputs = ops.pad(inputs, [[0, 0], [top, bottom], [left, right], [0, 0]])
    return inputs, "valid"


def normalize_tuple(value, name):
    """`3` -> `(3, 3)`; validates a pair of positive ints."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    value = tuple(value)
    if len(value) != 2 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value
    ):
        raise ValueError(
            f"`{name}` must be a positive int or a pair of them. "
            f"Received: {name}={value!r}"
        )
    return value


def weight_arguments_config(layer):
    """The config of `activation`, `use_bias` and the kernel/bias arguments.

    Shared by the slimmable convolutions and the dense layer, which store
    these arguments under the same attribute names as Keras's own layers.
    """
    config = {
        "activation": keras.activations.serialize(layer.activation),
        "use_bias": layer.use_bias,
    }
    for part in ("kernel", "bias"):
        config[f"{part}_initializer"] = keras.initializers.serialize(
            getattr(layer, f"{part}_initializer")
        )
        config[f"{part}_regularizer"] = keras.regularizers.serialize(
            getattr(layer, f"{part}_regularizer")
        )
        config[f"{part}_constraint"] = keras.constraints.serialize(
            getattr(layer, f"{part}_constraint")
        )
    return config
