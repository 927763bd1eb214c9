"""Materializing one width of a slimmable model as a plain Keras model.

`materialize(model, width)` rebuilds the model's functional graph at one
width from ordinary Keras layers holding only that width's weights: the
artifact to export or deploy when a single width is wanted, with no
full-width kernels and no `keras_slimmable` needed to load it.

Each slimmable layer says what it becomes (`SlimmableLayer.plain_equivalent`:
a `SlimmableConv2D` becomes a `Conv2D` with the sliced kernel, a
`SwitchableBatchNormalization` a `BatchNormalization` with that width's
weights, and so on; the layer keeps its name, added layers get the name plus
a suffix). Every other layer or operation is cloned from its config, with
its weights copied. Nested functional models are inlined.

With `fold_batch_norm=True`, a second pass over the plain model folds each
batch norm into the convolution or dense layer before it (see
`fold_batch_norms`).
"""

import keras
import numpy as np

from keras_slimmable.layers import SlimmableLayer
from keras_slimmable.widths import ActiveWidth
from keras_slimmable.widths import width_index
from keras_slimmable.widths import width_name


def materialize(model, width, fold_batch_norm=False):
    """Builds a plain Keras model of one width of a slimmable model.

    The result computes the same outputs as `model(x, width=width)` at
    inference, from ordinary Keras layers (`Conv2D`, `DepthwiseConv2D`,
    `Dense`, `BatchNormalization`, ...) that hold only the weights of that
    width: its `count_params()` is the width's convolution and dense
    parameters plus its batch norms (with their moving statistics). The
    weights are copied; the new model shares no variables with `model`.

    Args:
        model: a `SlimmableModel`.
        width: one of `model.widths`, or any width of `model.width_range`
            (with batch-norm statistics: a calibrated width).
        fold_batch_norm: fold every batch norm that directly follows a
            `Conv2D`, `DepthwiseConv2D` or `Dense` layer into that layer's
            kernel and bias (see `fold_batch_norms`). The result then
            equals the model at inference only (`training=False`): the
            folded batch norms no longer compute batch statistics.
            Defaults to `False`.

    Returns:
        A functional `keras.Model` named `<model name>_w<width>`, e.g.
        `s_mobilenet_v1_w0_5`. For a model with feature pyramid levels
        (`model.pyramid_outputs`), its `pyramid_outputs` attribute maps
        the same level names to its own tensors, so that keras-hub's
        `RetinaNetBackbone(image_encoder=...)` takes it (an attribute
        only: `keras.saving` does not keep it).

    Raises:
        ValueError: if the model does not run at `width`, or a universal
            batch norm has no statistics for it.

    Example:

    ```python
    model = keras_slimmable.zoo.s_mobilenet_v1()
    narrow = materialize(model, 0.5)  # or model.materialize(0.5)
    narrow.export("s_mobilenet_v1_w0_5")
    ```
    """
    if hasattr(model, "_active_width") and not isinstance(width, dict):
        active = model._active_width(width)  # any width of a range too
    else:
        index = width_index(model.widths, width)
        active = ActiveWidth(model.widths[index], index)
    plain = _replayed(
        model,
        lambda graph, inputs: _rebuild(graph, inputs, active, {}),
        name=f"{model.name}_{width_name(active.width, '_')}",
    )
    if fold_batch_norm:
        plain = fold_batch_norms(plain)
    return plain


# Batch norm folding ---------------------------------------------------------

_FOLDABLE = (
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.Dense,
)


