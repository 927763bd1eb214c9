"""AutoSlim-MobileNet v2: MobileNet v2 with searched channel counts.

The AutoSlim model of Yu & Huang (2019): the S-MobileNet v2 blocks
(`keras_slimmable.zoo.mobilenet_v2.features`) with, for each of three
switches, the per-layer channel counts the AutoSlim search found for a
MACs budget (in a MobileNet v2 of width 1.5). Exactly the reference
architecture, so that its checkpoints load number for number.

Everything of the architecture is here: the channel lists, the switch
names, the builder, the key map of the reference checkpoints (S-MobileNet
v2's), the weights manifest and the `Architecture` record.
"""

import functools

from keras_slimmable.zoo import autoslim
from keras_slimmable.zoo.common import with_shared_arguments_doc
from keras_slimmable.zoo.mobilenet_v2 import key_map
from keras_slimmable.zoo.registry import Architecture
from keras_slimmable.zoo.registry import register

NAME = "autoslim_mobilenet_v2"
# Switch label (the model's width) -> its name, the MACs budget.
SWITCHES = {1.0: "207M", 2.0: "305M", 3.0: "505M"}
DEFAULT_WIDTHS = tuple(SWITCHES)

# The published channel lists, per switch (see
# `keras_slimmable.zoo.autoslim.inverted_residual_features` for what each
# position is).
CHANNELS = {
    1.0: (8, 8, 96, 16, 96, 16, 96, 24, 144, 24, 144, 24, 144, 48, 288, 48,
          288, 48, 288, 48, 288, 64, 432, 64, 432, 64, 648, 176, 720, 176,
          720, 176, 1440, 280, 1920, 1000),
    2.0: (8, 8, 96, 16, 96, 16, 96, 24, 144, 24, 144, 24, 144, 56, 288, 56,
          288, 56, 288, 56, 288, 96, 432, 96, 432, 96, 864, 240, 1440, 240,
          960, 240, 1440, 480, 1920, 1000),
    3.0: (32, 16, 144, 24, 176, 24, 192, 48, 240, 48, 144, 48, 264, 88, 288,
          88, 336, 88, 432, 88, 576, 144, 576, 144, 648, 144, 864, 240, 1440,
          240, 1440, 240, 1440, 480, 1920, 1000),
}  # fmt: skip
# The depthwise conv's stride and kernel size of blocks 1..17.
STRIDES = (1, 2, 1, 2, 1, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 1, 1)
KERNEL_SIZES = (3,) * 17

MANIFEST = autoslim.published_manifest(
    NAME,
    model_id="a24f1f2",
    switch_names=SWITCHES,
    top1_error={3.0: 24.6, 2.0: 25.8, 1.0: 27.0},
)

_features = functools.partial(
    autoslim.inverted_residual_features,
    strides=STRIDES,
    kernel_sizes=KERNEL_SIZES,
)
_pyramid_levels = functools.partial(
    autoslim.inverted_residual_pyramid_levels,
    strides=STRIDES,
    kernel_sizes=KERNEL_SIZES,
)


@with_shared_arguments_doc
def autoslim_mobilenet_v2(
    widths=None,
    weights=None,
    input_shape=None,
    include_top=True,
    classes=1000,
    pooling=None,
    shared_batch_norm=False,
    name=NAME,
    input_tensor=None,
    classifier_activation=None,
):
    """Builds AutoSlim-MobileNet v2, with its three searched switches.

    S-MobileNet v2's layers (a 3x3 stride-2 stem, 17 inverted residual
    blocks, a 1x1 tail conv to 1920 channels, global average pooling and
    a classifier) with the channel counts the AutoSlim search found for
    three MACs budgets. A block has an expansion conv when its expanded
    channels differ from its input's, and a residual add when its stride
    is 1 and its input and output channels agree at every switch (so the
    first block has none). Every batch norm is switchable, the tail's
    included. Its widths are the switch labels of the reference, `1.0`,
    `2.0` and `3.0` (ascending budget); the switches are named by their
    budget in `autoslim_mobilenet_v2.switches`, `{1.0: "207M",
    2.0: "305M", 3.0: "505M"}`, and `keras_slimmable.zoo.autoslim_switch`
    turns a name into the width. The model outputs logits (see
    `classifier_activation`).

    Args:
        widths: the switches to build, ascending labels among
            `(1.0, 2.0, 3.0)`. Defaults to all three, those of the
            reference checkpoint.
        {model_arguments}
        name: the model name. Defaults to `"autoslim_mobilenet_v2"`.
        {keras_applications_arguments}

    Returns:
        A `keras_slimmable.SlimmableModel`.

    Example:

    ```python
    model = keras_slimmable.zoo.autoslim_mobilenet_v2(
        weights="autoslim_mobilenet_v2.pt"  # a reference checkpoint
    )
    width = keras_slimmable.zoo.autoslim_switch("autoslim_mobilenet_v2", "305M")
    logits = model(keras_slimmable.zoo.preprocess_input(images), width=width)
    ```

    Reference: [Yu & Huang, AutoSlim: Towards One-Shot Architecture Search
    for Channel Numbers, 2019](https://arxiv.org/abs/1903.11728); the
    reference implementation is
    https://github.com/JiahuiYu/slimmable_networks.
    """
    return autoslim.build(
        autoslim_mobilenet_v2,
        CHANNELS,
        MANIFEST,
        key_map,
        _features,
        pyramid_levels=_pyramid_levels,
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


autoslim_mobilenet_v2.switches = SWITCHES

ARCHITECTURE = register(
    Architecture(
        name=NAME,
        builder=autoslim_mobilenet_v2,
        widths=DEFAULT_WIDTHS,
        key_map=key_map,
        weights=MANIFEST,
    )
)
