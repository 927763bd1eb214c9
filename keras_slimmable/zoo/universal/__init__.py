"""What the universally slimmable models share: the range, the calibrated
widths, the universal batch norm.

A universally slimmable network (Yu & Huang, ICCV 2019) runs at any width
of its range: every layer computes its channel count from the width with
the US-Nets' rule (`keras_slimmable.layers.ScaledChannels`), and its batch
norms are universal (`keras_slimmable.layers.UniversalBatchNormalization`:
shared gamma and beta, statistics per calibrated width). One submodule per
model (`keras_slimmable.zoo.universal.mobilenet_v1`, `.mobilenet_v2`)
holds its builder, key map and manifest; they are built from the blocks
of the S-Nets (`keras_slimmable.zoo.mobilenet_v1.features`, ...) given
channel rules and the universal batch norm.

Widths:

- `width_range`: the widths the model runs at, `(0.25, 1.0)` for v1 and
  `(0.35, 1.0)` for v2;
- `widths`: the listed widths `fit` and `evaluate` report (and the
  sandwich rule's ends). Defaults to the ends of the range;
- `calibrated_widths`: the widths with batch-norm statistics. The reference
  checkpoints hold them for 0.25 (0.35) to 1.0 in steps of 0.025 (31 and
  27 widths), in that order; a new model has them for the ends of the
  range, the widths the sandwich rule trains. Others are added by
  `model.calibrate_batch_norm(widths, data)`.
"""

import functools

from keras_slimmable.zoo.common import BATCH_NORM_EPSILON
from keras_slimmable.zoo.common import BATCH_NORM_MOMENTUM
from keras_slimmable.zoo.common import builder_arguments
from keras_slimmable.zoo.weights import weights_file_name


def published_widths(low, count, step=0.025):
    """The calibrated widths of the reference checkpoints: `low` to 1.0 in
    steps of `step` (`count` of them), ascending."""
    return tuple(round(low + step * i, 6) for i in range(count))


def universal_batch_norm_factory(calibrated_widths):
    """The blocks' batch-norm factory: a universal batch norm with the
    reference's momentum and epsilon and statistics for
    `calibrated_widths`."""
    from keras_slimmable.layers import UniversalBatchNormalization

    def batch_norm(channels, name):
        return UniversalBatchNormalization(
            channels,
            calibrated_widths=calibrated_widths,
            momentum=BATCH_NORM_MOMENTUM,
            epsilon=BATCH_NORM_EPSILON,
            name=name,
        )

    return batch_norm


def published_manifest(architecture, model_id, reference_file, widths):
    """The weights manifest of a US model (see `keras_slimmable.zoo.weights`).

    The reference's model zoo publishes the checkpoints, not a top-1 table
    per width that this package could check, so `top1_error` is empty.
    """
    return {
        "architecture": architecture,
        "reference_model_id": model_id,
        "reference_file": reference_file,
        "reference_url": (
            "https://github.com/JiahuiYu/slimmable_networks#slimmable-model-zoo"
        ),
        "license": "CC BY-NC 4.0",
        "widths": tuple(widths),
        "classes": 1000,
        "top1_error": {},
        "keras_file": weights_file_name(architecture),
    }


def calibrated_default(calibrated_widths, weights, published, width_range):
    """The calibrated widths a builder uses: as given, else the published
    list with reference weights, else the ends of the range."""
    if calibrated_widths is not None:
        return tuple(float(w) for w in calibrated_widths)
    if weights is not None and not str(weights).endswith(".weights.h5"):
        return published
    return tuple(width_range)


def check_shared_batch_norm(shared_batch_norm):
    if shared_batch_norm:
        raise ValueError(
            "A universally slimmable network has universal batch norms (one "
            "gamma and beta shared by all widths, statistics per calibrated "
            "width); the shared-batch-norm baseline applies to the "
            "fixed-width S-Nets. Received: shared_batch_norm=True"
        )


def build(
    builder,
    layers,
    manifest,
    key_map,
    default_widths,
    width_range,
    published,
    *,
    widths,
    calibrated_widths,
    weights,
    input_shape,
    include_top,
    classes,
    pooling,
    shared_batch_norm,
    name,
    input_tensor,
    classifier_activation,
    dense=None,
    pyramid_levels=None,
):
    """Builds a US model: `layers(images, batch_norm)` gives its last
    feature map, whose `pyramid_levels` the model exposes without its
    classifier; the rest is every zoo builder's (`builder_arguments`)."""
    check_shared_batch_norm(shared_batch_norm)
    arguments = builder_arguments(
        default_widths,
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
    calibrated = calibrated_default(
        calibrated_widths, weights, published, width_range
    )
    images = arguments.images()
    x = layers(images, universal_batch_norm_factory(calibrated))
    x = arguments.head(x, dense=dense)
    return arguments.model(
        images,
        x,
        functools.partial(builder, calibrated_widths=calibrated),
        manifest,
        key_map,
        width_range=width_range,
        pyramid_levels=pyramid_levels,
    )
