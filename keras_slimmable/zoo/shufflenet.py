"""S-ShuffleNet: the slimmable ShuffleNet (v1, 3 groups) of Yu et al.

The architecture is exactly that of the reference PyTorch implementation, so
its checkpoints convert weight for weight (see `key_map`). Its pointwise
group convolutions are separate convolutions whose active channels, at a
narrower width, are a prefix within each group (`SlimmableGroupedConv2D`).

Everything of the architecture is here: the builder, the key map of the
reference checkpoints, the weights manifest, the recipe and their
`Architecture` record.
"""

import re

import keras

from keras_slimmable.layers import ChannelShuffle
from keras_slimmable.layers import SlimmableDepthwiseConv2D
from keras_slimmable.layers import SlimmableGroupedConv2D
from keras_slimmable.zoo.common import REFERENCE_RECIPE
from keras_slimmable.zoo.common import builder_arguments
from keras_slimmable.zoo.common import conv_initializer
from keras_slimmable.zoo.common import pyramid_levels as _levels
from keras_slimmable.zoo.common import switchable_batch_norm
from keras_slimmable.zoo.common import with_shared_arguments_doc
from keras_slimmable.zoo.registry import Architecture
from keras_slimmable.zoo.registry import register
from keras_slimmable.zoo.weights import weights_file_name

DEFAULT_WIDTHS = (0.5, 1.0, 2.0)
GROUPS = 3
# (stage, output channels at width 1.0, units); the first unit of every
# stage has stride 2, the others stride 1.
STAGES = ((2, 240, 4), (3, 480, 8), (4, 960, 4))
_STEM_CHANNELS = 24
_BOTTLENECK_RATIO = 4

MANIFEST = {
    "architecture": "s_shufflenet",
    "reference_model_id": "1427f66",
    "reference_file": "s_shufflenet_0.5_1.0_2.0.pt",
    "reference_url": (
        "https://github.com/JiahuiYu/slimmable_networks/files/2709082/"
        "s_shufflenet_0.5_1.0_2.0.pt.zip"
    ),
    "license": "CC BY-NC 4.0",
    "widths": DEFAULT_WIDTHS,
    "classes": 1000,
    # Published ImageNet top-1 error (%), per width.
    "top1_error": {2.0: 28.6, 1.0: 34.5, 0.5: 42.8},
    "keras_file": weights_file_name("s_shufflenet"),
}

# The reference's recipe (apps/*_train_val.yml of its code).
IMAGENET_RECIPE = {
    **REFERENCE_RECIPE,
    "batch_size": 1024,
    "learning_rate": 0.5,
    "schedule": "linear_to_zero",
    "epochs": 250,
    "crop_scale": (0.25, 1.0),
}


