"""S-MobileNet v2: the slimmable MobileNet v2 of the reference.

Exactly the reference architecture (Yu et al., ICLR 2019), so that reference
checkpoints load number for number: a 3x3 stride-2 stem, 17 inverted
residual blocks, a 1x1 conv to 1280 channels with one ordinary batch norm,
global average pooling and an ordinary classifier. Channels are rounded
with `make_divisible`.
"""

import keras

from keras_slimmable.layers import SlimmableConv2D
from keras_slimmable.layers import SlimmableDepthwiseConv2D
from keras_slimmable.model import SlimmableModel
from keras_slimmable.widths import make_divisible
from keras_slimmable.widths import scale_channels
from keras_slimmable.zoo.common import BATCH_NORM_EPSILON
from keras_slimmable.zoo.common import BATCH_NORM_MOMENTUM
from keras_slimmable.zoo.common import check_builder_arguments
from keras_slimmable.zoo.common import classifier_head
from keras_slimmable.zoo.common import conv_initializer
from keras_slimmable.zoo.common import image_input
from keras_slimmable.zoo.common import load_weights
from keras_slimmable.zoo.common import model_inputs
from keras_slimmable.zoo.common import switchable_batch_norm
from keras_slimmable.zoo.common import with_shared_arguments_doc
from keras_slimmable.zoo.registry import register_model
from keras_slimmable.zoo.weights import check_weights_argument
from keras_slimmable.zoo.weights import weights_file_name

DEFAULT_WIDTHS = (0.35, 0.5, 0.75, 1.0)

# (expansion t, output channels at width 1.0, repeats, first stride).
BLOCK_SETTINGS = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
LAST_CHANNELS = 1280

MANIFEST = {
    "architecture": "s_mobilenet_v2",
    "reference_model_id": "0593ffd",
    "reference_file": "s_mobilenet_v2_0.35_0.5_0.75_1.0.pt",
    "reference_url": (
        "https://github.com/JiahuiYu/slimmable_networks/files/2709080/"
        "s_mobilenet_v2_0.35_0.5_0.75_1.0.pt.zip"
    ),
    "license": "CC BY-NC 4.0",
    "widths": DEFAULT_WIDTHS,
    "classes": 1000,
    # Published ImageNet top-1 error (%), per width.
    "top1_error": {1.0: 29.5, 0.75: 31.1, 0.5: 35.6, 0.35: 40.3},
    "keras_file": weights_file_name("s_mobilenet_v2"),
}


