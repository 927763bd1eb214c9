"""US-MobileNet v2: the universally slimmable MobileNet v2 of the reference.

S-MobileNet v2's layers (`keras_slimmable.zoo.mobilenet_v2.features`) at
any width of [0.35, 1.0]: a layer with `C` channels at full width uses
`make_divisible(C * w / r) * r` channels, `r` being the expansion factor
6 for the expanded layers and 1 elsewhere (computed in double precision
in that order, as the reference does: in float32, the 960-channel layers
at 0.525 would get 480 channels instead of 528), with universal batch
norms. The tail conv's 1280 outputs, its batch norm (one ordinary batch
norm shared by all widths) and the classifier are never sliced. Exactly
the reference architecture (Yu & Huang, ICCV 2019).
"""

import keras

from keras_slimmable.layers import ScaledChannels
from keras_slimmable.zoo import mobilenet_v2
from keras_slimmable.zoo import universal
from keras_slimmable.zoo.common import with_shared_arguments_doc
from keras_slimmable.zoo.mobilenet_v2 import key_map
from keras_slimmable.zoo.registry import Architecture
from keras_slimmable.zoo.registry import register

NAME = "us_mobilenet_v2"
WIDTH_RANGE = (0.35, 1.0)
DEFAULT_WIDTHS = WIDTH_RANGE
# The widths the reference checkpoint has statistics for: 0.35 to 1.0 in
# steps of 0.025.
PUBLISHED_CALIBRATED_WIDTHS = universal.published_widths(0.35, 27)
_STEM = ScaledChannels(32)

MANIFEST = universal.published_manifest(
    NAME, "3880cad", "us_mobilenet_v2_calibrated.pt", DEFAULT_WIDTHS
)


def _blocks():
    blocks = []
    full_inputs = 32
    for (
        expansion,
        filters,
        repeats,
        first_stride,
    ) in mobilenet_v2.BLOCK_SETTINGS:
        for repeat in range(repeats):
            stride = first_stride if repeat == 0 else 1
            if expansion == 1:
                expanded = ScaledChannels(full_inputs)
            else:
                expanded = ScaledChannels(
                    expansion * full_inputs, ratio=expansion
                )
            blocks.append((expanded, ScaledChannels(filters), stride, 3))
            full_inputs = filters
    return blocks


def _layers(images, batch_norm):
    x = mobilenet_v2.features(images, _STEM, _blocks(), batch_norm)
    return mobilenet_v2.tail(
        x, mobilenet_v2.LAST_CHANNELS, mobilenet_v2._plain_batch_norm
    )


@with_shared_arguments_doc
def us_mobilenet_v2(
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
    """Builds the universally slimmable MobileNet v2 (US-MobileNet v2).

    S-MobileNet v2's layers at any width `w` of `[0.35, 1.0]`, each layer's
    channels from the US-Nets' rule (see the module), universal batch
    norms; the 1280-channel tail, its batch norm and the classifier are the
    same at every width. Run it with `model(x, width=0.6)`; calibrate
    widths without statistics with `model.calibrate_batch_norm`.

    Args:
        widths: the listed widths `fit` and `evaluate` report, ascending,
            in `[0.35, 1.0]`, both ends included for the sandwich rule.
            Defaults to `(0.35, 1.0)`.
        calibrated_widths: the widths with batch-norm statistics. Defaults
            to the 27 widths 0.35, 0.375, ..., 1.0 of the reference
            checkpoint when `weights` is one, else `(0.35, 1.0)`.
        {model_arguments}
        name: the model name. Defaults to `"us_mobilenet_v2"`.
        {keras_applications_arguments}

    Returns:
        A `keras_slimmable.SlimmableModel` with `width_range=(0.35, 1.0)`.

    Reference: [Yu & Huang, Universally Slimmable Networks and Improved
    Training Techniques, ICCV 2019](https://arxiv.org/abs/1903.05134).
    """
    return universal.build(
        us_mobilenet_v2,
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
        dense=keras.layers.Dense,
        pyramid_levels=mobilenet_v2.pyramid_levels(_STEM, _blocks()),
    )


ARCHITECTURE = register(
    Architecture(
        name=NAME,
        builder=us_mobilenet_v2,
        widths=DEFAULT_WIDTHS,
        key_map=key_map,
        weights=MANIFEST,
        reference_arguments={"calibrated_widths": PUBLISHED_CALIBRATED_WIDTHS},
    )
)
