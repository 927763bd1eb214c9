"""What the zoo's builders share: arguments, initialization, heads."""

import math

import keras

from keras_slimmable.zoo.imagenet_utils import preprocess_input  # noqa: F401
from keras_slimmable.zoo.weights import copy_weights
from keras_slimmable.zoo.weights import load_builder_weights

# The arguments every builder documents alike, put where its docstring
# says `{shared_arguments}` (as keras.applications shares BASE_DOCSTRING).
SHARED_ARGUMENTS_DOC = """\
        input_tensor: a Keras tensor (the output of `keras.Input()` or of
            a layer) to use as the images. As in keras.applications, the
            model's inputs are then the inputs it derives from
            (`keras.utils.get_source_inputs`), and with `weights` only the
            builder's layers are loaded. Defaults to `None`.
        classifier_activation: the classifier's activation, with
            `include_top=True`: `None` for logits, `"softmax"` for
            probabilities, or any Keras activation; with `weights`, only
            `None` or `"softmax"`, as in keras.applications. Defaults to
            `None`, logits, unlike keras.applications (`"softmax"`): the
            reference models output logits, the reference checkpoints are
            checked logit for logit, and the zoo's recipes train with
            `from_logits=True`.
"""


def with_shared_arguments_doc(builder):
    """Puts `SHARED_ARGUMENTS_DOC` into `builder`'s docstring."""
    builder.__doc__ = builder.__doc__.replace(
        "        {shared_arguments}\n", SHARED_ARGUMENTS_DOC
    )
    return builder


BATCH_NORM_MOMENTUM = 0.9  # PyTorch's momentum 0.1
BATCH_NORM_EPSILON = 1e-5
# keras.applications' minimum input height and width.
MIN_INPUT_SIZE = 32


def check_builder_arguments(
    name,
    default_widths,
    widths,
    include_top,
    classes,
    pooling,
    input_shape,
    input_tensor=None,
    classifier_activation=None,
    weights=None,
):
    """Validates the arguments every builder takes; returns
    `(widths, input_shape)` with the defaults filled in.

    `input_shape` defaults to the shape of `input_tensor`, else
    `(224, 224, 3)`; its height and width must be at least 32 (or `None`),
    as in keras.applications. `classifier_activation` must be a Keras
    activation, and only `None` or `"softmax"` when `weights` are loaded
    into the classifier (keras.applications' rule: the classifier was
    trained through a softmax).

    Raises:
        ValueError: naming the bad argument and what was expected.
    """
    from keras_slimmable.widths import standardize_widths

    widths = standardize_widths(default_widths if widths is None else widths)
    if not isinstance(include_top, bool):
        raise ValueError(
            f"`include_top` must be True or False. Received: "
            f"include_top={include_top!r}"
        )
    if include_top and (not isinstance(classes, int) or classes < 1):
        raise ValueError(
            f"`classes` must be a positive int. Received: classes={classes!r}"
        )
    if pooling not in (None, "avg", "max"):
        raise ValueError(
            "`pooling` must be None, 'avg' or 'max'. Received: "
            f"pooling={pooling!r}"
        )
    _check_classifier_activation(classifier_activation, include_top, weights)
    if input_tensor is None:
        input_shape = (224, 224, 3) if input_shape is None else input_shape
        input_shape = tuple(input_shape)
        received = f"input_shape={input_shape}"
    else:
        _check_input_tensor(input_tensor)
        tensor_shape = tuple(input_tensor.shape[1:])
        received = f"input_tensor.shape={tuple(input_tensor.shape)}"
        if input_shape is not None and tuple(input_shape) != tensor_shape:
            raise ValueError(
                "`input_shape` must be None or the shape of one image of "
                f"`input_tensor`, {tensor_shape}. Received: "
                f"input_shape={tuple(input_shape)}, {received}"
            )
        input_shape = tensor_shape
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(
            f"{name} takes RGB images, channels last: `input_shape` must be "
            f"(height, width, 3). Received: {received}"
        )
    if any(
        size is not None and size < MIN_INPUT_SIZE for size in input_shape[:2]
    ):
        # keras.applications' message.
        raise ValueError(
            f"Input size must be at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}; "
            f"Received: {received}"
        )
    return widths, input_shape


