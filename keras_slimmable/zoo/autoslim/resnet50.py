"""AutoSlim-ResNet-50: ResNet-50 with searched channel counts.

The AutoSlim model of Yu & Huang (2019): the S-ResNet bottleneck blocks
(`keras_slimmable.zoo.resnet.features`) with, for each of four switches,
the per-layer channel counts the AutoSlim search found for a MACs budget;
the two inner convs of a bottleneck have counts of their own. Exactly the
reference architecture, so that its checkpoints load number for number.

Everything of the architecture is here: the channel lists, the switch
names, the builder, the key map of the reference checkpoints (S-ResNet's),
the weights manifest and the `Architecture` record.
"""

from keras_slimmable.zoo import autoslim
from keras_slimmable.zoo import resnet
from keras_slimmable.zoo.common import with_shared_arguments_doc
from keras_slimmable.zoo.registry import Architecture
from keras_slimmable.zoo.registry import register
from keras_slimmable.zoo.resnet import key_map

NAME = "autoslim_resnet50"
# Switch label (the model's width) -> its name, the MACs budget.
SWITCHES = {1.0: "570M", 2.0: "1.0G", 3.0: "2.0G", 4.0: "3.0G"}
DEFAULT_WIDTHS = tuple(SWITCHES)
STAGE_BLOCKS = (3, 4, 6, 3)

# The published channel lists, per switch: [0] the stem's output; then, per
# stage, one entry equal to the stage's output (read and discarded by the
# reference) and per block its (first 1x1 conv, 3x3 conv, output)
# channels; the last entry (the classes) is never read.
CHANNELS = {
    1.0: (24, 72, 8, 16, 72, 16, 16, 72, 8, 8, 72, 240, 16, 24, 240, 16, 24,
          240, 16, 16, 240, 16, 24, 240, 704, 72, 72, 704, 48, 72, 704, 48,
          72, 704, 72, 72, 704, 48, 48, 704, 48, 48, 704, 1680, 280, 240,
          1680, 120, 200, 1680, 280, 280, 1680, 1000),
    2.0: (32, 72, 16, 16, 72, 16, 16, 72, 8, 8, 72, 280, 24, 40, 280, 16,
          24, 280, 16, 24, 280, 24, 40, 280, 880, 72, 72, 880, 72, 96, 880,
          72, 72, 880, 72, 72, 880, 48, 72, 880, 168, 96, 880, 2016, 360,
          280, 2016, 320, 360, 2016, 480, 440, 2016, 1000),
    3.0: (40, 120, 16, 16, 120, 24, 24, 120, 16, 24, 120, 440, 48, 72, 440,
          32, 48, 440, 40, 56, 440, 64, 72, 440, 1024, 168, 168, 1024, 96,
          144, 1024, 120, 168, 1024, 120, 144, 1024, 120, 144, 1024, 256,
          256, 1024, 2016, 512, 512, 2016, 480, 480, 2016, 512, 512, 2016,
          1000),
    4.0: (48, 192, 16, 16, 192, 56, 56, 192, 24, 40, 192, 512, 88, 112, 512,
          64, 104, 512, 104, 112, 512, 80, 128, 512, 1024, 240, 216, 1024,
          144, 216, 1024, 192, 192, 1024, 144, 240, 1024, 240, 256, 1024,
          256, 256, 1024, 2016, 512, 512, 2016, 480, 512, 2016, 512, 512,
          2016, 1000),
}  # fmt: skip

MANIFEST = autoslim.published_manifest(
    NAME,
    model_id="f95f419",
    switch_names=SWITCHES,
    top1_error={4.0: 24.0, 3.0: 24.4, 2.0: 26.0, 1.0: 27.8},
)


def _stages(columns):
    stages = []
    position = 1
    for blocks in STAGE_BLOCKS:
        position += 1  # the stage's output count, repeated
        stage = []
        for _ in range(blocks):
            stage.append(tuple(columns[position : position + 3]))
            position += 3
        stages.append(stage)
    return stages


def _features(images, columns, batch_norm):
    return resnet.features(images, columns[0], _stages(columns), batch_norm)


def _pyramid_levels(columns):
    return resnet.pyramid_levels(_stages(columns))


@with_shared_arguments_doc
def autoslim_resnet50(
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
    """Builds AutoSlim-ResNet-50, with its four searched switches.

    S-ResNet-50's layers (a 7x7 stride-2 stem, a 3x3 stride-2 max pool,
    bottleneck stages of 3, 4, 6 and 3 blocks with the stride on the 3x3
    conv, global average pooling, a classifier whose input is sliced to
    the switch's last channel count) with the channel counts the AutoSlim
    search found for four MACs budgets, the two inner convs of every
    block with counts of their own. A block has an identity shortcut when
    its stride is 1 and its input and output channels agree at every
    switch, else a 1x1 projection with batch norm (the first block of
    every stage). Every batch norm is switchable. Its widths are the
    switch labels of the reference, `1.0` to `4.0` (ascending budget);
    the switches are named by their budget in
    `autoslim_resnet50.switches`, `{1.0: "570M", 2.0: "1.0G",
    3.0: "2.0G", 4.0: "3.0G"}`, and `keras_slimmable.zoo.autoslim_switch`
    turns a name into the width. The model outputs logits (see
    `classifier_activation`).

    Args:
        widths: the switches to build, ascending labels among
            `(1.0, 2.0, 3.0, 4.0)`. Defaults to all four, those of the
            reference checkpoint.
        {model_arguments}
        name: the model name. Defaults to `"autoslim_resnet50"`.
        {keras_applications_arguments}

    Returns:
        A `keras_slimmable.SlimmableModel`.

    Example:

    ```python
    model = keras_slimmable.zoo.autoslim_resnet50(weights="imagenet")
    width = keras_slimmable.zoo.autoslim_switch("autoslim_resnet50", "1.0G")
    logits = model(keras_slimmable.zoo.preprocess_input(images), width=width)
    ```

    Reference: [Yu & Huang, AutoSlim: Towards One-Shot Architecture Search
    for Channel Numbers, 2019](https://arxiv.org/abs/1903.11728); the
    reference implementation is
    https://github.com/JiahuiYu/slimmable_networks.
    """
    return autoslim.build(
        autoslim_resnet50,
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


autoslim_resnet50.switches = SWITCHES

ARCHITECTURE = register(
    Architecture(
        name=NAME,
        builder=autoslim_resnet50,
        widths=DEFAULT_WIDTHS,
        key_map=key_map,
        weights=MANIFEST,
    )
)
