"""S-MobileNet v1: the slimmable MobileNet v1 of the reference.

Exactly the reference architecture (Yu et al., ICLR 2019), so that reference
checkpoints load number for number: a 3x3 stride-2 stem, 13 depthwise
separable blocks, global average pooling and a classifier whose input is
sliced to the active width. Channels are rounded with `make_divisible`.

Everything of the architecture is here: the builder, the key map of the
reference checkpoints, the weights manifest, the recipes and their
`Architecture` record.
"""

import keras

from keras_slimmable.layers import SlimmableConv2D
from keras_slimmable.layers import SlimmableDepthwiseConv2D
from keras_slimmable.widths import scale_channels
from keras_slimmable.zoo.common import REFERENCE_RECIPE
from keras_slimmable.zoo.common import batch_norm_factory
from keras_slimmable.zoo.common import builder_arguments
from keras_slimmable.zoo.common import conv_bn_relu
from keras_slimmable.zoo.common import conv_initializer
from keras_slimmable.zoo.common import pyramid_levels as _levels
from keras_slimmable.zoo.common import widest_channels
from keras_slimmable.zoo.common import with_shared_arguments_doc
from keras_slimmable.zoo.registry import Architecture
from keras_slimmable.zoo.registry import register
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

# The reference's recipe (apps/*_train_val.yml of its code).
IMAGENET_RECIPE = {
    **REFERENCE_RECIPE,
    "batch_size": 160,
    "learning_rate": 0.045,
    "schedule": "exponential_per_epoch",
    "decay": 0.98,
    "epochs": 480,
    "crop_scale": (0.25, 1.0),
}

# CIFAR-10 at 32 x 32: that of `examples/reproduce_cifar10.py`, which
# measured it (3 epochs of the 50,000 training images in about 30 minutes
# on a 2-core CPU; the learning rate was chosen from 60 steps of this
# model). The standard CIFAR augmentation: `crop_padding` (zero-pad 4
# pixels, random 32 x 32 crop), horizontal flip, no colour jitter or
# lighting; evaluation on the image itself (`resize_size=32`).
CIFAR10_RECIPE = {
    "batch_size": 128,
    "learning_rate": 0.05,
    "schedule": "linear_to_zero",
    "epochs": 3,
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 5e-4,
    "image_size": 32,
    "resize_size": 32,
    "crop_padding": 4,
    "color_jitter": 0.0,
    "lighting": 0.0,
    "unbiased_moving_variance": False,
}


