"""Materializing one width of a slimmable model as a plain Keras model.

`materialize(model, width)` rebuilds the model's functional graph at one
width from ordinary Keras layers holding only that width's weights: the
artifact to export or deploy when a single width is wanted, with no
full-width kernels and no `keras_slimmable` needed to load it.

How each layer becomes plain Keras (the layer keeps its name; added layers
get the name plus a suffix):

- `SlimmableConv2D` -> `Conv2D` with the sliced kernel; symmetric padding
  becomes `"same"` where that is equivalent (stride 1, odd kernel), else
  `ZeroPadding2D` (`<name>_pad`) and a `"valid"` convolution.
- `SlimmableGroupedConv2D` -> with `split_inputs=True`, `groups` separate
  `Conv2D`s (`<name>_group_<k>`) on contiguous slices of the input and a
  `Concatenate` (`<name>_concat`), plus an `Activation` if the layer has
  one: a grouped `Conv2D(groups=g)` would run through XLA on the TensorFlow
  backend, which is very slow on CPU. With `split_inputs=False`, one
  `Conv2D` whose kernel gathers every group's active columns.
- `SlimmableDepthwiseConv2D` -> `DepthwiseConv2D`; `SlimmableDense` ->
  `Dense`.
- `SwitchableBatchNormalization` -> `BatchNormalization` with that width's
  weights (with `shared=True`: the active prefix of the shared one).
- `ChannelShuffle` -> `Reshape`, `Permute`, `Reshape` (`<name>_split`,
  `<name>_transpose`, `<name>_merge`), which is plain Keras, when the
  spatial size is known; otherwise a copy of the `ChannelShuffle` layer.
- Every other layer or operation is cloned from its config, with its
  weights copied.

Nested functional models are inlined.
"""

import contextlib

import keras
import numpy as np

from keras_slimmable.layers import SlimmableConv2D
from keras_slimmable.layers import SlimmableDense
from keras_slimmable.layers import SlimmableDepthwiseConv2D
from keras_slimmable.layers import SlimmableGroupedConv2D
from keras_slimmable.layers import SwitchableBatchNormalization
from keras_slimmable.layers.base import channels_at
from keras_slimmable.layers.base import weight_arguments_config
from keras_slimmable.widths import width_index
from keras_slimmable.widths import width_name


def materialize(model, width):
    """Builds a plain Keras model of one width of a slimmable model.

    The result computes the same outputs as `model(x, width=width)` at
    inference, from ordinary Keras layers (`Conv2D`, `DepthwiseConv2D`,
    `Dense`, `BatchNormalization`, ...) that hold only the weights of that
    width: its `count_params()` is the width's convolution and dense
    parameters plus its batch norms (with their moving statistics). The
    weights are copied; the new model shares no variables with `model`.

    Args:
        model: a `SlimmableModel`.
        width: one of `model.widths`.

    Returns:
        A functional `keras.Model` named `<model name>_w<width>`, e.g.
        `s_mobilenet_v1_w0_5`.

    Raises:
        ValueError: if `width` is not one of `model.widths`.

    Example:

    ```python
    model = keras_slimmable.zoo.s_mobilenet_v1()
    narrow = materialize(model, 0.5)  # or model.materialize(0.5)
    narrow.export("s_mobilenet_v1_w0_5")
    ```
    """
    index = width_index(model.widths, width)
    width = model.widths[index]
    inputs = [
        keras.Input(
            batch_shape=x.shape,
            dtype=x.dtype,
            name=x._keras_history.operation.name,
        )
        for x in model.inputs
    ]
    outputs = _rebuild(model, inputs, index, {})
    return keras.Model(
        inputs=keras.tree.pack_sequence_as(model._inputs_struct, inputs),
        outputs=outputs,
        name=f"{model.name}_{width_name(width, '_')}",
    )


def _rebuild(functional, inputs, index, converted):
    """Runs `functional`'s graph on new symbolic inputs with plain layers.

    `converted` maps each original operation to the function applying its
    replacement, so an operation called several times (shared weights)
    becomes one replacement called several times.
    """

    def operation_fn(operation):
        def run(*args, **kwargs):
            key = id(operation)
            if key in converted:
                return converted[key](*args, **kwargs)
            outputs, apply = _convert(operation, args, kwargs, index, converted)
            converted[key] = apply
            return outputs

        return run

    return functional._run_through_graph(inputs, operation_fn=operation_fn)


