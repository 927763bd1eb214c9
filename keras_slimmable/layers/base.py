"""What every slimmable layer shares: the protocol, channel configurations,
padding.

`SlimmableLayer` is the protocol. Everything outside `layers/` that needs
to know what a slimmable layer does at a width asks the layer through it:
`materialize` (its plain Keras equivalent), `profile` (its MACs and
parameters), `recipes.apply_weight_decay` (its decayed kernels), the
reference-checkpoint loader (what each weight is) and the model (its
channel configuration). A new slimmable layer type subclasses
`SlimmableLayer` in one file; nothing else changes.
"""

import collections
import contextlib
import contextvars
import numbers

import keras
import numpy as np
from keras import ops

from keras_slimmable.widths import _float32
from keras_slimmable.widths import active_width
from keras_slimmable.widths import make_divisible


class CheckpointWeight(
    collections.namedtuple(
        "CheckpointWeight", ["variable", "kind", "width_index"]
    )
):
    """One weight of a layer, as a checkpoint converter needs to know it.

    Attributes:
        variable: the Keras variable.
        kind: what it holds, in Keras's layout: `"conv_kernel"`
            `(kh, kw, in, out)`, `"depthwise_kernel"` `(kh, kw, channels,
            1)`, `"dense_kernel"` `(in, out)`, `"bias"`, or a batch norm's
            `"gamma"`, `"beta"`, `"moving_mean"`, `"moving_variance"`.
        width_index: for a weight private to one width (a switchable batch
            norm's), that width's position in the model's list; `None` for
            a weight the widths share.
    """

    __slots__ = ()


def zero_counts():
    """The counts of a layer that computes and holds nothing countable."""
    return {"macs": 0, "conv_fc_params": 0, "bn_affine_params": 0}


class SlimmableLayer(keras.layers.Layer):
    """The protocol every slimmable layer implements.

    A slimmable layer holds its weights at its widest and, inside a
    `width_scope`, computes what the active width needs (read it with
    `channels_at`). Beyond `call`, it answers these questions about itself
    at a width (an `ActiveWidth`), so that no other module needs to know
    its type:

    - `channel_config()`: its channel configuration, per argument;
    - `plain_equivalent(inputs, width, **kwargs)`: plain Keras layers that
      compute it at that width, for `materialize`;
    - `count(input_shape, output_shape, width)`: its MACs and parameters in
      one call, for `profile`;
    - `decayed_kernels()`: the kernels weight decay applies to, for
      `recipes.apply_weight_decay`;
    - `checkpoint_weights()`: what each of its weights is, for loading
      reference checkpoints.

    The defaults describe a layer without weights that has no plain
    equivalent; a layer overrides what applies to it. A layer with weights
    that does not say how to count them or what they are gets an error
    naming the method to implement, never a silent zero.
    """

    def channel_config(self):
        """The layer's channel configuration: a dict from argument name to
        an int, a per-width tuple or a channel rule (empty if the layer
        reads its channel count from its input)."""
        return {}

    def plain_equivalent(self, inputs, width, **kwargs):
        """Plain Keras layers computing this layer at `width`.

        Args:
            inputs: the symbolic input (a `keras.KerasTensor`) at `width`.
            width: the `ActiveWidth`.
            **kwargs: the keyword arguments of the layer's call (e.g.
                `training`).

        Returns:
            `(outputs, apply)`: the outputs on `inputs`, and a function
            `apply(x, **kwargs)` that calls the same plain layers again
            (for a layer called more than once). The plain layers hold
            copies of this width's weights and keep this layer's name (added
            layers get the name plus a suffix).
        """
        raise NotImplementedError(
            f"Layer '{self.name}' of type {type(self).__name__} does not say "
            "what its plain Keras equivalent is: implement "
            "`plain_equivalent` (see `SlimmableLayer`)."
        )

    def count(self, input_shape, output_shape, width):
        """MACs and parameters of one call at `width`.

        Args:
            input_shape: the shape of the call's (first) input, batch axis
                included.
            output_shape: the shape of its (first) output.
            width: the `ActiveWidth`.

        Returns:
            A dict with `"macs"` (per example), `"conv_fc_params"` (the
            active kernel and bias elements) and `"bn_affine_params"` (the
            active gamma and beta elements). See `keras_slimmable.profile`
            for the conventions.
        """
        if self.weights:
            raise self._missing("count")
        return zero_counts()

    def decayed_kernels(self):
        """`(regularizer attribute, kernel attribute)` pairs of the kernels
        that weight decay applies to (the reference's convention: conv and
        dense kernels, not depthwise ones)."""
        return []

    def checkpoint_weights(self):
        """A `CheckpointWeight` for each weight of the layer."""
        if self.weights:
            raise self._missing("checkpoint_weights")
        return []

    def _missing(self, method):
        return NotImplementedError(
            f"Layer '{self.name}' of type {type(self).__name__} has weights "
            f"but does not implement `{method}` (see `SlimmableLayer`)."
        )


