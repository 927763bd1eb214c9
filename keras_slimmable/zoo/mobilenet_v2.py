"""S-MobileNet v2: the slimmable MobileNet v2 of the reference.

Exactly the reference architecture (Yu et al., ICLR 2019), so that reference
checkpoints load number for number: a 3x3 stride-2 stem, 17 inverted
residual blocks, a 1x1 conv to 1280 channels with one ordinary batch norm,
global average pooling and an ordinary classifier. Channels are rounded
with `make_divisible`.

Everything of the architecture is here: the builder, the key map of the
reference checkpoints, the weights manifest, the recipe and their
`Architecture` record.
"""

import keras

from keras_slimmable.layers import SlimmableConv2D
from keras_slimmable.layers import SlimmableDepthwiseConv2D
from keras_slimmable.widths import make_divisible
from keras_slimmable.widths import scale_channels
from keras_slimmable.zoo.common import BATCH_NORM_EPSILON
from keras_slimmable.zoo.common import BATCH_NORM_MOMENTUM
from keras_slimmable.zoo.common import REFERENCE_RECIPE
from keras_slimmable.zoo.common import batch_norm_factory
from keras_slimmable.zoo.common import builder_arguments
from keras_slimmable.zoo.common import conv_bn_relu
from keras_slimmable.zoo.common import conv_initializer
from keras_slimmable.zoo.common import pyramid_levels as _levels
from keras_slimmable.zoo.common import same_channels
from keras_slimmable.zoo.common import widest_channels
from keras_slimmable.zoo.common import with_shared_arguments_doc
from keras_slimmable.zoo.registry import Architecture
from keras_slimmable.zoo.registry import register
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


@with_shared_arguments_doc
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
        {model_arguments}
        name: the model name. Defaults to `"s_mobilenet_v2"`.
        {keras_applications_arguments}

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
    stem_channels = scale_channels(32, widths, "make_divisible")
    blocks = []
    channels = stem_channels
    for expansion, filters, repeats, first_stride in BLOCK_SETTINGS:
        outputs = scale_channels(filters, widths, "make_divisible")
        for repeat in range(repeats):
            # t times the block's input channels, not rounded again.
            expanded = tuple(expansion * c for c in channels)
            stride = first_stride if repeat == 0 else 1
            blocks.append((expanded, outputs, stride, 3))
            channels = outputs
    x = features(
        images,
        stem_channels,
        blocks,
        batch_norm_factory(shared_batch_norm),
    )
    last_channels = LAST_CHANNELS
    if widths[-1] > 1.0:
        last_channels = make_divisible(LAST_CHANNELS * widths[-1])
    x = tail(x, last_channels, _plain_batch_norm)

    x = arguments.head(x, dense=keras.layers.Dense)
    return arguments.model(
        images,
        x,
        s_mobilenet_v2,
        MANIFEST,
        key_map,
        pyramid_levels=pyramid_levels(stem_channels, blocks),
    )


def _plain_batch_norm(channels, name):
    """S-MobileNet v2's tail batch norm: one, shared by every width."""
    del channels  # Only the input of the tail conv is sliced.
    return keras.layers.BatchNormalization(
        momentum=BATCH_NORM_MOMENTUM, epsilon=BATCH_NORM_EPSILON, name=name
    )


def inverted_residual(
    x, inputs, expanded, outputs, stride, batch_norm, prefix, kernel_size=3
):
    """One inverted residual block of MobileNet v2 (or MNasNet, without
    squeeze-excitation).

    A 1x1 expand conv to `expanded`, batch norm, ReLU6 (all three absent
    when `expanded` is `inputs`: the reference's `t == 1`, or a searched
    list equal to the input list); a `kernel_size` depthwise conv (stride
    `stride`, symmetric padding `kernel_size // 2`), batch norm, ReLU6; a
    1x1 project conv to `outputs` and batch norm; plus the input when the
    stride is 1 and `inputs` is `outputs`. Both decisions compare whole
    channel configurations, once for all widths, as the reference does:
    channels that agree at some widths only give no residual add.

    Layers: `{prefix}_expand`, `{prefix}_expand_bn`,
    `{prefix}_expand_relu`, `{prefix}_depthwise`, `{prefix}_depthwise_bn`,
    `{prefix}_depthwise_relu`, `{prefix}_project`, `{prefix}_project_bn`
    and `{prefix}_add`.

    Args:
        x: the block's input.
        inputs: its channel configuration: an int, one count per width, or
            a channel rule (`keras_slimmable.layers.ScaledChannels`).
        expanded: the expanded (depthwise) channel configuration.
        outputs: the output channel configuration.
        stride: the depthwise conv's stride.
        batch_norm: the batch-norm factory, `batch_norm(channels, name)`
            (see `keras_slimmable.zoo.common.batch_norm_factory`).
        prefix: the layer name prefix, e.g. `"block3"`.
        kernel_size: the depthwise kernel size. Defaults to `3`.
    """
    shortcut = x
    if not same_channels(expanded, inputs):
        x = SlimmableConv2D(
            expanded,
            1,
            use_bias=False,
            kernel_initializer=conv_initializer(1, widest_channels(expanded)),
            name=f"{prefix}_expand",
        )(x)
        x = batch_norm(expanded, f"{prefix}_expand_bn")(x)
        x = keras.layers.ReLU(6.0, name=f"{prefix}_expand_relu")(x)
    x = SlimmableDepthwiseConv2D(
        kernel_size,
        channels=expanded,
        strides=stride,
        padding=kernel_size // 2,
        use_bias=False,
        depthwise_initializer=conv_initializer(
            kernel_size, widest_channels(expanded)
        ),
        name=f"{prefix}_depthwise",
    )(x)
    x = batch_norm(expanded, f"{prefix}_depthwise_bn")(x)
    x = keras.layers.ReLU(6.0, name=f"{prefix}_depthwise_relu")(x)
    x = SlimmableConv2D(
        outputs,
        1,
        use_bias=False,
        kernel_initializer=conv_initializer(1, widest_channels(outputs)),
        name=f"{prefix}_project",
    )(x)
    x = batch_norm(outputs, f"{prefix}_project_bn")(x)
    if _has_residual(inputs, outputs, stride):
        x = keras.layers.Add(name=f"{prefix}_add")([shortcut, x])
    return x