def _check_input_tensor(input_tensor):
    if not keras.backend.is_keras_tensor(input_tensor):
        shape = getattr(input_tensor, "shape", None)
        raise ValueError(
            "`input_tensor` must be a Keras tensor: the output of "
            "`keras.Input()` or of a layer called on one. Received: "
            f"input_tensor of type {type(input_tensor).__name__}"
            + ("" if shape is None else f" and shape {tuple(shape)}")
        )


def _check_classifier_activation(classifier_activation, include_top, weights):
    try:
        activation = keras.activations.get(classifier_activation)
    except (ValueError, TypeError):
        raise ValueError(
            "`classifier_activation` must be None, the name of a Keras "
            "activation (such as 'softmax') or a callable. Received: "
            f"classifier_activation={classifier_activation!r}"
        ) from None
    if not include_top or weights is None:
        return
    if activation not in (
        keras.activations.get("softmax"),
        keras.activations.get(None),
    ):
        # keras.applications' rule and message (validate_activation).
        raise ValueError(
            "Only `None` and `softmax` activations are allowed for the "
            "`classifier_activation` argument when using pretrained "
            "weights, with `include_top=True`; Received: "
            f"classifier_activation={classifier_activation!r}"
        )


def image_input(input_shape, input_tensor):
    """The tensor a builder starts from: `input_tensor`, or a new
    `keras.Input` named `images`."""
    if input_tensor is None:
        return keras.Input(shape=input_shape, name="images")
    return input_tensor


def model_inputs(images, input_tensor):
    """The model's inputs: those `input_tensor` derives from
    (`keras.utils.get_source_inputs`), as in keras.applications."""
    if input_tensor is None:
        return images
    inputs = keras.utils.get_source_inputs(input_tensor)
    return inputs[0] if len(inputs) == 1 else inputs


def conv_initializer(kernel_size, channels):
    """The reference's He normal (fan out): N(0, sqrt(2 / (k * k * out))).

    `channels` counts the output channels of one reference module: the
    whole conv, a depthwise conv's channels, or one group of a group conv.
    """
    return keras.initializers.RandomNormal(
        stddev=math.sqrt(2.0 / (kernel_size * kernel_size * channels))
    )


def switchable_batch_norm(channels, shared, name):
    """The reference's batch norm: switchable, or the shared baseline."""
    from keras_slimmable.layers import SwitchableBatchNormalization

    return SwitchableBatchNormalization(
        channels,
        momentum=BATCH_NORM_MOMENTUM,
        epsilon=BATCH_NORM_EPSILON,
        shared=shared,
        name=name,
    )


def classifier_head(
    x, include_top, classes, pooling, classifier_activation=None, dense=None
):
    """Global average pooling and the classifier, or the headless pooling.

    Args:
        x: the last feature map.
        include_top: add the classifier (`predictions`).
        classes: its number of classes.
        pooling: without the classifier: `None`, `"avg"` or `"max"`.
        classifier_activation: the classifier's activation; `None` for
            logits.
        dense: the classifier's layer class. Defaults to `SlimmableDense`
            (its input sliced to the active width).
    """
    if include_top:
        if dense is None:
            from keras_slimmable.layers import SlimmableDense as dense
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        return dense(
            classes,
            activation=classifier_activation,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            name="predictions",
        )(x)
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x


def load_weights(model, weights, manifest, include_top, input_tensor, rebuild):
    """Loads a builder's `weights` argument into the model it just built.

    Args:
        model: the model.
        weights: the (validated) `weights` argument.
        manifest: the architecture's `MANIFEST`.
        include_top: whether `model` has its classifier.
        input_tensor: the builder's `input_tensor` argument.
        rebuild: a callable returning the builder's model on its own
            input, random weights, with keyword arguments overriding the
            builder's (`rebuild(include_top=True, classes=1000)`).
    """
    if weights is None:
        return
    if input_tensor is not None:
        # The layers before `input_tensor` are not in the weights: load
        # them into the builder's model alone, then copy its layers over.
        copy_builder_weights(rebuild(weights=weights), model)
        return
    load_builder_weights(
        model,
        weights,
        manifest,
        include_top=include_top,
        build_full_model=lambda: rebuild(
            include_top=True, classes=manifest["classes"], pooling=None
        ),
    )


def copy_builder_weights(source, target):
    """Copies the weights of every layer of `source` into the same-named
    layer of `target`, which may hold more layers (shapes are checked
    before anything is assigned)."""
    copy_weights(
        (layer, target.get_layer(layer.name))
        for layer in source.layers
        if layer.weights
    )
