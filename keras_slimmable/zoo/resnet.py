"""S-ResNet: the slimmable ResNet-50/101/152 of Yu et al. (ICLR 2019).

The architecture is exactly that of the reference PyTorch implementation, so
its checkpoints convert weight for weight (see
`keras_slimmable.convert.key_maps.s_resnet`). Every channel count, the
bottleneck expansion included, scales with the width, rounded down with
`int(c * w)`.
"""

import keras

from keras_slimmable.layers import SlimmableConv2D
from keras_slimmable.model import SlimmableModel
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

# Blocks per stage for each depth.
STAGE_BLOCKS = {
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}
_STAGE_FILTERS = (64, 128, 256, 512)
_EXPANSION = 4

# The reference's ImageNet checkpoint (S-ResNet-50 only).
MANIFEST = {
    "architecture": "s_resnet50",
    "reference_model_id": "3fca9cc",
    "reference_file": "s_resnet50_0.25_0.5_0.75_1.0.pt",
    "reference_url": (
        "https://drive.google.com/open?id=1f6q37OkZaz_0GoOAwllHlXNWuKwor2fC"
    ),
    "license": "CC BY-NC 4.0",
    "widths": DEFAULT_WIDTHS,
    "classes": 1000,
    # Published ImageNet top-1 error (%), per width.
    "top1_error": {1.0: 24.0, 0.75: 25.1, 0.5: 27.9, 0.25: 35.0},
    "keras_file": weights_file_name("s_resnet50"),
}


def _conv(filters, kernel_size, strides, padding, name):
    return SlimmableConv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=False,
        kernel_initializer=conv_initializer(kernel_size, filters[-1]),
        name=name,
    )


