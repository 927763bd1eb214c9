"""AutoSlim-MNasNet: MNasNet with searched channel counts.

The AutoSlim model of Yu & Huang (2019) from MNasNet (Tan et al., 2019):
MobileNet v2's inverted residual blocks (`keras_slimmable.zoo.
mobilenet_v2.features`) with MNasNet's strides and 3x3 or 5x5 depthwise
kernels, without squeeze-excitation, and, for each of three switches, the
per-layer channel counts the AutoSlim search found for a MACs budget.
Exactly the reference architecture, so that its checkpoints load number
for number.

Everything of the architecture is here: the channel lists, the switch
names, the builder, the key map of the reference checkpoints (S-MobileNet
v2's layout), the weights manifest and the `Architecture` record.
"""

import functools

from keras_slimmable.zoo import autoslim
from keras_slimmable.zoo.common import with_shared_arguments_doc
from keras_slimmable.zoo.mobilenet_v2 import key_map
from keras_slimmable.zoo.registry import Architecture
from keras_slimmable.zoo.registry import register

NAME = "autoslim_mnasnet"
# Switch label (the model's width) -> its name, the MACs budget.
SWITCHES = {1.0: "217M", 2.0: "315M", 3.0: "532M"}
DEFAULT_WIDTHS = tuple(SWITCHES)

# The published channel lists, per switch (see
# `keras_slimmable.zoo.autoslim.inverted_residual_features` for what each
# position is).
CHANNELS = {
    1.0: (16, 8, 24, 16, 48, 16, 24, 16, 48, 32, 48, 32, 48, 32, 192, 56,
          400, 56, 400, 56, 400, 80, 432, 80, 648, 192, 864, 192, 864, 192,
          864, 192, 1728, 280, 1280, 1000),
    2.0: (16, 8, 40, 24, 48, 24, 40, 24, 48, 40, 80, 40, 48, 40, 352, 64,
          400, 64, 400, 64, 464, 80, 432, 80, 792, 288, 864, 288, 864, 288,
          1008, 288, 1728, 360, 1920, 1000),
    3.0: (16, 8, 64, 32, 56, 32, 72, 32, 104, 64, 128, 64, 96, 64, 384, 104,
          528, 104, 464, 104, 720, 128, 576, 128, 864, 288, 1584, 288, 1728,
          288, 1728, 288, 1728, 480, 1920, 1000),
}  # fmt: skip
# The depthwise conv's stride and kernel size of blocks 1..17 (MNasNet's;
# the expansion and channel columns of its block table are not used).
STRIDES = (1, 2, 1, 1, 2, 1, 1, 2, 1, 1, 1, 1, 2, 1, 1, 1, 1)
KERNEL_SIZES = (3, 3, 3, 3, 5, 5, 5, 5, 5, 5, 3, 3, 5, 5, 5, 5, 3)

MANIFEST = autoslim.published_manifest(
    NAME,
    model_id="31477c9",
    switch_names=SWITCHES,
    top1_error={3.0: 24.6, 2.0: 25.4, 1.0: 26.8},
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
def autoslim_mnasnet(
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
    """Builds AutoSlim-MNasNet, with its three searched switches.

    MNasNet without squeeze-excitation, as the reference builds it: a 3x3
    stride-2 stem, 17 inverted residual blocks (1x1 expansion, a 3x3 or
    5x5 depthwise conv, 1x1 projection, ReLU6) with MNasNet's strides and
    kernels, a 1x1 tail conv, global average pooling and a classifier,
    with the channel counts the AutoSlim search found for three MACs
    budgets. A block has an expansion conv when its expanded channels
    differ from its input's, and a residual add when its stride is 1 and
    its input and output channels agree at every switch. Every batch norm
    is switchable, the tail's included. Its widths are the switch labels
    of the reference, `1.0`, `2.0` and `3.0` (ascending budget); the
    switches are named by their budget in `autoslim_mnasnet.switches`,
    `{1.0: "217M", 2.0: "315M", 3.0: "532M"}`, and
    `keras_slimmable.zoo.autoslim_switch` turns a name into the width.
    The model outputs logits (see `classifier_activation`).

    Args:
        widths: the switches to build, ascending labels among
            `(1.0, 2.0, 3.0)`. Defaults to all three, those of the
            reference checkpoint.
        {model_arguments}
        name: the model name. Defaults to `"autoslim_mnasnet"`.
        {keras_applications_arguments}

    Returns:
        A `keras_slimmable.SlimmableModel`.

    Example:

    ```python
    model = keras_slimmable.zoo.autoslim_mnasnet(
        weights="autoslim_mnasnet.pt"  # a reference checkpoint
    )
    width = keras_slimmable.zoo.autoslim_switch("autoslim_mnasnet", "315M")
    logits = model(keras_slimmable.zoo.preprocess_input(images), width=width)
    ```

    Reference: [Yu & Huang, AutoSlim: Towards One-Shot Architecture Search
    for Channel Numbers, 2019](https://arxiv.org/abs/1903.11728); the
    reference implementation is
    https://github.com/JiahuiYu/slimmable_networks.
    """
    return autoslim.build(
        autoslim_mnasnet,
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


autoslim_mnasnet.switches = SWITCHES

ARCHITECTURE = register(
    Architecture(
        name=NAME,
        builder=autoslim_mnasnet,
        widths=DEFAULT_WIDTHS,
        key_map=key_map,
        weights=MANIFEST,
    )
)