@with_shared_arguments_doc
@register_model("s_mobilenet_v2")
def s_mobilenet_v2(
    widths=None,
    weights=None,
    input_shape=None,
    include_top=True,
    classes=1000,
    pooling=None,
    shared_batch_norm=False,
    name="s_mobilenet_v2",
    input_tensor=None,
    classifier_activation=None,
):
    """Builds the slimmable MobileNet v2 (S-MobileNet v2).

    The reference architecture of Yu et al.: a 3x3 stride-2 stem to
    `make_divisible(32 * w)` channels, then inverted residual blocks
    (expansion t, channels c, repeats n, stride s) (1, 16, 1, 1),
    (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
    (6, 160, 3, 2), (6, 320, 1, 1) with `make_divisible(c * w)` output
    channels and `t` times the block's input channels expanded; each block
    is a 1x1 expand conv (none when t == 1), batch norm, ReLU6, a 3x3
    depthwise conv, batch norm, ReLU6, a 1x1 project conv and batch norm,
    plus the input when the stride is 1 and the channels agree at every
    width. The tail is a 1x1 conv to 1280 channels (only its input is
    sliced; `make_divisible(1280 * max(widths))` when the widest width
    exceeds 1.0, as in the reference) with ONE ordinary batch norm shared
    by all widths, ReLU6, global average pooling and an ordinary dense
    classifier. Convolutions pad symmetrically as in PyTorch, so reference
    checkpoints load exactly. The model outputs logits (see
    `classifier_activation`).

    Args:
        widths: the width multipliers, ascending. Defaults to
            `(0.35, 0.5, 0.75, 1.0)`, the reference's.
        weights: `None` (random initialization, as the reference's), a
            path to a `.weights.h5` file of this package, a path to a
            reference PyTorch checkpoint (`.pt`, `.pth`, `.pth.tar`,
            ...), or `"imagenet"` for the reference ImageNet weights once
            converted into the Keras cache (see
            `python -m keras_slimmable.convert`). Defaults to `None`.
        input_shape: the shape of one image, `(height, width, 3)`: any
            height and width from 32 up, as in keras.applications (the
            pooling is global), or `None` for any size. Defaults to the
            shape of `input_tensor`, else `(224, 224, 3)`.
        include_top: whether to include the classifier. Defaults to `True`.
        classes: the number of classes of the classifier. Defaults to
            `1000`.
        pooling: with `include_top=False`, `None` to output the last
            feature map (after the tail's 1280 channels), `"avg"` or
            `"max"` for global pooling. Defaults to `None`.
        shared_batch_norm: build the paper's naive baseline instead, one
            batch norm shared by all widths. Reference checkpoints cannot
            be loaded into it. Defaults to `False`.
        name: the model name. Defaults to `"s_mobilenet_v2"`.
        {shared_arguments}

    Returns:
        A `keras_slimmable.SlimmableModel`.

    Example:

    ```python
    model = keras_slimmable.zoo.s_mobilenet_v2(weights="imagenet")
    images = keras_slimmable.zoo.preprocess_input(images)  # RGB in [0, 255]
    logits = model(images, width=0.35)
    ```

    Reference: [Yu et al., Slimmable Neural Networks, ICLR 2019](
    https://arxiv.org/abs/1812.08928); the reference implementation is
    https://github.com/JiahuiYu/slimmable_networks.
    """
    widths, input_shape = check_builder_arguments(
        "s_mobilenet_v2",
        DEFAULT_WIDTHS,
        widths,
        include_top,
        classes,
        pooling,
        input_shape,
        input_tensor=input_tensor,
        classifier_activation=classifier_activation,
        weights=weights,
    )
    check_weights_argument(
        weights,
        MANIFEST,
        widths=widths,
        include_top=include_top,
        classes=classes,
        shared_batch_norm=shared_batch_norm,
    )

    images = image_input(input_shape, input_tensor)
    channels = scale_channels(32, widths, "make_divisible")
    x = SlimmableConv2D(
        channels,
        3,
        strides=2,
        padding=1,
        use_bias=False,
        kernel_initializer=conv_initializer(3, channels[-1]),
        name="stem_conv",
    )(images)
    x = switchable_batch_norm(channels, shared_batch_norm, "stem_bn")(x)
    x = keras.layers.ReLU(6.0, name="stem_relu")(x)

    block = 0
    for expansion, filters, repeats, first_stride in BLOCK_SETTINGS:
        outputs = scale_channels(filters, widths, "make_divisible")
        for repeat in range(repeats):
            block += 1
            x = _inverted_residual(
                x,
                channels,
                outputs,
                first_stride if repeat == 0 else 1,
                expansion,
                shared_batch_norm,
                f"block{block}",
            )
            channels = outputs

    last_channels = LAST_CHANNELS
    if widths[-1] > 1.0:
        last_channels = make_divisible(LAST_CHANNELS * widths[-1])
    x = SlimmableConv2D(
        last_channels,
        1,
        use_bias=False,
        kernel_initializer=conv_initializer(1, last_channels),
        name="last_conv",
    )(x)
    x = keras.layers.BatchNormalization(
        momentum=BATCH_NORM_MOMENTUM, epsilon=BATCH_NORM_EPSILON, name="last_bn"
    )(x)
    x = keras.layers.ReLU(6.0, name="last_relu")(x)

    x = classifier_head(
        x,
        include_top,
        classes,
        pooling,
        classifier_activation,
        dense=keras.layers.Dense,
    )

    model = SlimmableModel(
        model_inputs(images, input_tensor), x, widths=widths, name=name
    )

    def rebuild(**overrides):
        arguments = dict(
            widths=widths,
            input_shape=input_shape,
            include_top=include_top,
            classes=classes,
            pooling=pooling,
            shared_batch_norm=shared_batch_norm,
        )
        return s_mobilenet_v2(**dict(arguments, **overrides))

    load_weights(model, weights, MANIFEST, include_top, input_tensor, rebuild)
    return model


def _inverted_residual(
    x, inputs, outputs, stride, expansion, shared_batch_norm, prefix
):
    """One inverted residual block; `inputs`/`outputs` are per width."""
    shortcut = x
    expanded = tuple(expansion * c for c in inputs)
    if expansion != 1:
        x = SlimmableConv2D(
            expanded,
            1,
            use_bias=False,
            kernel_initializer=conv_initializer(1, expanded[-1]),
            name=f"{prefix}_expand",
        )(x)
        x = switchable_batch_norm(
            expanded, shared_batch_norm, f"{prefix}_expand_bn"
        )(x)
        x = keras.layers.ReLU(6.0, name=f"{prefix}_expand_relu")(x)
    x = SlimmableDepthwiseConv2D(
        3,
        channels=expanded,
        strides=stride,
        padding=1,
        use_bias=False,
        depthwise_initializer=conv_initializer(3, expanded[-1]),
        name=f"{prefix}_depthwise",
    )(x)
    x = switchable_batch_norm(
        expanded, shared_batch_norm, f"{prefix}_depthwise_bn"
    )(x)
    x = keras.layers.ReLU(6.0, name=f"{prefix}_depthwise_relu")(x)
    x = SlimmableConv2D(
        outputs,
        1,
        use_bias=False,
        kernel_initializer=conv_initializer(1, outputs[-1]),
        name=f"{prefix}_project",
    )(x)
    x = switchable_batch_norm(
        outputs, shared_batch_norm, f"{prefix}_project_bn"
    )(x)
    # The reference compares the whole per-width channel lists.
    if stride == 1 and tuple(inputs) == tuple(outputs):
        x = keras.layers.Add(name=f"{prefix}_add")([shortcut, x])
    return x