def _bottleneck(x, input_channels, channels, strides, shared_bn, name):
    """One bottleneck block; `channels` is its output per width."""
    mid = tuple(c // _EXPANSION for c in channels)
    y = _conv(mid, 1, 1, 0, f"{name}_conv1")(x)
    y = switchable_batch_norm(mid, shared_bn, f"{name}_bn1")(y)
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = _conv(mid, 3, strides, 1, f"{name}_conv2")(y)
    y = switchable_batch_norm(mid, shared_bn, f"{name}_bn2")(y)
    y = keras.layers.ReLU(name=f"{name}_relu2")(y)
    y = _conv(channels, 1, 1, 0, f"{name}_conv3")(y)
    y = switchable_batch_norm(channels, shared_bn, f"{name}_bn3")(y)
    if strides == 1 and input_channels == channels:
        shortcut = x
    else:
        shortcut = _conv(channels, 1, strides, 0, f"{name}_shortcut_conv")(x)
        shortcut = switchable_batch_norm(
            channels, shared_bn, f"{name}_shortcut_bn"
        )(shortcut)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(y)


@with_shared_arguments_doc
def s_resnet(
    depth=50,
    widths=None,
    weights=None,
    input_shape=None,
    include_top=True,
    classes=1000,
    pooling=None,
    shared_batch_norm=False,
    name=None,
    input_tensor=None,
    classifier_activation=None,
):
    """Builds a slimmable ResNet (S-ResNet-50, -101 or -152).

    The bottleneck ResNet of He et al. made slimmable: one network whose
    every layer, the bottleneck expansion included, narrows with the width.
    Exactly the reference architecture: a 7x7 stride-2 stem with symmetric
    padding 3, a 3x3 stride-2 max pool with padding 1, stages of bottleneck
    blocks with the stride on the 3x3 conv and a projection shortcut on
    the first block of every stage, then a global average pool and a
    classifier whose input is sliced to the width's `int(2048 * w)`
    features. Channel counts are `int(c * w)`.

    Layers are named `stem_conv`, `stem_bn`, `stage{s}_block{b}_conv{k}`,
    `stage{s}_block{b}_bn{k}`, `stage{s}_block{b}_shortcut_conv`, ...,
    `predictions` (stages and blocks counted from 1).

    Reference: [Yu et al., Slimmable Neural Networks, ICLR 2019](
    https://arxiv.org/abs/1812.08928); [He et al., Deep Residual Learning
    for Image Recognition, CVPR 2016](https://arxiv.org/abs/1512.03385).

    Args:
        depth: 50, 101 or 152. Defaults to `50`.
        widths: the width multipliers, ascending. Defaults to
            `(0.25, 0.5, 0.75, 1.0)`, those of the reference checkpoint.
        weights: `None` (random initialization, as the reference's), a
            path to a `.weights.h5` file of this package, a path to a
            reference PyTorch checkpoint (`.pt`, `.pth`, `.pth.tar`,
            ...), or, for depth 50, `"imagenet"` for the reference ImageNet
            weights once converted into the Keras cache (see
            `python -m keras_slimmable.convert`). Defaults to `None`.
        input_shape: the shape of one image, `(height, width, 3)`: any
            height and width from 32 up, as in keras.applications (the
            pooling is global), or `None` for any size. Defaults to the
            shape of `input_tensor`, else `(224, 224, 3)`.
        include_top: whether to end with the classifier. Defaults to
            `True`.
        classes: the number of classes of the classifier. Defaults to
            `1000`.
        pooling: with `include_top=False`, `None` (the last feature map),
            `"avg"` or `"max"` (global pooling). Defaults to `None`.
        shared_batch_norm: build the paper's naive baseline, one batch
            norm shared by all widths, instead of switchable batch norms.
            Defaults to `False`.
        name: the model name. Defaults to `"s_resnet{depth}"`.
        {shared_arguments}

    Returns:
        A `SlimmableModel` whose output is the logits, or the
        `classifier_activation` of them.

    Example:

    ```python
    model = keras_slimmable.zoo.s_resnet(depth=50, input_shape=(64, 64, 3))
    logits = model(images, width=0.25)
    ```
    """
    if depth not in STAGE_BLOCKS:
        raise ValueError(
            f"`depth` must be one of {sorted(STAGE_BLOCKS)}. "
            f"Received: depth={depth!r}"
        )
    if name is None:
        name = f"s_resnet{depth}"
    widths, input_shape = check_builder_arguments(
        name,
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
    if weights == "imagenet" and depth != 50:
        raise ValueError(
            "Reference ImageNet weights exist for depth 50 only. Received: "
            f"depth={depth}, weights='imagenet'"
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
    channels = tuple(int(64 * w) for w in widths)
    x = _conv(channels, 7, 2, 3, "stem_conv")(images)
    x = switchable_batch_norm(channels, shared_batch_norm, "stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    # Zeros stand in for -inf padding: the inputs are >= 0 after the ReLU.
    x = keras.layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
    x = keras.layers.MaxPooling2D(3, 2, name="stem_pool")(x)

    for stage, (blocks, filters) in enumerate(
        zip(STAGE_BLOCKS[depth], _STAGE_FILTERS), start=1
    ):
        # The reference's exact expression: `int(f * w * 4)`.
        stage_channels = tuple(int(filters * w * _EXPANSION) for w in widths)
        for block in range(1, blocks + 1):
            strides = 2 if block == 1 and stage != 1 else 1
            x = _bottleneck(
                x,
                channels,
                stage_channels,
                strides,
                shared_batch_norm,
                f"stage{stage}_block{block}",
            )
            channels = stage_channels

    x = classifier_head(x, include_top, classes, pooling, classifier_activation)

    model = SlimmableModel(
        model_inputs(images, input_tensor), x, widths=widths, name=name
    )
    manifest = dict(MANIFEST, architecture=f"s_resnet{depth}")

    def rebuild(**overrides):
        arguments = dict(
            widths=widths,
            input_shape=input_shape,
            include_top=include_top,
            classes=classes,
            pooling=pooling,
            shared_batch_norm=shared_batch_norm,
        )
        return s_resnet(depth, **dict(arguments, **overrides))

    load_weights(model, weights, manifest, include_top, input_tensor, rebuild)
    return model


@register_model("s_resnet50")
def s_resnet50(
    widths=None,
    weights=None,
    input_shape=None,
    include_top=True,
    classes=1000,
    pooling=None,
    shared_batch_norm=False,
    name="s_resnet50",
    input_tensor=None,
    classifier_activation=None,
):
    """Builds S-ResNet-50: `s_resnet(depth=50, ...)`, which see."""
    return s_resnet(
        50,
        widths=widths,
        weights=weights,
        input_shape=input_shape,
        include_top=include_top,
        classes=classes,
        pooling=pooling,
        shared_batch_norm=shared_batch_norm,
        name=name,
        input_tensor=input_tensor,
        classifier_activation=classifier_activation,
    )


@register_model("s_resnet101")
def s_resnet101(
    widths=None,
    weights=None,
    input_shape=None,
    include_top=True,
    classes=1000,
    pooling=None,
    shared_batch_norm=False,
    name="s_resnet101",
    input_tensor=None,
    classifier_activation=None,
):
    """Builds S-ResNet-101: `s_resnet(depth=101, ...)`, which see."""
    return s_resnet(
        101,
        widths=widths,
        weights=weights,
        input_shape=input_shape,
        include_top=include_top,
        classes=classes,
        pooling=pooling,
        shared_batch_norm=shared_batch_norm,
        name=name,
        input_tensor=input_tensor,
        classifier_activation=classifier_activation,
    )


@register_model("s_resnet152")
def s_resnet152(
    widths=None,
    weights=None,
    input_shape=None,
    include_top=True,
    classes=1000,
    pooling=None,
    shared_batch_norm=False,
    name="s_resnet152",
    input_tensor=None,
    classifier_activation=None,
):
    """Builds S-ResNet-152: `s_resnet(depth=152, ...)`, which see."""
    return s_resnet(
        152,
        widths=widths,
        weights=weights,
        input_shape=input_shape,
        include_top=include_top,
        classes=classes,
        pooling=pooling,
        shared_batch_norm=shared_batch_norm,
        name=name,
        input_tensor=input_tensor,
        classifier_activation=classifier_activation,
    )
