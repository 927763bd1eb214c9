"""AutoSlim-MobileNet v1: MobileNet v1 with searched channel counts.

The AutoSlim model of Yu & Huang (2019): the S-MobileNet v1 layers
(`keras_slimmable.zoo.mobilenet_v1.features`) with, for each of three
switches, the per-layer channel counts the AutoSlim search found for a
MACs budget. Exactly the reference architecture, so that its checkpoints
load number for number.

Everything of the architecture is here: the channel lists, the switch
names, the builder, the key map of the reference checkpoints (S-MobileNet
v1's), the weights manifest and the `Architecture` record.
"""

from keras_slimmable.zoo import autoslim
from keras_slimmable.zoo import mobilenet_v1
from keras_slimmable.zoo.common import with_shared_arguments_doc
from keras_slimmable.zoo.mobilenet_v1 import key_map
from keras_slimmable.zoo.registry import Architecture
from keras_slimmable.zoo.registry import register

NAME = "autoslim_mobilenet_v1"
# Switch label (the model's width) -> its name, the MACs budget.
SWITCHES = {1.0: "150M", 2.0: "325M", 3.0: "572M"}
DEFAULT_WIDTHS = tuple(SWITCHES)

# The published channel lists, per switch: [0] the stem's output, [b] the
# pointwise output of block b = 1..13; the last entry (the classes) is
# never read.
CHANNELS = {
    1.0: (16, 32, 48, 48, 88, 88, 224, 176, 224, 368, 320, 224, 744, 744,
          1000),
    2.0: (16, 32, 48, 64, 112, 184, 320, 368, 320, 416, 464, 560, 1128, 1128,
          1000),
    3.0: (24, 64, 128, 144, 232, 232, 560, 464, 512, 464, 560, 560, 1128,
          1128, 1000),
}  # fmt: skip
# The depthwise conv's stride of blocks 1..13.
STRIDES = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)

MANIFEST = autoslim.published_manifest(
    NAME,
    model_id="9b0b1ab",
    switch_names=SWITCHES,
    top1_error={3.0: 27.0, 2.0: 28.5, 1.0: 32.1},
)


def _blocks(columns):
    return [(columns[b], STRIDES[b - 1]) for b in range(1, 14)]


def _features(images, columns, batch_norm):
    return mobilenet_v1.features(
        images, columns[0], _blocks(columns), batch_norm
    )


def _pyramid_levels(columns):
    return mobilenet_v1.pyramid_levels(_blocks(columns))


@with_shared_arguments_doc
def autoslim_mobilenet_v1(
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
    """Builds AutoSlim-MobileNet v1, with its three searched switches.

    S-MobileNet v1's layers (a 3x3 stride-2 stem, 13 depthwise separable
    blocks, global average pooling, a classifier whose input is sliced to
    the switch's last channel count) with the channel counts the AutoSlim
    search found for three MACs budgets. Its widths are the switch labels
    of the reference, `1.0`, `2.0` and `3.0` (ascending budget); the
    switches are named by their budget in
    `autoslim_mobilenet_v1.switches`, `{1.0: "150M", 2.0: "325M",
    3.0: "572M"}`, and `keras_slimmable.zoo.autoslim_switch` turns a name
    into the width. Every batch norm is switchable. The model outputs
    logits (see `classifier_activation`).

    Args:
        widths: the switches to build, ascending labels among
            `(1.0, 2.0, 3.0)`. Defaults to all three, those of the
            reference checkpoint.
        {model_arguments}
        name: the model name. Defaults to `"autoslim_mobilenet_v1"`.
        {keras_applications_arguments}

    Returns:
        A `keras_slimmable.SlimmableModel`.

    Example:

    ```python
    model = keras_slimmable.zoo.autoslim_mobilenet_v1(weights="imagenet")
    images = keras_slimmable.zoo.preprocess_input(images)  # RGB in [0, 255]
    logits = model(images, width=1.0)  # the 150M switch
    ```

    Reference: [Yu & Huang, AutoSlim: Towards One-Shot Architecture Search
    for Channel Numbers, 2019](https://arxiv.org/abs/1903.11728); the
    reference implementation is
    https://github.com/JiahuiYu/slimmable_networks.
    """
    return autoslim.build(
        autoslim_mobilenet_v1,
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


autoslim_mobilenet_v1.switches = SWITCHES

ARCHITECTURE = register(
    Architecture(
        name=NAME,
        builder=autoslim_mobilenet_v1,
        widths=DEFAULT_WIDTHS,
        key_map=key_map,
        weights=MANIFEST,
    )
)
