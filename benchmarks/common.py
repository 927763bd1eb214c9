"""Shared pieces of the benchmarks: a small network and careful timing.

The machines these run on are noisy, so every benchmark interleaves the
things it compares (round robin) and reports medians side by side.
"""

import os
import statistics
import sys
import time

from absl import flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

flags.DEFINE_enum(
    "backend",
    None,
    ["tensorflow", "jax", "torch"],
    "The Keras backend; defaults to $KERAS_BACKEND, else tensorflow.",
)


def _backend_on_the_command_line():
    # Keras reads its backend when first imported, before absl parses the
    # flags: read --backend from the command line itself.
    for i, argument in enumerate(sys.argv):
        if argument.startswith("--backend="):
            return argument.split("=", 1)[1]
        if argument == "--backend" and i + 1 < len(sys.argv):
            return sys.argv[i + 1]
    return None


if _backend_on_the_command_line():
    os.environ["KERAS_BACKEND"] = _backend_on_the_command_line()

import keras  # noqa: E402

import keras_slimmable as ks  # noqa: E402

WIDTHS = (0.25, 0.5, 0.75, 1.0)
# (channels at width 1.0, stride) of the depthwise-separable blocks.
BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1))


def small_convnet(widths=WIDTHS, index=None, input_size=64, classes=10):
    """A MobileNet-like network, slimmable or plain.

    Args:
        widths: the width list.
        index: `None` for the `SlimmableModel`; a width index for a plain
            Keras model of that width with the same layers.
        input_size: the image size.
        classes: the number of classes.
    """
    slimmable = index is None

    def channels(c):
        per_width = ks.scale_channels(c, widths)
        return per_width if slimmable else per_width[index]

    def conv(filters, kernel, strides=1):
        padding = kernel // 2
        if slimmable:
            return [
                ks.SlimmableConv2D(
                    channels(filters),
                    kernel,
                    strides=strides,
                    padding=padding,
                    use_bias=False,
                )
            ]
        return [
            keras.layers.ZeroPadding2D(padding),
            keras.layers.Conv2D(
                channels(filters), kernel, strides=strides, use_bias=False
            ),
        ]

    def depthwise(filters, strides):
        if slimmable:
            return [
                ks.SlimmableDepthwiseConv2D(
                    3, strides=strides, padding=1, use_bias=False
                )
            ]
        return [
            keras.layers.ZeroPadding2D(1),
            keras.layers.DepthwiseConv2D(3, strides=strides, use_bias=False),
        ]

    def batch_norm(filters):
        if slimmable:
            return [ks.SwitchableBatchNormalization(channels(filters))]
        return [keras.layers.BatchNormalization()]

    def apply(layers, x):
        for layer in layers:
            x = layer(x)
        return x

    keras.utils.set_random_seed(0)
    inputs = keras.Input((input_size, input_size, 3))
    x = apply(conv(32, 3, 2) + batch_norm(32), inputs)
    x = keras.layers.ReLU(6.0)(x)
    previous = 32
    for filters, strides in BLOCKS:
        x = apply(depthwise(previous, strides) + batch_norm(previous), x)
        x = keras.layers.ReLU(6.0)(x)
        x = apply(conv(filters, 1) + batch_norm(filters), x)
        x = keras.layers.ReLU(6.0)(x)
        previous = filters
    x = keras.layers.GlobalAveragePooling2D()(x)
    if slimmable:
        outputs = ks.SlimmableDense(classes)(x)
        return ks.SlimmableModel(inputs, outputs, widths=widths)
    outputs = keras.layers.Dense(classes)(x)
    return keras.Model(inputs, outputs)


def quiet():
    """Silences TensorFlow's retracing warnings: benchmarks build several
    models whose Keras train functions share one code object."""
    from absl import logging

    logging.set_verbosity(logging.ERROR)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")


def time_call(function, *args, **kwargs):
    """Seconds taken by one call."""
    start = time.perf_counter()
    function(*args, **kwargs)
    return time.perf_counter() - start


def median_ms(seconds):
    return 1000.0 * statistics.median(seconds)


def paired_ratio(numerators, denominators):
    """The median of per-round ratios `numerators[i] / denominators[i]`.

    Both were timed in the same round, moments apart, so a slow spell of a
    noisy machine slows both and cancels out of their ratio.
    """
    return statistics.median(a / b for a, b in zip(numerators, denominators))


def print_table(header, rows):
    """Prints rows of strings/numbers as an aligned table."""
    table = [header] + [
        [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row]
        for row in rows
    ]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for n, row in enumerate(table):
        print("  ".join(c.rjust(w) for c, w in zip(row, widths)))
        if n == 0:
            print("  ".join("-" * w for w in widths))