@with_shared_arguments_doc
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
        {model_arguments}
        name: the model name. Defaults to `"s_mobilenet_v1"`.
        {keras_applications_arguments}

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
    arguments = builder_arguments(
        DEFAULT_WIDTHS,
        MANIFEST,
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
    widths = arguments.widths
    images = arguments.images()
    blocks = []
    for filters, repeats, first_stride in BLOCK_SETTINGS:
        outputs = scale_channels(filters, widths, "make_divisible")
        for repeat in range(repeats):
            blocks.append((outputs, first_stride if repeat == 0 else 1))
    x = features(
        images,
        scale_channels(32, widths, "make_divisible"),
        blocks,
        batch_norm_factory(shared_batch_norm),
    )
    x = arguments.head(x)
    return arguments.model(
        images,
        x,
        s_mobilenet_v1,
        MANIFEST,
        key_map,
        pyramid_levels=pyramid_levels(blocks),
    )


def separable_block(x, inputs, outputs, stride, batch_norm, prefix):
    """One depthwise separable block of MobileNet v1.

    A 3x3 depthwise conv (stride `stride`, symmetric padding 1), batch
    norm, ReLU6, a 1x1 conv to `outputs`, batch norm, ReLU6: layers
    `{prefix}_depthwise`, `{prefix}_depthwise_bn`, `{prefix}_depthwise_relu`,
    `{prefix}_pointwise`, `{prefix}_pointwise_bn` and
    `{prefix}_pointwise_relu`.

    Args:
        x: the block's input.
        inputs: the input channel configuration (the depthwise conv keeps
            it): an int, one count per width, or a channel rule
            (`keras_slimmable.layers.ScaledChannels`).
        outputs: the output channel configuration, of the same kinds.
        stride: the depthwise conv's stride.
        batch_norm: the batch-norm factory, `batch_norm(channels, name)`
            (see `keras_slimmable.zoo.common.batch_norm_factory`).
        prefix: the layer name prefix, e.g. `"block3"`.
    """
    x = SlimmableDepthwiseConv2D(
        3,
        channels=inputs,
        strides=stride,
        padding=1,
        use_bias=False,
        depthwise_initializer=conv_initializer(3, widest_channels(inputs)),
        name=f"{prefix}_depthwise",
    )(x)
    x = batch_norm(inputs, f"{prefix}_depthwise_bn")(x)
    x = keras.layers.ReLU(6.0, name=f"{prefix}_depthwise_relu")(x)
    x = SlimmableConv2D(
        outputs,
        1,
        use_bias=False,
        kernel_initializer=conv_initializer(1, widest_channels(outputs)),
        name=f"{prefix}_pointwise",
    )(x)
    x = batch_norm(outputs, f"{prefix}_pointwise_bn")(x)
    return keras.layers.ReLU(6.0, name=f"{prefix}_pointwise_relu")(x)


def features(images, stem_channels, blocks, batch_norm=None):
    """The MobileNet v1 feature extractor, for any channel configuration.

    A 3x3 stride-2 stem (`stem_conv`, `stem_bn`, `stem_relu`) then one
    `separable_block` per entry of `blocks` (`block1`, `block2`, ...),
    each reading the previous one's output channels. S-MobileNet v1 passes
    its widths' scaled channels, AutoSlim-MobileNet v1 its searched
    per-switch lists; a universally slimmable model can pass channel
    rules and its own batch norm.

    Args:
        images: the input tensor.
        stem_channels: the stem's output channel configuration: an int,
            one count per width, or a channel rule
            (`keras_slimmable.layers.ScaledChannels`).
        blocks: a sequence of `(output channels, stride)`, one per block.
        batch_norm: the batch-norm factory, `batch_norm(channels, name)`.
            Defaults to the reference's switchable batch norm
            (`keras_slimmable.zoo.common.batch_norm_factory()`).

    Returns:
        The last block's output.
    """
    if batch_norm is None:
        batch_norm = batch_norm_factory()
    x = conv_bn_relu(
        images, stem_channels, 3, 2, 1, batch_norm, "stem", relu6=True
    )
    channels = stem_channels
    for block, (outputs, stride) in enumerate(blocks, start=1):
        x = separable_block(
            x, channels, outputs, stride, batch_norm, f"block{block}"
        )
        channels = outputs
    return x


def pyramid_levels(blocks):
    """The feature pyramid levels of `features(images, ..., blocks)`.

    Level `k` is the last block at stride `2**k` (the stem has stride 2),
    its pointwise ReLU6 `block{b}_pointwise_relu`; the coarsest is the
    last feature map. For S-MobileNet v1: P2 block 3, P3 block 5, P4
    block 11, P5 block 13.

    Args:
        blocks: the `blocks` given to `features`.

    Returns:
        A dict from level name (`"P2"`, ...) to layer name.
    """
    stride = 2
    outputs = []
    for block, (_, block_stride) in enumerate(blocks, start=1):
        stride *= block_stride
        outputs.append((stride, f"block{block}_pointwise_relu"))
    return _levels(outputs)


def key_map(model):
    """Maps the weighted layers of an S-MobileNet v1 to reference prefixes.

    The reference numbers its modules `features.0` (the stem: conv `0`,
    batch norm `1`), `features.{1..13}` (the depthwise separable blocks:
    depthwise conv `body.0`, its batch norm `body.1`, pointwise conv
    `body.3`, its batch norm `body.4`), then `classifier.0`.

    Args:
        model: a model built by `s_mobilenet_v1`.

    Returns:
        A dict from Keras layer name to the reference prefix (no
        `module.`).
    """
    del model  # The layout is fixed.
    mapping = {
        "stem_conv": "features.0.0",
        "stem_bn": "features.0.1",
        "predictions": "classifier.0",
    }
    blocks = sum(repeats for _, repeats, _ in BLOCK_SETTINGS)
    for block in range(1, blocks + 1):
        body = f"features.{block}.body"
        mapping[f"block{block}_depthwise"] = f"{body}.0"
        mapping[f"block{block}_depthwise_bn"] = f"{body}.1"
        mapping[f"block{block}_pointwise"] = f"{body}.3"
        mapping[f"block{block}_pointwise_bn"] = f"{body}.4"
    return mapping


ARCHITECTURE = register(
    Architecture(
        name="s_mobilenet_v1",
        builder=s_mobilenet_v1,
        widths=DEFAULT_WIDTHS,
        key_map=key_map,
        weights=MANIFEST,
        recipes={"imagenet": IMAGENET_RECIPE, "cifar10": CIFAR10_RECIPE},
    )
)