def _convert(operation, args, kwargs, index, converted):
    """Replaces one operation; returns its outputs on `args` and a function
    that applies the replacement again."""
    for kind, converter in _CONVERTERS:
        if isinstance(operation, kind):
            return converter(operation, args, kwargs, index)
    if _is_channel_shuffle(operation) and _known_spatial(args[0]):
        return _channel_shuffle(operation, args, kwargs, index)
    if isinstance(operation, keras.Model) and hasattr(
        operation, "_run_through_graph"
    ):

        def inline(inputs, *unused_args, **unused_kwargs):
            return _rebuild(operation, inputs, index, converted)

        return inline(*args, **kwargs), inline
    return _clone(operation, args, kwargs)


def _numpy(variable):
    return keras.ops.convert_to_numpy(variable)


def _conv_arguments(layer):
    arguments = dict(
        kernel_size=layer.kernel_size,
        strides=layer.strides,
        dilation_rate=layer.dilation_rate,
        dtype=layer.dtype_policy,
        trainable=layer.trainable,
    )
    arguments.update(weight_arguments_config(layer))
    return arguments


def _padding_layers(layer):
    """The padding of a convolution: (ZeroPadding2D or None, op padding)."""
    padding = layer._op_padding  # "same" where that is equivalent
    if isinstance(padding, str):
        return None, padding
    if not any(any(p) for p in layer.padding):
        return None, "valid"
    pad = keras.layers.ZeroPadding2D(
        padding=layer.padding, name=f"{layer.name}_pad"
    )
    return pad, "valid"


@contextlib.contextmanager
def _zero_initialized(*layers):
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


def _chain(*layers):
    layers = [layer for layer in layers if layer is not None]

    def apply(x, *unused_args, **unused_kwargs):
        for layer in layers:
            x = layer(x)
        return x

    return apply


def _conv2d(layer, args, kwargs, index):
    x = args[0]
    channels_in = x.shape[-1]
    channels_out = channels_at(layer.filters, layer.name, index)
    pad, padding = _padding_layers(layer)
    conv = keras.layers.Conv2D(
        channels_out, padding=padding, name=layer.name, **_conv_arguments(layer)
    )
    weights = [_numpy(layer.kernel)[:, :, :channels_in, :channels_out]]
    if layer.use_bias:
        weights.append(_numpy(layer.bias)[:channels_out])
    apply = _chain(pad, conv)
    with _zero_initialized(conv):
        outputs = apply(x)
    conv.set_weights(weights)
    return outputs, apply


def _grouped_conv2d(layer, args, kwargs, index):
    x = args[0]
    channels_in = x.shape[-1]
    channels_out = channels_at(layer.filters, layer.name, index)
    columns = layer._group_columns(channels_out)
    kernel = _numpy(layer.kernel)
    bias = _numpy(layer.bias) if layer.use_bias else None
    pad, padding = _padding_layers(layer)
    arguments = _conv_arguments(layer)
    if not layer.split_inputs:
        conv = keras.layers.Conv2D(
            channels_out, padding=padding, name=layer.name, **arguments
        )
        weights = [
            np.concatenate(
                [kernel[:, :, :channels_in, a:b] for a, b in columns], axis=-1
            )
        ]
        if bias is not None:
            weights.append(np.concatenate([bias[a:b] for a, b in columns]))
        apply = _chain(pad, conv)
        with _zero_initialized(conv):
            outputs = apply(x)
        conv.set_weights(weights)
        return outputs, apply

    groups = layer.groups
    part = channels_in // groups
    activation = arguments.pop("activation")
    convs = [
        keras.layers.Conv2D(
            channels_out // groups,
            padding=padding,
            name=f"{layer.name}_group_{k}",
            **arguments,
        )
        for k in range(groups)
    ]
    concat = keras.layers.Concatenate(
        axis=-1, name=f"{layer.name}_concat", dtype=layer.dtype_policy
    )
    final = None
    if activation != "linear":
        final = keras.layers.Activation(
            activation, name=f"{layer.name}_activation"
        )

    def apply(x, *unused_args, **unused_kwargs):
        if pad is not None:
            x = pad(x)
        y = [
            conv(x[..., k * part : (k + 1) * part])
            for k, conv in enumerate(convs)
        ]
        y = concat(y)
        return y if final is None else final(y)

    with _zero_initialized(*convs):
        outputs = apply(x)
    for conv, (a, b) in zip(convs, columns):
        weights = [kernel[:, :, :part, a:b]]
        if bias is not None:
            weights.append(bias[a:b])
        conv.set_weights(weights)
    return outputs, apply