def fold_batch_norms(model):
    """Folds batch norms into the layers before them, for inference.

    A `BatchNormalization` is folded when its input is the output of a
    `Conv2D`, `DepthwiseConv2D` or `Dense` layer (channels last, no
    activation, called once in `model`) of which it is the only consumer,
    and it normalizes the last axis. At inference the batch norm is the
    affine map `x * s + (beta - mean * s)` with
    `s = gamma / sqrt(moving_variance + epsilon)`, per channel: the
    layer's kernel is scaled by `s` along its output channels and its bias
    (added if it had none) becomes `(bias - mean) * s + beta`; the batch
    norm disappears. Other batch norms (after a concatenation, an
    activation, a layer called twice, ...) are kept.

    Args:
        model: a functional `keras.Model` of plain Keras layers, e.g. from
            `materialize`.

    Returns:
        A new functional model with the same name and inputs (copies of
        every layer; `model` is unchanged), equal to `model` at inference,
        or `model` itself if no batch norm can be folded.
    """
    pairs = _foldable_pairs(model)
    if not pairs:
        return model
    folded_batch_norms = {id(bn) for bn in pairs.values()}
    replacements = {}

    def operation_fn(operation):
        key = id(operation)
        if key in folded_batch_norms:
            return _identity
        if key not in replacements:
            if key in pairs:
                replacements[key] = _folded_layer(operation, pairs[key])
            else:
                replacements[key] = _Cloner(operation)
        return replacements[key]

    # Private Keras API, as in `_rebuild`.
    return _replayed(
        model,
        lambda graph, inputs: graph._run_through_graph(
            inputs, operation_fn=operation_fn
        ),
        name=model.name,
    )


def _replayed(model, replay, name):
    """A functional model on fresh inputs like `model`'s (same shapes,
    dtypes, names and structure), its outputs `replay(graph, inputs)`.

    `graph` is `model`, or, for a model with a feature pyramid
    (`pyramid_outputs`: a `SlimmableModel` with `pyramid_levels`, or a
    model this module made from one), a functional view of the same
    layers whose outputs are `model`'s and its pyramid's: the new model
    then has `pyramid_outputs` too, the same levels mapped to its own
    graph's tensors (a folded batch norm's level is the output of the
    layer it was folded into).
    """
    inputs = [
        keras.Input(batch_shape=x.shape, dtype=x.dtype, name=x.name)
        for x in model.inputs
    ]
    inputs = keras.tree.pack_sequence_as(model.input, inputs)
    pyramid = dict(getattr(model, "pyramid_outputs", None) or {})
    if not pyramid:
        return keras.Model(
            inputs=inputs, outputs=replay(model, inputs), name=name
        )
    graph = keras.Model(
        inputs=model.input,
        outputs={"outputs": model.output, "pyramid": pyramid},
    )
    outputs = replay(graph, inputs)
    plain = keras.Model(inputs=inputs, outputs=outputs["outputs"], name=name)
    # As keras-hub's `FeaturePyramidBackbone`: a plain attribute, not
    # saved with the model.
    plain.pyramid_outputs = dict(outputs["pyramid"])
    return plain


def _identity(inputs, *unused_args, **unused_kwargs):
    return inputs


class _Cloner:
    """Clones an operation on its first call, then calls the clone."""

    def __init__(self, operation):
        self.operation = operation
        self.clone = None

    def __call__(self, *args, **kwargs):
        if self.clone is not None:
            return self.clone(*args, **kwargs)
        outputs, self.clone = _clone(self.operation, args, kwargs)
        return outputs


