"""keras-slimmable in about a minute: one network, four widths.

A slimmable network is one set of weights that runs at several widths: the
narrow ones are faster and less accurate, and a device picks its width at
run time. This trains a small slimmable convnet with `model.fit` (every
step trains all four widths at once) to read the handwritten digits that
scikit-learn ships (no download), placed anywhere on a 16x16 canvas. Then,
for every width, it prints the test accuracy, the MACs per image and the
measured time to classify 1,024 images, and switches width live with
`set_width`.

The task is chosen so that the narrow widths are short of capacity (a
quarter of the channels read the digits much worse), and the time is taken
on a batch large enough that the arithmetic, not the per-call overhead,
dominates: the widths are timed round robin and the median of 30 calls is
shown, so a burst of load on the machine cannot reorder them.

Run: `python examples/quickstart.py`
"""

import os
import sys

# TensorFlow prints start-up messages; the examples' command-line helper
# imports it quietly (`--verbose` shows them).
os.environ["KERAS_SLIMMABLE_DEFER_IMPORTS"] = "1"
from keras_slimmable import _cli  # noqa: E402

_cli.import_tensorflow_quietly(quiet="--verbose" not in sys.argv)

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import keras_slimmable as ks  # noqa: E402

WIDTHS = (0.25, 0.5, 0.75, 1.0)
CANVAS = 16
EPOCHS = 12
BATCH = 64
TIMED_BATCH = 1024


def place(digits, rng=None):
    """8x8 digits on a `CANVAS`-square canvas: centred, or (with `rng`) at
    random positions."""
    canvas = np.zeros((len(digits), CANVAS, CANVAS, 1), "float32")
    for image, digit in zip(canvas, digits):
        if rng is None:
            top = left = (CANVAS - 8) // 2
        else:
            top, left = rng.integers(0, CANVAS - 7, size=2)
        image[top : top + 8, left : left + 8, 0] = digit
    return canvas


def digits_convnet(widths=WIDTHS, classes=10):
    """A small slimmable convnet for digits anywhere on the canvas.

    The training images are centred digits; a random shift (active in
    training only) teaches it to find them anywhere.
    """

    def block(x, filters, strides):
        channels = ks.scale_channels(filters, widths)
        x = ks.SlimmableConv2D(
            channels, 3, strides=strides, padding=1, use_bias=False
        )(x)
        x = ks.SwitchableBatchNormalization(channels, momentum=0.9)(x)
        return keras.layers.ReLU()(x)

    inputs = keras.Input((CANVAS, CANVAS, 1))
    x = keras.layers.RandomTranslation(0.25, 0.25, fill_mode="constant")(inputs)
    for filters, strides in ((16, 1), (32, 2), (32, 1), (64, 2), (64, 1)):
        x = block(x, filters, strides)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = ks.SlimmableDense(classes)(x)
    return ks.SlimmableModel(inputs, outputs, widths=widths, name="digits")


def main():
    keras.utils.set_random_seed(0)
    digits = load_digits()
    train_digits, test_digits, y_train, y_test = train_test_split(
        digits.images / 16.0, digits.target, test_size=0.25, random_state=0
    )
    x_train = place(train_digits)
    # Each test digit at four random places: 1,800 test images.
    rng = np.random.default_rng(0)
    x_test = np.concatenate([place(test_digits, rng) for _ in range(4)])
    y_test = np.tile(y_test, 4)

    model = digits_convnet()
    steps = EPOCHS * -(-len(x_train) // BATCH)
    model.compile(
        optimizer=keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(3e-3, steps)
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    print(f"Training {model.name} at widths {model.widths} at once ...")
    model.fit(
        x_train,
        y_train,
        batch_size=BATCH,
        epochs=EPOCHS,
        validation_data=(x_test, y_test),
        verbose=1 if os.isatty(1) else 2,
    )

    # `evaluate` measures every width in one pass.
    results = model.evaluate(x_test, y_test, verbose=0, return_dict=True)
    figures = ks.profile(model)
    timings = ks.measure_latency(model, batch_size=TIMED_BATCH, runs=30)
    print(
        f"\nwidth  test accuracy  MACs/image  parameters  "
        f"time for {TIMED_BATCH:,} images"
    )
    for width in model.widths:
        accuracy = results[f"w{width}_accuracy"]
        counts = figures[width]
        parameters = counts["conv_fc_params"] + counts["bn_affine_params"]
        print(
            f"{width:5.2f}  {accuracy:13.3f}  {counts['macs']:10,d}  "
            f"{parameters:10,d}  {timings[width]['median_ms']:11.1f} ms"
        )

    print("\nSwitching width live, on the first 16 test images:")
    shown = x_test[:16]
    print(f"  {'label':10}  {' '.join(str(y) for y in y_test[:16])}")
    for width in (0.25, 1.0):
        model.set_width(width)  # instant: each width has its own function
        guesses = model(shown).numpy().argmax(-1)
        wrong = int(np.sum(guesses != y_test[:16]))
        print(
            f"  {f'width {width}':10}  {' '.join(str(g) for g in guesses)}"
            f"  ({wrong} wrong)"
        )
    print(
        "\nOne set of weights; a device picks its width at run time with "
        "model.set_width(w) or model(x, width=w)."
    )


if __name__ == "__main__":
    main()