def _has_residual(inputs, outputs, stride):
    return stride == 1 and same_channels(inputs, outputs)


def features(images, stem_channels, blocks, batch_norm=None):
    """The MobileNet v2 / MNasNet feature extractor, for any channels.

    A 3x3 stride-2 stem (`stem_conv`, `stem_bn`, `stem_relu`, ReLU6) then
    one `inverted_residual` per entry of `blocks` (`block1`, `block2`,
    ...), each reading the previous one's output channels. S-MobileNet v2
    passes its widths' scaled channels, the AutoSlim models their searched
    per-switch lists; a universally slimmable model can pass channel rules
    and its own batch norm. The tail is `tail`.

    Args:
        images: the input tensor.
        stem_channels: the stem's output channel configuration: an int,
            one count per width, or a channel rule
            (`keras_slimmable.layers.ScaledChannels`).
        blocks: a sequence of `(expanded channels, output channels,
            stride, depthwise kernel size)`, one per block.
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
    for block, (expanded, outputs, stride, kernel_size) in enumerate(
        blocks, start=1
    ):
        x = inverted_residual(
            x,
            channels,
            expanded,
            outputs,
            stride,
            batch_norm,
            f"block{block}",
            kernel_size=kernel_size,
        )
        channels = outputs
    return x


def tail(x, channels, batch_norm):
    """The 1x1 conv to `channels` (`last_conv`), its batch norm
    (`last_bn`, from the factory `batch_norm(channels, name)`) and ReLU6
    (`last_relu`) that end MobileNet v2 and MNasNet."""
    return conv_bn_relu(x, channels, 1, 1, "valid", batch_norm, "last", True)


def pyramid_levels(stem_channels, blocks):
    """The feature pyramid levels of `features(images, stem_channels,
    blocks)` followed by `tail`.

    Level `k` is the output of the last block at stride `2**k` (the stem
    has stride 2): its residual add `block{b}_add`, or its projection's
    batch norm `block{b}_project_bn` for a block without one; the
    coarsest level is the tail's output `last_relu`, the last feature
    map. For S-MobileNet v2: P2 block 3, P3 block 6, P4 block 13, P5 the
    tail.

    Args:
        stem_channels: the `stem_channels` given to `features`.
        blocks: the `blocks` given to `features`.

    Returns:
        A dict from level name (`"P2"`, ...) to layer name.
    """
    stride = 2
    channels = stem_channels
    outputs = []
    for block, (_, block_outputs, block_stride, _) in enumerate(
        blocks, start=1
    ):
        stride *= block_stride
        if _has_residual(channels, block_outputs, block_stride):
            outputs.append((stride, f"block{block}_add"))
        else:
            outputs.append((stride, f"block{block}_project_bn"))
        channels = block_outputs
    outputs.append((stride, "last_relu"))
    return _levels(outputs)


def key_map(model):
    """Maps the weighted layers of an S-MobileNet v2 to reference prefixes.

    The reference numbers its modules `features.0` (the stem: conv `0`,
    batch norm `1`), `features.{1..17}` (the inverted residual blocks:
    expand conv `body.0` and batch norm `body.1`, depthwise conv `body.3`
    and `body.4`, project conv `body.6` and `body.7`; a block without
    expansion starts at the depthwise conv, `body.0`), `features.18` (the
    tail: conv `0`, plain batch norm `1`), then `classifier.0`. Whether a
    block has an expansion is read from the model's layer names.

    Args:
        model: a model built by `s_mobilenet_v2`.

    Returns:
        A dict from Keras layer name to the reference prefix (no
        `module.`).
    """
    names = {layer.name for layer in model.layers}
    blocks = sum(repeats for _, _, repeats, _ in BLOCK_SETTINGS)
    mapping = {
        "stem_conv": "features.0.0",
        "stem_bn": "features.0.1",
        "last_conv": f"features.{blocks + 1}.0",
        "last_bn": f"features.{blocks + 1}.1",
        "predictions": "classifier.0",
    }
    for block in range(1, blocks + 1):
        body = f"features.{block}.body"
        parts = ("depthwise", "project")
        if f"block{block}_expand" in names:
            parts = ("expand",) + parts
        for position, part in enumerate(parts):
            mapping[f"block{block}_{part}"] = f"{body}.{3 * position}"
            mapping[f"block{block}_{part}_bn"] = f"{body}.{3 * position + 1}"
    return mapping


ARCHITECTURE = register(
    Architecture(
        name="s_mobilenet_v2",
        builder=s_mobilenet_v2,
        widths=DEFAULT_WIDTHS,
        key_map=key_map,
        weights=MANIFEST,
        recipes={"imagenet": IMAGENET_RECIPE},
    )
)
