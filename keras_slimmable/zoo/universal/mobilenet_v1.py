"""US-MobileNet v1: the universally slimmable MobileNet v1 of the reference.

S-MobileNet v1's layers (`keras_slimmable.zoo.mobilenet_v1.features`)
with every channel count given by the US-Nets' rule at any width of
[0.25, 1.0] (`make_divisible(c * w)`, computed in double precision as the
reference does) and universal batch norms. Exactly the reference
architecture (Yu & Huang, ICCV 2019), so its checkpoints load number for
number.
"""

from keras_slimmable.layers import ScaledChannels
from keras_slimmable.zoo import mobilenet_v1
from keras_slimmable.zoo import universal
from keras_slimmable.zoo.common import with_shared_arguments_doc
from keras_slimmable.zoo.mobilenet_v1 import key_map
from keras_slimmable.zoo.registry import Architecture
from keras_slimmable.zoo.registry import register

NAME = "us_mobilenet_v1"
WIDTH_RANGE = (0.25, 1.0)
DEFAULT_WIDTHS = WIDTH_RANGE
# The widths the reference checkpoint has statistics for: 0.25 to 1.0 in
# steps of 0.025.
PUBLISHED_CALIBRATED_WIDTHS = universal.published_widths(0.25, 31)

MANIFEST = universal.published_manifest(
    NAME, "13d5af2", "us_mobilenet_v1_calibrated.pt", DEFAULT_WIDTHS
)


def _blocks():
    blocks = []
    for filters, repeats, first_stride in mobilenet_v1.BLOCK_SETTINGS:
        for repeat in range(repeats):
            stride = first_stride if repeat == 0 else 1
            blocks.append((ScaledChannels(filters), stride))
    return blocks


def _layers(images, batch_norm):
    return mobilenet_v1.features(
        images, ScaledChannels(32), _blocks(), batch_norm
    )


@with_shared_arguments_doc
def us_mobilenet_v1(
    widths=None,
    calibrated_widths=None,
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
    """Builds the universally slimmable MobileNet v1 (US-MobileNet v1).

    S-MobileNet v1's layers at any width `w` of `[0.25, 1.0]`: every layer
    with `c` channels at full width uses `make_divisible(c * w)` (the
    classifier's input too); the batch norms are universal (one gamma and
    beta shared by all widths, statistics per calibrated width). Run it
    with `model(x, width=0.4)` or `model.set_width(0.4)`; a width without
    statistics is calibrated with `model.calibrate_batch_norm`. Train it
    with `compile(..., sandwich_rule=4, inplace_distillation=True)`.

    Args:
        widths: the listed widths `fit` and `evaluate` report, ascending,
            in `[0.25, 1.0]`, both ends included for the sandwich rule.
            Defaults to `(0.25, 1.0)`.
        calibrated_widths: the widths with batch-norm statistics. Defaults
            to the 31 widths 0.25, 0.275, ..., 1.0 of the reference
            checkpoint when `weights` is one, else `(0.25, 1.0)`.
        {model_arguments}
        name: the model name. Defaults to `"us_mobilenet_v1"`.
        {keras_applications_arguments}

    Returns:
        A `keras_slimmable.SlimmableModel` with `width_range=(0.25, 1.0)`.

    Example:

    ```python
    model = keras_slimmable.zoo.us_mobilenet_v1(
        weights="us_mobilenet_v1_calibrated.pt"
    )
    logits = model(images, width=0.5)  # one of the 31 calibrated widths
    model.calibrate_batch_norm([0.31415926], training_images)
    logits = model(images, width=0.31415926)
    ```

    Reference: [Yu & Huang, Universally Slimmable Networks and Improved
    Training Techniques, ICCV 2019](https://arxiv.org/abs/1903.05134); the
    reference implementation is
    https://github.com/JiahuiYu/slimmable_networks.
    """
    return universal.build(
        us_mobilenet_v1,
        _layers,
        MANIFEST,
        key_map,
        DEFAULT_WIDTHS,
        WIDTH_RANGE,
        PUBLISHED_CALIBRATED_WIDTHS,
        widths=widths,
        calibrated_widths=calibrated_widths,
        weights=weights,
        input_shape=input_shape,
        include_top=include_top,
        classes=classes,
        pooling=pooling,
        shared_batch_norm=shared_batch_norm,
        name=name,
        input_tensor=input_tensor,
        classifier_activation=classifier_activation,
        pyramid_levels=mobilenet_v1.pyramid_levels(_blocks()),
    )


ARCHITECTURE = register(
    Architecture(
        name=NAME,
        builder=us_mobilenet_v1,
        widths=DEFAULT_WIDTHS,
        key_map=key_map,
        weights=MANIFEST,
        reference_arguments={"calibrated_widths": PUBLISHED_CALIBRATED_WIDTHS},
    )
)
