"""What the zoo's builders share: arguments, initialization, heads."""

import math

import keras

# The reference normalisation: RGB scaled to [0, 1], then per channel.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BATCH_NORM_MOMENTUM = 0.9  # PyTorch's momentum 0.1
BATCH_NORM_EPSILON = 1e-5


def preprocess_input(x):
    """Normalises RGB images in [0, 255] as the reference models expect.

    Scales to [0, 1], subtracts the ImageNet mean and divides by the
    standard deviation, per channel (channels last).

    Args:
        x: a float array or tensor of RGB images, values in [0, 255].

    Returns:
        The normalised images, as a tensor of the same shape.
    """
    x = keras.ops.convert_to_tensor(x)
    if not keras.backend.is_float_dtype(x.dtype):
        x = keras.ops.cast(x, "float32")
    mean = keras.ops.convert_to_tensor(IMAGENET_MEAN, dtype=x.dtype)
    std = keras.ops.convert_to_tensor(IMAGENET_STD, dtype=x.dtype)
    return (x / 255.0 - mean) / std


def check_builder_arguments(
    name, default_widths, widths, include_top, classes, pooling, input_shape
):
    """Validates the arguments every builder takes; returns
    `(widths, input_shape)` with the defaults filled in.

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
    if input_shape is None:
        input_shape = (224, 224, 3)
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(
            f"{name} takes RGB images, channels last: `input_shape` must be "
            f"(height, width, 3). Received: input_shape={input_shape}"
        )
    return widths, input_shape


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


def classifier_head(x, include_top, classes, pooling, dense=None):
    """Global average pooling and the classifier, or the headless pooling.

    Args:
        x: the last feature map.
        include_top: add the classifier (`predictions`, logits).
        classes: its number of classes.
        pooling: without the classifier: `None`, `"avg"` or `"max"`.
        dense: the classifier's layer class. Defaults to `SlimmableDense`
            (its input sliced to the active width).
    """
    if include_top:
        if dense is None:
            from keras_slimmable.layers import SlimmableDense as dense
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
        return dense(
            classes,
            kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
            name="predictions",
        )(x)
    if pooling == "avg":
        return keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if pooling == "max":
        return keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    return x