def _foldable_pairs(model):
    """`{id(layer): batch norm}` for each batch norm that can be folded
    into the layer producing its input.

    Reads the functional graph through private Keras API, checked by
    tests/test_keras_private_api.py: `_nodes_by_depth` (every call of an
    operation in the graph, with its input tensors) and a tensor's
    `_keras_history.operation` (the operation that produced it); Keras has
    no public view of who consumes a tensor.
    """
    nodes = [node for depth in model._nodes_by_depth.values() for node in depth]
    consumers = {}
    for node in nodes:
        for tensor in node.input_tensors:
            consumers[id(tensor)] = consumers.get(id(tensor), 0) + 1
    pyramid = getattr(model, "pyramid_outputs", None) or {}
    for tensor in list(model.outputs) + list(pyramid.values()):
        consumers[id(tensor)] = consumers.get(id(tensor), 0) + 1
    calls = {}
    for node in nodes:
        if node.operation is not None:
            calls[id(node.operation)] = calls.get(id(node.operation), 0) + 1
    pairs = {}
    for node in nodes:
        batch_norm = node.operation
        if not isinstance(batch_norm, keras.layers.BatchNormalization):
            continue
        if calls[id(batch_norm)] != 1 or len(node.input_tensors) != 1:
            continue
        (tensor,) = node.input_tensors
        layer = tensor._keras_history.operation
        if (
            isinstance(layer, _FOLDABLE)
            and calls.get(id(layer)) == 1
            and consumers[id(tensor)] == 1
            and _normalizes_channels(batch_norm, tensor)
            and _is_linear(layer)
            and getattr(layer, "data_format", "channels_last")
            == "channels_last"
            and id(layer) not in pairs
        ):
            pairs[id(layer)] = batch_norm
    return pairs


def _normalizes_channels(batch_norm, tensor):
    return batch_norm.axis in (-1, len(tensor.shape) - 1)


def _is_linear(layer):
    return layer.activation in (None, keras.activations.linear)


def _folded_layer(layer, batch_norm):
    """A copy of `layer` with `batch_norm` folded into its kernel and bias.

    Returns a function that calls the copy (built, and its folded weights
    set, on the first call). The fold is computed in float64.
    """
    config = layer.get_config()
    config["use_bias"] = True
    folded = layer.__class__.from_config(config)
    kernel = _numpy(layer.kernel)
    # The output channels: the last kernel axis, except for a depthwise
    # kernel (kh, kw, channels, multiplier), whose output channel
    # c * multiplier + m comes from kernel[..., c, m].
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        output_axes = kernel.shape[-2:]
    else:
        output_axes = kernel.shape[-1:]
    channels = int(np.prod(output_axes))
    ones, zeros = np.ones(channels), np.zeros(channels)
    bias = _numpy(layer.bias) if layer.use_bias else zeros
    gamma = _numpy(batch_norm.gamma) if batch_norm.scale else ones
    beta = _numpy(batch_norm.beta) if batch_norm.center else zeros
    mean = _numpy(batch_norm.moving_mean)
    variance = _numpy(batch_norm.moving_variance)
    scale = gamma / np.sqrt(variance + batch_norm.epsilon)
    dtype = keras.backend.standardize_dtype(layer.kernel.dtype)
    weights = [
        (kernel * scale.reshape(output_axes)).astype(dtype),
        ((bias - mean) * scale + beta).astype(dtype),
    ]
    loaded = []

    def apply(*args, **kwargs):
        outputs = folded(*args, **kwargs)
        if not loaded:
            folded.set_weights(weights)
            loaded.append(True)
        return outputs

    return apply


def _numpy(variable):
    return keras.ops.convert_to_numpy(variable).astype("float64")


def _rebuild(functional, inputs, width, converted):
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
            outputs, apply = _convert(operation, args, kwargs, width, converted)
            converted[key] = apply
            return outputs

        return run

    # Private Keras API (keras.Model's functional graph walker; checked by
    # tests/test_keras_private_api.py): the one way to replay a functional
    # graph with each operation replaced.
    return functional._run_through_graph(inputs, operation_fn=operation_fn)


def _convert(operation, args, kwargs, width, converted):
    """Replaces one operation; returns its outputs on `args` and a function
    that applies the replacement again."""
    if isinstance(operation, SlimmableLayer):
        return operation.plain_equivalent(*args, width=width, **kwargs)
    if isinstance(operation, keras.Model) and hasattr(
        operation, "_run_through_graph"
    ):

        def inline(inputs, *unused_args, **unused_kwargs):
            return _rebuild(operation, inputs, width, converted)

        return inline(*args, **kwargs), inline
    return _clone(operation, args, kwargs)


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
