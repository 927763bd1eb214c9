"""Slimmable 2D convolutions: plain, grouped and depthwise.

Each layer keeps its variables at full width and, at call time, uses the
leading input and output channels of the active width (for the grouped
convolution, a prefix within each group). Channels last only.
"""

import math

import keras
import numpy as np
from keras import ops

from keras_slimmable.layers import plain
from keras_slimmable.layers.base import CheckpointWeight
from keras_slimmable.layers.base import SlimmableLayer
from keras_slimmable.layers.base import active_weights
from keras_slimmable.layers.base import channels_at
from keras_slimmable.layers.base import config_channels
from keras_slimmable.layers.base import config_padding
from keras_slimmable.layers.base import mask_sampled
from keras_slimmable.layers.base import max_channels
from keras_slimmable.layers.base import normalize_tuple
from keras_slimmable.layers.base import pad_inputs
from keras_slimmable.layers.base import same_if_equivalent
from keras_slimmable.layers.base import standardize_channels
from keras_slimmable.layers.base import standardize_padding
from keras_slimmable.layers.base import weight_arguments_config
from keras_slimmable.layers.base import weight_prefix
from keras_slimmable.widths import active_width


class _SlimmableConvolution(SlimmableLayer):
    """Arguments, bias, activation and config shared by the convolutions."""

    def __init__(
        self,
        kernel_size,
        strides=1,
        padding="valid",
        dilation_rate=1,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.kernel_size = normalize_tuple(kernel_size, "kernel_size")
        self.strides = normalize_tuple(strides, "strides")
        self.dilation_rate = normalize_tuple(dilation_rate, "dilation_rate")
        self.padding = standardize_padding(padding)
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)

    @property
    def _op_padding(self):
        """The padding to run with: `"same"` where it is equivalent."""
        return same_if_equivalent(
            self.padding, self.kernel_size, self.strides, self.dilation_rate
        )

    def _add_kernel(self, shape, name="kernel"):
        return self.add_weight(
            name=name,
            shape=shape,
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )

    def _add_bias(self, size):
        if not self.use_bias:
            return None
        return self.add_weight(
            name="bias",
            shape=(size,),
            initializer=self.bias_initializer,
            regularizer=self.bias_regularizer,
            constraint=self.bias_constraint,
        )

    def _check_input_channels(self, channels, expected_max):
        if channels is None or channels > expected_max:
            raise ValueError(
                f"Layer '{self.name}' was built for at most {expected_max} "
                f"input channels. Received an input with {channels}."
            )

    def _bias_prefix(self, channels):
        """The bias of the first `channels` outputs (None without bias)."""
        if self.bias is None:
            return None
        return weight_prefix(self, "bias", self.bias, (channels,))

    def _output_channels(self, input_channels):
        """The output channels at the active width."""
        return channels_at(self.filters, self.name)

    def compute_output_shape(self, input_shape):
        """The output shape at the active width (the widest outside any
        width scope), as `keras.layers.Conv2D` computes it."""
        spatial = []
        padding = self.padding
        for axis, size in enumerate(input_shape[1:-1]):
            if size is None:
                spatial.append(None)
                continue
            k, s, d = (
                self.kernel_size[axis],
                self.strides[axis],
                self.dilation_rate[axis],
            )
            if padding == "same":
                spatial.append((size + s - 1) // s)
                continue
            if padding != "valid":
                size += sum(padding[axis])
            spatial.append((size - d * (k - 1) - 1) // s + 1)
        return (
            (input_shape[0],)
            + tuple(spatial)
            + (self._output_channels(input_shape[-1]),)
        )

    def _kernel_shape(self, input_channels, width):
        """The shape of the kernel one call uses, `(kh, kw, in per group,
        out)` (its size times the output positions is the call's MACs),
        and the call's output channels."""
        out = channels_at(self.filters, self.name, width)
        return self.kernel_size + (input_channels, out), out

    def count(self, input_shape, output_shape, width):
        kernel_shape, out = self._kernel_shape(input_shape[-1], width)
        kernel = math.prod(kernel_shape)
        bias = out if self.use_bias else 0
        return {
            "macs": math.prod(output_shape[1:-1]) * kernel,
            "conv_fc_params": kernel + bias,
            "bn_affine_params": 0,
        }

    def decayed_kernels(self):
        return [("kernel_regularizer", "kernel")]

    def checkpoint_weights(self):
        weights = [CheckpointWeight(self.kernel, "conv_kernel", None)]
        if self.bias is not None:
            weights.append(CheckpointWeight(self.bias, "bias", None))
        return weights

    def _finish(self, outputs, bias):
        if bias is not None:
            outputs = ops.add(outputs, bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": config_padding(self.padding),
                "dilation_rate": self.dilation_rate,
            }
        )
        config.update(weight_arguments_config(self))
        return config


@keras.saving.register_keras_serializable(package="keras_slimmable")
class SlimmableConv2D(_SlimmableConvolution):
    """A 2D convolution whose output channels depend on the active width.

    The kernel is held at full width, `(kh, kw, max_in, max(filters))`. At
    a narrower width the layer convolves its (narrower) input with the
    leading `in` input and `filters[i]` output channels of that kernel.

    Args:
        filters: the output channels, one int per width of the model
            (ascending), or a single int when the output does not change
            with width (only the input is sliced).
        kernel_size: an int or a pair.
        strides: an int or a pair. Defaults to `1`.
        padding: `"valid"`, `"same"`, or an int / pair for PyTorch's
            symmetric zero padding. Defaults to `"valid"`.
        dilation_rate: an int or a pair. Defaults to `1`.
        activation: applied to the output. Defaults to `None`.
        use_bias: whether to add a bias. Defaults to `True`.
        kernel_initializer, bias_initializer, kernel_regularizer,
        bias_regularizer, kernel_constraint, bias_constraint: as for
            `keras.layers.Conv2D`.

    Example:

    >>> layer = SlimmableConv2D(filters=(8, 16), kernel_size=3, padding=1)
    >>> y = layer(np.zeros((1, 32, 32, 3)))  # the widest: 16 channels
    >>> with keras_slimmable.width_scope(0):
    ...     y = layer(np.zeros((1, 32, 32, 3)))  # 8 channels
    """

    def __init__(self, filters, kernel_size, **kwargs):
        super().__init__(kernel_size, **kwargs)
        self.filters = standardize_channels(filters, "filters")

    def build(self, input_shape):
        input_channels = input_shape[-1]
        self._check_input_channels(input_channels, float("inf"))
        self.kernel = self._add_kernel(
            self.kernel_size + (input_channels, max_channels(self.filters))
        )
        self.bias = self._add_bias(max_channels(self.filters))

    def call(self, inputs):
        channels_in = inputs.shape[-1]
        self._check_input_channels(channels_in, self.kernel.shape[2])
        channels_out = channels_at(self.filters, self.name)
        kernel = weight_prefix(
            self,
            "kernel",
            self.kernel,
            self.kernel_size + (channels_in, channels_out),
        )
        inputs, padding = pad_inputs(inputs, self._op_padding)
        outputs = ops.conv(
            inputs,
            kernel,
            strides=self.strides,
            padding=padding,
            dilation_rate=self.dilation_rate,
        )
        outputs = self._finish(outputs, self._bias_prefix(channels_out))
        return mask_sampled(outputs, self.filters)

    def channel_config(self):
        return {"filters": self.filters}

    def plain_equivalent(self, inputs, width, **kwargs):
        channels_in = inputs.shape[-1]
        channels_out = channels_at(self.filters, self.name, width)
        pad, padding = plain.padding_layers(self)
        conv = keras.layers.Conv2D(
            channels_out,
            padding=padding,
            name=self.name,
            **plain.conv_arguments(self),
        )
        weights = [
            plain.numpy_value(self.kernel)[:, :, :channels_in, :channels_out]
        ]
        if self.use_bias:
            weights.append(plain.numpy_value(self.bias)[:channels_out])
        return plain.build_and_copy(
            plain.chain(pad, conv), inputs, [(conv, weights)]
        )

    def get_config(self):
        config = super().get_config()
        config["filters"] = config_channels(self.filters)
        return config


@keras.saving.register_keras_serializable(package="keras_slimmable")
class SlimmableGroupedConv2D(_SlimmableConvolution):
    """A grouped convolution whose active channels are a prefix per group.

    This is ShuffleNet's pointwise group convolution in the reference
    layout: `groups` separate convolutions. With `split_inputs=True` the
    input at the active width is cut into `groups` equal contiguous parts
    and part `k` feeds group `k`; with `split_inputs=False` every group
    reads the whole input. Group `k` produces the first
    `filters[i] // groups` of its `max(filters) // groups` output channels,
    and the groups' outputs are concatenated. So at a narrower width the
    active channels are a prefix *within each group*, not a prefix of the
    whole tensor.

    The kernel is `(kh, kw, max_in // groups, max(filters))` with the groups
    side by side on the last axis (`(kh, kw, max_in, max(filters))` when
    `split_inputs=False`). The groups run as separate convolutions: a
    grouped convolution op would go through XLA on the TensorFlow backend,
    which is slow on CPU.

    Args:
        filters: the total output channels (all groups), one int per width,
            each divisible by `groups`; or a single int.
        kernel_size: an int or a pair.
        groups: the number of groups.
        split_inputs: whether the input is split among the groups (`True`)
            or read whole by every group (`False`). Defaults to `True`.
        **kwargs: as for `SlimmableConv2D`.
    """

    def __init__(self, filters, kernel_size, groups, split_inputs=True, **kw):
        super().__init__(kernel_size, **kw)
        if not isinstance(groups, int) or groups < 1:
            raise ValueError(
                f"`groups` must be a positive int. Received: groups={groups!r}"
            )
        self.filters = standardize_channels(filters, "filters")
        self.groups = groups
        self.split_inputs = bool(split_inputs)
        if isinstance(self.filters, int):
            per_width = (self.filters,)
        elif isinstance(self.filters, tuple):
            per_width = self.filters
        else:  # A channel rule: its widest count here, each call's later.
            per_width = (self.filters.max_channels,)
        if any(f % groups for f in per_width):
            raise ValueError(
                "Every entry of `filters` must be divisible by "
                f"groups={groups}. Received: filters={filters!r}"
            )

    def build(self, input_shape):
        input_channels = input_shape[-1]
        self._check_input_channels(input_channels, float("inf"))
        if self.split_inputs:
            self._check_divisible(input_channels)
            kernel_in = input_channels // self.groups
        else:
            kernel_in = input_channels
        self.kernel = self._add_kernel(
            self.kernel_size + (kernel_in, max_channels(self.filters))
        )
        self.bias = self._add_bias(max_channels(self.filters))

    def _check_divisible(self, channels):
        if channels % self.groups:
            raise ValueError(
                f"Layer '{self.name}' splits its input into {self.groups} "
                f"groups, so the input channels must be divisible by "
                f"{self.groups}. Received an input with {channels} channels."
            )

    def _group_columns(self, channels_out):
        """The kernel columns of every group's active prefix."""
        if channels_out % self.groups:
            raise ValueError(
                f"Layer '{self.name}' has {self.groups} groups, but the "
                f"active width needs {channels_out} output channels, which "
                "are not divisible by it."
            )
        group_size = max_channels(self.filters) // self.groups
        active = channels_out // self.groups
        return [
            (k * group_size, k * group_size + active)
            for k in range(self.groups)
        ]

    def call(self, inputs):
        active = active_width()
        if active is not None and active.sampled is not None:
            raise ValueError(
                f"Layer '{self.name}': a grouped convolution keeps a prefix "
                "of every group, which a width drawn at random (the "
                "sandwich rule) does not support."
            )
        channels_in = inputs.shape[-1]
        channels_out = channels_at(self.filters, self.name)
        columns = self._group_columns(channels_out)
        inputs, padding = pad_inputs(inputs, self._op_padding)
        conv_args = dict(
            strides=self.strides,
            padding=padding,
            dilation_rate=self.dilation_rate,
        )
        if self.split_inputs:
            self._check_input_channels(
                channels_in, self.groups * self.kernel.shape[2]
            )
            self._check_divisible(channels_in)
            part = channels_in // self.groups
            kernels = active_weights(
                self,
                ("kernel", part, channels_out),
                lambda k: [k[:, :, :part, a:b] for a, b in columns],
                self.kernel,
            )
            outputs = [
                ops.conv(
                    inputs[..., k * part : (k + 1) * part], kernel, **conv_args
                )
                for k, kernel in enumerate(kernels)
            ]
            outputs = ops.concatenate(outputs, axis=-1)
        else:
            self._check_input_channels(channels_in, self.kernel.shape[2])
            kernel = active_weights(
                self,
                ("kernel", channels_in, channels_out),
                lambda k: ops.concatenate(
                    [k[:, :, :channels_in, a:b] for a, b in columns], axis=-1
                ),
                self.kernel,
            )
            outputs = ops.conv(inputs, kernel, **conv_args)
        bias = None
        if self.bias is not None:
            bias = active_weights(
                self,
                ("bias", channels_out),
                lambda b: ops.concatenate([b[a:c] for a, c in columns]),
                self.bias,
            )
        return self._finish(outputs, bias)

    def channel_config(self):
        return {"filters": self.filters}

    def _kernel_shape(self, input_channels, width):
        out = channels_at(self.filters, self.name, width)
        if self.split_inputs:
            input_channels //= self.groups
        return self.kernel_size + (input_channels, out), out

    def plain_equivalent(self, inputs, width, **kwargs):
        """With `split_inputs=True`: `groups` separate `Conv2D`s
        (`<name>_group_<k>`) on contiguous slices of the input and a
        `Concatenate` (`<name>_concat`), plus an `Activation` if the layer
        has one (a grouped `Conv2D(groups=g)` would run through XLA on the
        TensorFlow backend, which is very slow on CPU). With
        `split_inputs=False`: one `Conv2D` whose kernel gathers every
        group's active columns."""
        channels_in = inputs.shape[-1]
        channels_out = channels_at(self.filters, self.name, width)
        columns = self._group_columns(channels_out)
        kernel = plain.numpy_value(self.kernel)
        bias = plain.numpy_value(self.bias) if self.use_bias else None
        pad, padding = plain.padding_layers(self)
        arguments = plain.conv_arguments(self)
        if not self.split_inputs:
            conv = keras.layers.Conv2D(
                channels_out, padding=padding, name=self.name, **arguments
            )
            weights = [
                np.concatenate(
                    [kernel[:, :, :channels_in, a:b] for a, b in columns],
                    axis=-1,
                )
            ]
            if bias is not None:
                weights.append(np.concatenate([bias[a:b] for a, b in columns]))
            return plain.build_and_copy(
                plain.chain(pad, conv), inputs, [(conv, weights)]
            )

        groups = self.groups
        part = channels_in // groups
        activation = arguments.pop("activation")
        convs = [
            keras.layers.Conv2D(
                channels_out // groups,
                padding=padding,
                name=f"{self.name}_group_{k}",
                **arguments,
            )
            for k in range(groups)
        ]
        concat = keras.layers.Concatenate(
            axis=-1, name=f"{self.name}_concat", dtype=self.dtype_policy
        )
        final = None
        if activation != "linear":
            final = keras.layers.Activation(
                activation, name=f"{self.name}_activation"
            )

        def apply(x, *unused_args, **unused_kwargs):
            if pad is not None:
                x = pad(x)
            y = concat(
                [
                    conv(x[..., k * part : (k + 1) * part])
                    for k, conv in enumerate(convs)
                ]
            )
            return y if final is None else final(y)

        weights = []
        for conv, (a, b) in zip(convs, columns):
            values = [kernel[:, :, :part, a:b]]
            if bias is not None:
                values.append(bias[a:b])
            weights.append((conv, values))
        return plain.build_and_copy(apply, inputs, weights)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "filters": config_channels(self.filters),
                "groups": self.groups,
                "split_inputs": self.split_inputs,
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_slimmable")
class SlimmableDepthwiseConv2D(_SlimmableConvolution):
    """A depthwise convolution over the leading channels of the active width.

    The depthwise kernel is `(kh, kw, max_channels, 1)`; at a narrower
    width the layer uses the kernel of its input's channels, a prefix.

    Args:
        kernel_size: an int or a pair.
        channels: optional, the input (= output) channels per width. When
            given, an input of another channel count at the active width is
            an error, which catches a mis-wired network early.
        **kwargs: as for `SlimmableConv2D`, with `depthwise_initializer`,
            `depthwise_regularizer` and `depthwise_constraint` for the
            kernel as in `keras.layers.DepthwiseConv2D`.
    """

    def __init__(
        self,
        kernel_size,
        channels=None,
        depthwise_initializer="glorot_uniform",
        depthwise_regularizer=None,
        depthwise_constraint=None,
        **kwargs,
    ):
        super().__init__(
            kernel_size,
            kernel_initializer=depthwise_initializer,
            kernel_regularizer=depthwise_regularizer,
            kernel_constraint=depthwise_constraint,
            **kwargs,
        )
        self.channels = (
            None
            if channels is None
            else standardize_channels(channels, "channels", allow_int=False)
        )

    def build(self, input_shape):
        input_channels = input_shape[-1]
        self._check_input_channels(input_channels, float("inf"))
        widest = None if self.channels is None else max_channels(self.channels)
        if self.channels is not None and input_channels != widest:
            raise ValueError(
                f"Layer '{self.name}' expects {widest} input "
                f"channels at its widest width (channels={self.channels}). "
                f"It was built with input shape {input_shape}."
            )
        self.kernel = self._add_kernel(
            self.kernel_size + (input_channels, 1), name="depthwise_kernel"
        )
        self.bias = self._add_bias(input_channels)

    def call(self, inputs):
        channels = inputs.shape[-1]
        self._check_input_channels(channels, self.kernel.shape[2])
        if self.channels is not None:
            expected = channels_at(self.channels, self.name)
            if channels != expected:
                raise ValueError(
                    f"Layer '{self.name}' expects {expected} channels at the "
                    f"active width (channels={self.channels}). Received an "
                    f"input with {channels}."
                )
        kernel = weight_prefix(
            self, "kernel", self.kernel, self.kernel_size + (channels, 1)
        )
        inputs, padding = pad_inputs(inputs, self._op_padding)
        outputs = ops.depthwise_conv(
            inputs,
            kernel,
            strides=self.strides,
            padding=padding,
            dilation_rate=self.dilation_rate,
        )
        outputs = self._finish(outputs, self._bias_prefix(channels))
        if self.channels is None:
            active = active_width()
            if self.bias is not None and active and active.sampled is not None:
                raise ValueError(
                    f"Layer '{self.name}' has a bias but no `channels`: at a "
                    "width drawn at random it cannot tell which channels "
                    "are absent. Give it channels=ScaledChannels(...)."
                )
            return outputs
        return mask_sampled(outputs, self.channels)

    def _output_channels(self, input_channels):
        return input_channels

    def channel_config(self):
        return {} if self.channels is None else {"channels": self.channels}

    def _kernel_shape(self, input_channels, width):
        return self.kernel_size + (input_channels, 1), input_channels

    def decayed_kernels(self):
        # The reference decays no depthwise kernel (one input channel per
        # group).
        return []

    def checkpoint_weights(self):
        weights = [CheckpointWeight(self.kernel, "depthwise_kernel", None)]
        if self.bias is not None:
            weights.append(CheckpointWeight(self.bias, "bias", None))
        return weights

    def plain_equivalent(self, inputs, width, **kwargs):
        channels = inputs.shape[-1]
        pad, padding = plain.padding_layers(self)
        arguments = plain.conv_arguments(self)
        for name in ("initializer", "regularizer", "constraint"):
            arguments[f"depthwise_{name}"] = arguments.pop(f"kernel_{name}")
        conv = keras.layers.DepthwiseConv2D(
            depth_multiplier=1, padding=padding, name=self.name, **arguments
        )
        weights = [plain.numpy_value(self.kernel)[:, :, :channels, :]]
        if self.use_bias:
            weights.append(plain.numpy_value(self.bias)[:channels])
        return plain.build_and_copy(
            plain.chain(pad, conv), inputs, [(conv, weights)]
        )

    def get_config(self):
        config = super().get_config()
        for name in ("kernel_initializer", "kernel_regularizer"):
            config[name.replace("kernel", "depthwise")] = config.pop(name)
        config["depthwise_constraint"] = config.pop("kernel_constraint")
        config["channels"] = (
            None if self.channels is None else config_channels(self.channels)
        )
        return config