def _depthwise_conv2d(layer, args, kwargs, index):
    x = args[0]
    channels = x.shape[-1]
    pad, padding = _padding_layers(layer)
    arguments = _conv_arguments(layer)
    for name in ("initializer", "regularizer", "constraint"):
        arguments[f"depthwise_{name}"] = arguments.pop(f"kernel_{name}")
    conv = keras.layers.DepthwiseConv2D(
        depth_multiplier=1, padding=padding, name=layer.name, **arguments
    )
    weights = [_numpy(layer.kernel)[:, :, :channels, :]]
    if layer.use_bias:
        weights.append(_numpy(layer.bias)[:channels])
    apply = _chain(pad, conv)
    with _zero_initialized(conv):
        outputs = apply(x)
    conv.set_weights(weights)
    return outputs, apply


def _dense(layer, args, kwargs, index):
    x = args[0]
    features = x.shape[-1]
    units = channels_at(layer.units, layer.name, index)
    dense = keras.layers.Dense(
        units,
        name=layer.name,
        dtype=layer.dtype_policy,
        trainable=layer.trainable,
        **weight_arguments_config(layer),
    )
    weights = [_numpy(layer.kernel)[:features, :units]]
    if layer.use_bias:
        weights.append(_numpy(layer.bias)[:units])
    with _zero_initialized(dense):
        outputs = dense(x)
    dense.set_weights(weights)
    return outputs, _chain(dense)


def _batch_norm(layer, args, kwargs, index):
    x = args[0]
    channels = x.shape[-1]
    source = layer.batch_norms[0 if layer.shared else index]
    config = source.get_config()
    config.update(name=layer.name, trainable=layer.trainable)
    batch_norm = keras.layers.BatchNormalization.from_config(config)
    # gamma, beta, moving mean, moving variance: all per channel.
    weights = [w[:channels] for w in source.get_weights()]
    training = kwargs.get("training")

    def apply(x, *unused_args, **call_kwargs):
        return batch_norm(x, training=call_kwargs.get("training", training))

    with _zero_initialized(batch_norm):
        outputs = apply(x)
    batch_norm.set_weights(weights)
    return outputs, apply


_CONVERTERS = (
    (SlimmableGroupedConv2D, _grouped_conv2d),
    (SlimmableDepthwiseConv2D, _depthwise_conv2d),
    (SlimmableConv2D, _conv2d),
    (SlimmableDense, _dense),
    (SwitchableBatchNormalization, _batch_norm),
)


def _is_channel_shuffle(operation):
    try:
        from keras_slimmable.layers.shuffle import ChannelShuffle
    except ImportError:  # Not in this version of the package.
        return False
    return isinstance(operation, ChannelShuffle)


def _known_spatial(x):
    return len(x.shape) == 4 and None not in x.shape[1:]


def _channel_shuffle(layer, args, kwargs, index):
    """ShuffleNet's channel shuffle as Reshape, Permute, Reshape: the
    channels seen as a (groups, channels / groups) grid, transposed."""
    _, height, width, channels = args[0].shape
    groups = layer.groups
    apply = _chain(
        keras.layers.Reshape(
            (height, width, groups, channels // groups),
            name=f"{layer.name}_split",
        ),
        keras.layers.Permute((1, 2, 4, 3), name=f"{layer.name}_transpose"),
        keras.layers.Reshape(
            (height, width, channels), name=f"{layer.name}_merge"
        ),
    )
    return apply(args[0]), apply


def _clone(operation, args, kwargs):
    """A copy of a layer or operation from its config, weights included."""
    try:
        clone = operation.__class__.from_config(operation.get_config())
    except Exception as error:
        raise ValueError(
            f"`materialize` could not copy '{operation.name}' of type "
            f"{type(operation).__name__} from its config: {error}"
        ) from error
    outputs = clone(*args, **kwargs)
    if isinstance(operation, keras.layers.Layer) and operation.weights:
        clone.set_weights(operation.get_weights())
    return outputs, clone
