"""S-ResNet: the slimmable ResNet-50/101/152 of Yu et al. (ICLR 2019).

The architecture is exactly that of the reference PyTorch implementation, so
its checkpoints convert weight for weight (see `key_map`). Every channel
count, the bottleneck expansion included, scales with the width, rounded
down with `int(c * w)`.

Everything of the architecture is here: the builders, the key map of the
reference checkpoints, the weights manifest (S-ResNet-50's), the recipe
and one `Architecture` record per depth.
"""

import functools
import re

import keras

from keras_slimmable.layers import SlimmableConv2D
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

# The reference's recipe for S-ResNet-50 (apps/*_train_val.yml of its code).
IMAGENET_RECIPE = {
    **REFERENCE_RECIPE,
    "batch_size": 256,
    "learning_rate": 0.1,
    "schedule": "step_decay",
    "boundaries": (30, 60, 90),
    "factor": 0.1,
    "epochs": 100,
    "crop_scale": (0.08, 1.0),
}


def _conv(filters, kernel_size, strides, padding, name):
    return SlimmableConv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=False,
        kernel_initializer=conv_initializer(
            kernel_size, widest_channels(filters)
        ),
        name=name,
    )


def bottleneck(x, inputs, mid1, mid2, outputs, strides, batch_norm, name):
    """One bottleneck block of ResNet, for any channel configurations.

    A 1x1 conv to `mid1`, batch norm, ReLU; a 3x3 conv to `mid2` (the
    stride sits here, symmetric padding 1), batch norm, ReLU; a 1x1 conv
    to `outputs`, batch norm; plus the input when the stride is 1 and
    `inputs` is `outputs` (compared whole, for all widths at once), else
    a 1x1 projection with the block's stride and its batch norm; ReLU
    after the add. Layers `{name}_conv{k}`, `{name}_bn{k}`,
    `{name}_relu{k}`, `{name}_shortcut_conv`, `{name}_shortcut_bn`,
    `{name}_add` and `{name}_out`.

    Args:
        x: the block's input.
        inputs: its channel configuration: an int, one count per width, or
            a channel rule (`keras_slimmable.layers.ScaledChannels`).
        mid1: the first 1x1 conv's output channel configuration.
        mid2: the 3x3 conv's.
        outputs: the block's output channel configuration.
        strides: the block's stride.
        batch_norm: the batch-norm factory, `batch_norm(channels, name)`
            (see `keras_slimmable.zoo.common.batch_norm_factory`).
        name: the layer name prefix, e.g. `"stage2_block1"`.
    """
    y = _conv(mid1, 1, 1, 0, f"{name}_conv1")(x)
    y = batch_norm(mid1, f"{name}_bn1")(y)
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = _conv(mid2, 3, strides, 1, f"{name}_conv2")(y)
    y = batch_norm(mid2, f"{name}_bn2")(y)
    y = keras.layers.ReLU(name=f"{name}_relu2")(y)
    y = _conv(outputs, 1, 1, 0, f"{name}_conv3")(y)
    y = batch_norm(outputs, f"{name}_bn3")(y)
    if strides == 1 and same_channels(inputs, outputs):
        shortcut = x
    else:
        shortcut = _conv(outputs, 1, strides, 0, f"{name}_shortcut_conv")(x)
        shortcut = batch_norm(outputs, f"{name}_shortcut_bn")(shortcut)
    y = keras.layers.Add(name=f"{name}_add")([y, shortcut])
    return keras.layers.ReLU(name=f"{name}_out")(y)


def features(images, stem_channels, stages, batch_norm=None):
    """The ResNet feature extractor, for any channel configurations.

    A 7x7 stride-2 stem with symmetric padding 3 (`stem_conv`, `stem_bn`,
    `stem_relu`), a 3x3 stride-2 max pool with padding 1, then stages of
    `bottleneck` blocks (`stage{s}_block{b}`), the stride 2 on the first
    block of every stage but the first. S-ResNet passes its widths' scaled
    channels, AutoSlim-ResNet-50 its searched per-switch lists.

    Args:
        images: the input tensor.
        stem_channels: the stem's output channel configuration: an int,
            one count per width, or a channel rule
            (`keras_slimmable.layers.ScaledChannels`).
        stages: a sequence of stages, each a sequence of blocks
            `(mid1, mid2, outputs)` (see `bottleneck`).
        batch_norm: the batch-norm factory, `batch_norm(channels, name)`.
            Defaults to the reference's switchable batch norm
            (`keras_slimmable.zoo.common.batch_norm_factory()`).

    Returns:
        The last block's output.
    """
    if batch_norm is None:
        batch_norm = batch_norm_factory()
    x = conv_bn_relu(
        images, stem_channels, 7, 2, 3, batch_norm, "stem", relu6=False
    )
    # Zeros stand in for -inf padding: the inputs are >= 0 after the ReLU.
    x = keras.layers.ZeroPadding2D(1, name="stem_pool_pad")(x)
    x = keras.layers.MaxPooling2D(3, 2, name="stem_pool")(x)
    channels = stem_channels
    for stage, blocks in enumerate(stages, start=1):
        for block, (mid1, mid2, outputs) in enumerate(blocks, start=1):
            x = bottleneck(
                x,
                channels,
                mid1,
                mid2,
                outputs,
                _stage_stride(stage) if block == 1 else 1,
                batch_norm,
                f"stage{stage}_block{block}",
            )
            channels = outputs
    return x


def _stage_stride(stage):
    """The stride of a stage's first block: 1 for the first stage (after
    the stem's max pool), else 2."""
    return 1 if stage == 1 else 2


