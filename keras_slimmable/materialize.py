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
"""

import keras

from keras_slimmable.layers import SlimmableLayer
from keras_slimmable.widths import ActiveWidth
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
            name=x.name,
        )
        for x in model.inputs
    ]
    outputs = _rebuild(model, inputs, ActiveWidth(width, index), {})
    return keras.Model(
        inputs=keras.tree.pack_sequence_as(model.input, inputs),
        outputs=outputs,
        name=f"{model.name}_{width_name(width, '_')}",
    )


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