def _group_conv(filters, name, split_inputs=True, kernel_size=1, **kwargs):
    return SlimmableGroupedConv2D(
        filters,
        kernel_size,
        GROUPS,
        split_inputs=split_inputs,
        use_bias=False,
        kernel_initializer=conv_initializer(kernel_size, filters[-1] // GROUPS),
        name=name,
        **kwargs,
    )


def _check_divisible(channels, what):
    if any(c % GROUPS for c in channels):
        raise ValueError(
            f"s_shufflenet splits {what} into {GROUPS} groups, so it must be "
            f"divisible by {GROUPS} at every width. Received widths that "
            f"make it {channels}; the default widths {DEFAULT_WIDTHS} work."
        )


def _shuffle_unit(x, input_channels, channels, strides, first, shared, name):
    """One ShuffleNet unit; returns `(output, its channels per width)`.

    `channels` is the unit's nominal output, `int(c * w)` per width. A
    stride-2 unit concatenates its branch with the average-pooled input, so
    its branch produces `channels - input_channels`. With `first`, every
    group of the first convolution reads the whole input.
    """
    mid = tuple(c // _BOTTLENECK_RATIO for c in channels)
    if strides == 1:
        branch = channels
    else:
        branch = tuple(o - i for o, i in zip(channels, input_channels))
    _check_divisible(mid, f"the bottleneck of {name}")
    _check_divisible(branch, f"the output of {name}'s branch")

    y = _group_conv(mid, f"{name}_gconv1", split_inputs=not first)(x)
    y = switchable_batch_norm(mid, shared, f"{name}_bn1")(y)
    y = keras.layers.ReLU(name=f"{name}_relu1")(y)
    y = ChannelShuffle(GROUPS, name=f"{name}_shuffle")(y)
    y = SlimmableDepthwiseConv2D(
        3,
        channels=mid,
        strides=strides,
        padding=1,
        use_bias=False,
        depthwise_initializer=conv_initializer(3, mid[-1]),
        name=f"{name}_dwconv",
    )(y)
    y = switchable_batch_norm(mid, shared, f"{name}_bn2")(y)
    y = _group_conv(branch, f"{name}_gconv2")(y)
    y = switchable_batch_norm(branch, shared, f"{name}_bn3")(y)
    if strides == 1:
        y = keras.layers.Add(name=f"{name}_add")([y, x])
        return keras.layers.ReLU(name=f"{name}_out")(y), channels
    y = keras.layers.ReLU(name=f"{name}_relu3")(y)
    # PyTorch's AvgPool2d(3, 2, padding=1) counts the padded zeros.
    shortcut = keras.layers.ZeroPadding2D(1, name=f"{name}_shortcut_pad")(x)
    shortcut = keras.layers.AveragePooling2D(
        3, 2, name=f"{name}_shortcut_pool"
    )(shortcut)
    y = keras.layers.Concatenate(name=f"{name}_out")([y, shortcut])
    return y, tuple(b + i for b, i in zip(branch, input_channels))


@with_shared_arguments_doc
def s_shufflenet(
    widths=None,
    weights=None,
    input_shape=None,
    include_top=True,
    classes=1000,
    pooling=None,
    shared_batch_norm=False,
    name="s_shufflenet",
    input_tensor=None,
    classifier_activation=None,
):
    """Builds S-ShuffleNet, the slimmable ShuffleNet v1 with 3 groups.

    Exactly the reference architecture: a stem of three parallel 3x3
    stride-2 convolutions (each `3 -> int(24 * w) // 3`, with its own batch
    norm and ReLU), a 3x3 stride-2 max pool without padding, 16 ShuffleNet
    units in three stages of output `int(c * w)` for c in 240, 480, 960,
    global average pooling and a classifier whose input is sliced to the
    width's `int(960 * w)` features.

    A unit: pointwise group conv (3 groups) to a quarter of the unit's
    output, batch norm, ReLU, channel shuffle, 3x3 depthwise conv (the
    stride sits here), batch norm, pointwise group conv, batch norm; then
    the identity added (stride 1) or, for stride 2, the ReLU'd branch
    concatenated with a 3x3 stride-2 average pool of the input; ReLU after
    the add. At a narrower width every group uses a prefix of its own
    channels (`SlimmableGroupedConv2D`). The groups of the very first
    unit's first convolution each read the whole stem output.

    Layers are named `stem_conv`, `stem_bn`, `stage{s}_unit{u}_gconv1`,
    `stage{s}_unit{u}_bn1`, `..._dwconv`, `..._bn2`, `..._gconv2`,
    `..._bn3`, `predictions` (stages 2 to 4 as in the ShuffleNet paper,
    units counted from 1).

    Reference: [Yu et al., Slimmable Neural Networks, ICLR 2019](
    https://arxiv.org/abs/1812.08928); [Zhang et al., ShuffleNet, CVPR
    2018](https://arxiv.org/abs/1707.01083).

    Args:
        widths: the width multipliers, ascending. Every channel count must
            split into 3 groups at every width. Defaults to
            `(0.5, 1.0, 2.0)`, those of the reference checkpoint.
        {model_arguments}
        name: the model name. Defaults to `"s_shufflenet"`.
        {keras_applications_arguments}

    Returns:
        A `SlimmableModel` whose output is the logits, or the
        `classifier_activation` of them.

    Example:

    ```python
    model = keras_slimmable.zoo.s_shufflenet(input_shape=(64, 64, 3))
    logits = model(images, width=0.5)
    ```
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
    # Three parallel stem convs, each with its own batch norm: one grouped
    # conv whose groups all read the image, and one batch norm over the
    # concatenation (batch norm is per channel).
    channels = tuple(
        GROUPS * (int(_STEM_CHANNELS * w) // GROUPS) for w in widths
    )
    x = _group_conv(
        channels,
        "stem_conv",
        split_inputs=False,
        kernel_size=3,
        strides=2,
        padding=1,
    )(images)
    x = switchable_batch_norm(channels, shared_batch_norm, "stem_bn")(x)
    x = keras.layers.ReLU(name="stem_relu")(x)
    x = keras.layers.MaxPooling2D(3, 2, name="stem_pool")(x)

    first = True
    for stage, stage_channels, units in STAGES:
        unit_channels = tuple(int(stage_channels * w) for w in widths)
        for unit in range(1, units + 1):
            x, channels = _shuffle_unit(
                x,
                channels,
                unit_channels,
                2 if unit == 1 else 1,
                first,
                shared_batch_norm,
                f"stage{stage}_unit{unit}",
            )
            first = False

    x = arguments.head(x)
    return arguments.model(
        images,
        x,
        s_shufflenet,
        MANIFEST,
        key_map,
        pyramid_levels=pyramid_levels(),
    )


def pyramid_levels():
    """S-ShuffleNet's feature pyramid levels: the output of each stage's
    last unit, `stage{s}_unit{u}_out`, stage `s` being level `s + 1`
    (P3 to P5).

    The stride-4 map (the stem's max pool) is not a level: the pool has
    no padding, so its size is not the input's over 4 (55 at 224, where
    P3 is 28), and a pyramid that upsamples P3 could not merge it.
    """
    return _levels(
        (2 ** (stage + 1), f"stage{stage}_unit{units}_out")
        for stage, _, units in STAGES
    )


_UNIT_LAYER = re.compile(r"^stage(\d+)_unit(\d+)_(gconv[12]|bn[123]|dwconv)$")
# Per layer: the reference module, with `{k}` for one module per group.
_UNIT_MODULES = {
    "gconv1": "a_{k}.0",
    "bn1": "a_{k}.1",
    "dwconv": "b.1",
    "bn2": "b.2",
    "gconv2": "c_{k}.0",
    "bn3": "c_{k}.1",
}


def key_map(model):
    """Maps the weighted layers of an S-ShuffleNet to reference prefixes.

    The reference's three parallel stem convs are `head_{k}.0` with batch
    norms `head_{k}.1`; the units are `features.{0..15}` in order, each
    with group convs `a_{k}.0` / `c_{k}.0` and their batch norms `a_{k}.1`
    / `c_{k}.1` (one module per group `k`), and the depthwise conv `b.1`
    with its batch norm `b.2` (`b.0` is the channel shuffle). The
    classifier is `classifier.0`. A Keras grouped conv and the batch norm
    after it each stand for one reference module per group, so they map
    to a list of prefixes, group 0 first.

    Args:
        model: a model built by `s_shufflenet`.

    Returns:
        A dict from Keras layer name to the reference prefix (no
        `module.`), or to the list of per-group prefixes for the grouped
        convs and their batch norms.
    """
    groups = model.get_layer("stem_conv").groups
    names = [layer.name for layer in model.layers]
    units = sorted(
        {
            (int(match[1]), int(match[2]))
            for match in map(_UNIT_LAYER.match, names)
            if match
        }
    )
    feature_index = {unit: i for i, unit in enumerate(units)}
    mapping = {
        "stem_conv": [f"head_{k}.0" for k in range(groups)],
        "stem_bn": [f"head_{k}.1" for k in range(groups)],
    }
    if "predictions" in names:
        mapping["predictions"] = "classifier.0"
    for name in names:
        match = _UNIT_LAYER.match(name)
        if not match:
            continue
        prefix = f"features.{feature_index[(int(match[1]), int(match[2]))]}"
        module = _UNIT_MODULES[match[3]]
        if "{k}" in module:
            mapping[name] = [
                f"{prefix}.{module.format(k=k)}" for k in range(groups)
            ]
        else:
            mapping[name] = f"{prefix}.{module}"
    return mapping


ARCHITECTURE = register(
    Architecture(
        name="s_shufflenet",
        builder=s_shufflenet,
        widths=DEFAULT_WIDTHS,
        key_map=key_map,
        weights=MANIFEST,
        recipes={"imagenet": IMAGENET_RECIPE},
    )
)