def pyramid_levels(stages):
    """The feature pyramid levels of `features(images, ..., stages)`.

    Level `k` is the output of the stage at stride `2**k` (the stem and
    its max pool have stride 4): the ReLU after the add of the stage's
    last block, `stage{s}_block{b}_out`. (Not the last layer at that
    stride in graph order: the first 1x1 conv of the next stage still
    runs at it.) For ResNet-50: P2 `stage1_block3_out`, P3
    `stage2_block4_out`, P4 `stage3_block6_out`, P5 `stage4_block3_out`.

    Args:
        stages: the `stages` given to `features`.

    Returns:
        A dict from level name (`"P2"`, ...) to layer name.
    """
    stride = 4
    outputs = []
    for stage, blocks in enumerate(stages, start=1):
        stride *= _stage_stride(stage)
        outputs.append((stride, f"stage{stage}_block{len(blocks)}_out"))
    return _levels(outputs)


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
    Reference ImageNet weights (`weights="imagenet"`) exist for depth 50
    only.

    Args:
        depth: 50, 101 or 152. Defaults to `50`.
        widths: the width multipliers, ascending. Defaults to
            `(0.25, 0.5, 0.75, 1.0)`, those of the reference checkpoint.
        {model_arguments}
        name: the model name. Defaults to `"s_resnet{depth}"`.
        {keras_applications_arguments}

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
    if weights == "imagenet" and depth != 50:
        raise ValueError(
            "Reference ImageNet weights exist for depth 50 only. Received: "
            f"depth={depth}, weights='imagenet'"
        )
    manifest = dict(MANIFEST, architecture=f"s_resnet{depth}")
    arguments = builder_arguments(
        DEFAULT_WIDTHS,
        manifest,
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
    stages = []
    for blocks, filters in zip(STAGE_BLOCKS[depth], _STAGE_FILTERS):
        # The reference's exact expression: `int(f * w * 4)`.
        outputs = tuple(int(filters * w * _EXPANSION) for w in widths)
        mid = tuple(c // _EXPANSION for c in outputs)
        stages.append([(mid, mid, outputs)] * blocks)
    x = features(
        images,
        tuple(int(64 * w) for w in widths),
        stages,
        batch_norm_factory(shared_batch_norm),
    )

    x = arguments.head(x)
    builder = functools.partial(s_resnet, depth)
    return arguments.model(
        images,
        x,
        builder,
        manifest,
        key_map,
        pyramid_levels=pyramid_levels(stages),
    )


def _fixed_depth(depth):
    """The builder of S-ResNet-`depth`: `s_resnet` without its `depth`."""

    def builder(
        widths=None,
        weights=None,
        input_shape=None,
        include_top=True,
        classes=1000,
        pooling=None,
        shared_batch_norm=False,
        name=f"s_resnet{depth}",
        input_tensor=None,
        classifier_activation=None,
    ):
        return s_resnet(
            depth,
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

    builder.__name__ = builder.__qualname__ = f"s_resnet{depth}"
    builder.__doc__ = (
        f"Builds S-ResNet-{depth}: `s_resnet(depth={depth}, ...)`, which see."
    )
    return builder


s_resnet50 = _fixed_depth(50)
s_resnet101 = _fixed_depth(101)
s_resnet152 = _fixed_depth(152)


_BLOCK_LAYER = re.compile(
    r"^stage(\d+)_block(\d+)_(conv[123]|bn[123]|shortcut_conv|shortcut_bn)$"
)
_BLOCK_MODULES = {
    "conv1": "body.0",
    "bn1": "body.1",
    "conv2": "body.3",
    "bn2": "body.4",
    "conv3": "body.6",
    "bn3": "body.7",
    "shortcut_conv": "shortcut.0",
    "shortcut_bn": "shortcut.1",
}
_FIXED_MODULES = {
    "stem_conv": "features.0.0",
    "stem_bn": "features.0.1",
    "predictions": "classifier.0",
}


def key_map(model):
    """Maps the weighted layers of an S-ResNet to reference module prefixes.

    The reference numbers its modules `features.0` (the stem: conv `0`,
    batch norm `1`) and `features.{1..n}` (the bottleneck blocks, in order
    over all stages: convs `body.{0,3,6}`, batch norms `body.{1,4,7}`,
    projection `shortcut.{0,1}`), then `classifier.0`. Works for any
    depth: the block numbering is read from the layer names.

    Args:
        model: a model built by `s_resnet`.

    Returns:
        A dict from Keras layer name to the reference prefix (no
        `module.`).
    """
    names = [layer.name for layer in model.layers]
    blocks = sorted(
        {
            (int(match[1]), int(match[2]))
            for match in map(_BLOCK_LAYER.match, names)
            if match
        }
    )
    feature_index = {block: i for i, block in enumerate(blocks, start=1)}
    mapping = {}
    for name in names:
        if name in _FIXED_MODULES:
            mapping[name] = _FIXED_MODULES[name]
            continue
        match = _BLOCK_LAYER.match(name)
        if match:
            block = (int(match[1]), int(match[2]))
            mapping[name] = (
                f"features.{feature_index[block]}.{_BLOCK_MODULES[match[3]]}"
            )
    return mapping


ARCHITECTURES = tuple(
    register(
        Architecture(
            name=f"s_resnet{depth}",
            builder=builder,
            widths=DEFAULT_WIDTHS,
            key_map=key_map,
            weights=MANIFEST if depth == 50 else None,
            recipes={"imagenet": IMAGENET_RECIPE} if depth == 50 else {},
        )
    )
    for depth, builder in (
        (50, s_resnet50),
        (101, s_resnet101),
        (152, s_resnet152),
    )
)