def _positive_int(value):
    """`value` as an int if it is an integer (numpy's too) > 0, else None."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, numbers.Integral) and value > 0:
        return int(value)
    return None


@keras.saving.register_keras_serializable(package="keras_slimmable")
class ScaledChannels:
    """A channel rule: the channel count of a layer at any width.

    At width `w` a layer with this rule uses
    `round(full * w / ratio) * ratio` channels, `round` being the
    MobileNets' `make_divisible` (multiples of 8) or truncation (`"int"`).
    A layer given a rule instead of a per-width tuple runs at any width in
    `(0, max_width]`, not only at the widths of a list: the rule of the
    universally slimmable networks (Yu & Huang, ICCV 2019), where `ratio`
    is the expansion factor of MobileNet v2's expanded layers.

    Args:
        full: the channel count at width 1.0.
        rounding: `"make_divisible"` or `"int"`. Defaults to
            `"make_divisible"`.
        ratio: the count is a multiple of it. Defaults to `1`.
        max_width: the widest width; the layer's weights have the channel
            count of this width. Defaults to `1.0`.

    Example:

    >>> rule = ScaledChannels(1024)
    >>> rule(0.5), rule(0.4), rule.max_channels
    (512, 408, 1024)
    """

    def __init__(self, full, rounding="make_divisible", ratio=1, max_width=1.0):
        if _positive_int(full) is None:
            raise ValueError(
                f"`full` must be a positive int. Received: full={full!r}"
            )
        if rounding not in ("make_divisible", "int"):
            raise ValueError(
                "`rounding` must be 'make_divisible' or 'int'. Received: "
                f"rounding={rounding!r}"
            )
        if _positive_int(ratio) is None:
            raise ValueError(
                f"`ratio` must be a positive int. Received: ratio={ratio!r}"
            )
        if (
            isinstance(max_width, bool)
            or not isinstance(max_width, numbers.Real)
            or not max_width > 0
        ):
            raise ValueError(
                "`max_width` must be a positive number. Received: "
                f"max_width={max_width!r}"
            )
        self.full = int(full)
        self.rounding = rounding
        self.ratio = int(ratio)
        self.max_width = float(max_width)
        self.max_channels = self._count(self.max_width)

    def count_tensor(self, width):
        """The channel count at `width`, a float32 scalar tensor (a width
        drawn at run time), as an int32 tensor.

        Computed in float32: it can differ from the rule's double-precision
        count only where `full * width / ratio` lies within float32
        round-off of a rounding boundary (a measure-zero set of widths for
        a width drawn at random).
        """
        width = ops.minimum(ops.cast(width, "float32"), self.max_width)
        scaled = ops.divide(ops.multiply(width, float(self.full)), self.ratio)
        if self.rounding == "int":
            count = ops.maximum(ops.floor(scaled), 1.0)
        else:
            count = ops.maximum(ops.floor((scaled + 4.0) / 8.0) * 8.0, 1.0)
            count = ops.where(count < 0.9 * scaled, count + 8.0, count)
        return ops.cast(count * self.ratio, "int32")

    def _count(self, width):
        # Double precision, in this order (full * width, then / ratio): the
        # reference's arithmetic, which float32 would change at some widths.
        scaled = self.full * width / self.ratio
        if self.rounding == "int":
            return max(1, int(scaled)) * self.ratio
        return make_divisible(scaled) * self.ratio

    def __call__(self, width):
        """The channel count at `width` (a positive number)."""
        if (
            isinstance(width, bool)
            or not isinstance(width, numbers.Real)
            or not 0 < width
            # At float32 precision, as widths are matched elsewhere.
            or _float32(width) > _float32(self.max_width)
        ):
            raise ValueError(
                f"{self!r} covers widths in (0, {self.max_width}]. "
                f"Received: width={width!r}"
            )
        count = self._count(min(float(width), self.max_width))
        if count > self.max_channels:
            raise ValueError(
                f"{self!r} rounds width {width!r} up to {count} channels, "
                f"more than the {self.max_channels} it has at its widest."
            )
        return count

    def get_config(self):
        return {
            "full": self.full,
            "rounding": self.rounding,
            "ratio": self.ratio,
            "max_width": self.max_width,
        }

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return (
            isinstance(other, ScaledChannels)
            and other.get_config() == self.get_config()
        )

    def __hash__(self):
        return hash(tuple(sorted(self.get_config().items())))

    def __repr__(self):
        arguments = ", ".join(
            f"{k}={v!r}" for k, v in self.get_config().items()
        )
        return f"ScaledChannels({arguments})"


def standardize_channels(value, name, allow_int=True, allow_rule=True):
    """Returns a channel configuration in its standard form.

    A channel configuration says how many channels a layer uses at a width:
    an int (the same at every width), a tuple with one count per width of
    the model (ascending), or a channel rule (`ScaledChannels`), which
    computes the count from the width itself.

    Args:
        value: an int, a sequence of positive ints, a `ScaledChannels` or
            its serialized config.
        name: the argument name, for error messages.
        allow_int: whether a single int is accepted.
        allow_rule: whether a channel rule is accepted.
    """
    if isinstance(value, dict) and "class_name" in value:
        value = keras.saving.deserialize_keras_object(value)
    if isinstance(value, ScaledChannels):
        if not allow_rule:
            raise ValueError(
                f"`{name}` must list one channel count per width (this "
                f"layer keeps state per listed width). Received: "
                f"{name}={value!r}"
            )
        return value
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
            f"`{name}` must be an int or a sequence of ints (one per "
            f"width), or a channel rule such as ScaledChannels. "
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


def channels_at(value, layer_name, width=None):
    """The channel count of a channel configuration at a width.

    Args:
        value: an int, a per-width tuple or a channel rule (see
            `standardize_channels`).
        layer_name: for error messages.
        width: an `ActiveWidth`; defaults to the active one. Outside any
            `width_scope` the layer runs at its widest.
    """
    if isinstance(value, int):
        return value
    active = active_width() if width is None else width
    if active is None:
        return max_channels(value)
    if active.channels is not None:
        count = dict(active.channels).get(layer_name)
        if count is not None:
            if not 1 <= count <= max_channels(value):
                raise ValueError(
                    f"Layer '{layer_name}' has at most "
                    f"{max_channels(value)} channels; the channel "
                    f"configuration asks for {count}."
                )
            return count
        if active.width is None and active.index is None:
            raise ValueError(
                f"The channel configuration gives no count for layer "
                f"'{layer_name}' (and no width for the layers it does not "
                "name)."
            )
    if active.sampled is not None:
        # Computed at the widest; `mask_sampled` zeroes the rest.
        if not isinstance(value, ScaledChannels):
            raise ValueError(
                f"Layer '{layer_name}' lists one channel count per width "
                f"({value}), so it cannot run at a width drawn at random: "
                "give it a channel rule, e.g. ScaledChannels(full_channels)."
            )
        return value.max_channels
    if isinstance(value, ScaledChannels):
        if active.width is None:
            raise ValueError(
                f"Layer '{layer_name}' computes its channels from the width "
                f"({value!r}), but only the width's position {active.index} "
                "is known: pass the width to `width_scope(index, width=...)`."
            )
        return value(active.width)
    if active.index is None:
        raise ValueError(
            f"Layer '{layer_name}' lists one channel count per width of its "
            f"model ({len(value)} widths), and width {active.width} is not "
            "one of them. A layer runs at widths outside a list with a "
            "channel rule, e.g. ScaledChannels(full_channels)."
        )
    if active.index >= len(value):
        raise ValueError(
            f"Layer '{layer_name}' has {len(value)} widths, but width index "
            f"{active.index} is active. Every slimmable layer of a model "
            "needs one channel count per width of the model."
        )
    return value[active.index]


def mask_sampled(outputs, value):
    """`outputs` with the channels beyond the active sampled width's count
    zeroed (see `ActiveWidth.sampled`); unchanged for any other width.

    Zeroed channels behave as absent ones for everything downstream: a
    convolution adds nothing from them, so the channels kept equal those
    of the narrower network, and so do the gradients of the shared weights
    (zero for the weights of the zeroed channels).
    """
    active = active_width()
    if active is None or active.sampled is None:
        return outputs
    if not isinstance(value, ScaledChannels):
        return outputs  # an int: the same count at every width
    count = value.count_tensor(active.sampled)
    mask = ops.arange(value.max_channels, dtype="int32") < count
    return ops.multiply(outputs, ops.cast(mask, outputs.dtype))


def max_channels(value):
    """The channel count at the widest width."""
    if isinstance(value, int):
        return value
    if isinstance(value, ScaledChannels):
        return value.max_channels
    return value[-1]


def config_channels(value):
    """A channel configuration as it is stored in `get_config`."""
    if isinstance(value, int):
        return value
    if isinstance(value, ScaledChannels):
        return keras.saving.serialize_keras_object(value)
    return list(value)


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
