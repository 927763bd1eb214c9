"""S-MobileNet v1: the slimmable MobileNet v1 of the reference.

Exactly the reference architecture (Yu et al., ICLR 2019), so that reference
checkpoints load number for number: a 3x3 stride-2 stem, 13 depthwise
separable blocks, global average pooling and a classifier whose input is
sliced to the active width. Channels are rounded with `make_divisible`.
"""

import keras

from keras_slimmable.layers import SlimmableConv2D
from keras_slimmable.layers import SlimmableDepthwiseConv2D
from keras_slimmable.model import SlimmableModel
from keras_slimmable.widths import scale_channels
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

DEFAULT_WIDTHS = (0.25, 0.5, 0.75, 1.0)

# (output channels at width 1.0, repeats, stride of the first block).
BLOCK_SETTINGS = (
    (64, 1, 1),
    (128, 2, 2),
    (256, 2, 2),
    (512, 6, 2),
    (1024, 2, 2),
)

MANIFEST = {
    "architecture": "s_mobilenet_v1",
    "reference_model_id": "a6285db",
    "reference_file": "s_mobilenet_v1_0.25_0.5_0.75_1.0.pt",
    "reference_url": (
        "https://github.com/JiahuiYu/slimmable_networks/files/2709079/"
        "s_mobilenet_v1_0.25_0.5_0.75_1.0.pt.zip"
    ),
    "license": "CC BY-NC 4.0",
    "widths": DEFAULT_WIDTHS,
    "classes": 1000,
    # Published ImageNet top-1 error (%), per width.
    "top1_error": {1.0: 28.5, 0.75: 30.5, 0.5: 35.2, 0.25: 46.9},
    "keras_file": weights_file_name("s_mobilenet_v1"),
}


@with_shared_arguments_doc
@register_model("s_mobilenet_v1")
def s_mobilenet_v1(
    widths=None,
    weights=None,
    input_shape=None,
    include_top=True,
    classes=1000,
    pooling=None,
    shared_batch_norm=False,
    name="s_mobilenet_v1",
    input_tensor=None,
    classifier_activation=None,
):
    """Builds the slimmable MobileNet v1 (S-MobileNet v1).

    The reference architecture of Yu et al.: a 3x3 stride-2 stem to
    `make_divisible(32 * w)` channels, then 13 depthwise separable blocks
    (3x3 depthwise conv, batch norm, ReLU6, 1x1 conv, batch norm, ReLU6)
    with output channels `make_divisible(c * w)` for c in 64, 128 x2,
    256 x2, 512 x6, 1024 x2; global average pooling and a classifier whose
    input is sliced to the active width. Convolutions pad symmetrically as
    in PyTorch, so reference checkpoints load exactly. Every batch norm is
    switchable (one per width). The model outputs logits (see
    `classifier_activation`).

    Args:
        widths: the width multipliers, ascending. Defaults to
            `(0.25, 0.5, 0.75, 1.0)`, the reference's.
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
            feature map, `"avg"` or `"max"` for global pooling. Defaults to
            `None`.
        shared_batch_norm: build the paper's naive baseline instead, one
            batch norm shared by all widths. Reference checkpoints cannot
            be loaded into it. Defaults to `False`.
        name: the model name. Defaults to `"s_mobilenet_v1"`.
        {shared_arguments}

    Returns:
        A `keras_slimmable.SlimmableModel`.

    Example:

    ```python
    model = keras_slimmable.zoo.s_mobilenet_v1(weights="imagenet")
    images = keras_slimmable.zoo.preprocess_input(images)  # RGB in [0, 255]
    logits = model(images, width=0.5)
    ```

    Reference: [Yu et al., Slimmable Neural Networks, ICLR 2019](
    https://arxiv.org/abs/1812.08928); the reference implementation is
    https://github.com/JiahuiYu/slimmable_networks.
    """
    widths, input_shape = check_builder_arguments(
        "s_mobilenet_v1",
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
    for filters, repeats, first_stride in BLOCK_SETTINGS:
        outputs = scale_channels(filters, widths, "make_divisible")
        for repeat in range(repeats):
            block += 1
            prefix = f"block{block}"
            x = SlimmableDepthwiseConv2D(
                3,
                channels=channels,
                strides=first_stride if repeat == 0 else 1,
                padding=1,
                use_bias=False,
                depthwise_initializer=conv_initializer(3, channels[-1]),
                name=f"{prefix}_depthwise",
            )(x)
            x = switchable_batch_norm(
                channels, shared_batch_norm, f"{prefix}_depthwise_bn"
            )(x)
            x = keras.layers.ReLU(6.0, name=f"{prefix}_depthwise_relu")(x)
            x = SlimmableConv2D(
                outputs,
                1,
                use_bias=False,
                kernel_initializer=conv_initializer(1, outputs[-1]),
                name=f"{prefix}_pointwise",
            )(x)
            x = switchable_batch_norm(
                outputs, shared_batch_norm, f"{prefix}_pointwise_bn"
            )(x)
            x = keras.layers.ReLU(6.0, name=f"{prefix}_pointwise_relu")(x)
            channels = outputs

    x = classifier_head(x, include_top, classes, pooling, classifier_activation)

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
        return s_mobilenet_v1(**dict(arguments, **overrides))

    load_weights(model, weights, MANIFEST, include_top, input_tensor, rebuild)
    return model
