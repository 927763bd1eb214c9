"""keras-slimmable in about a minute: one network, four widths.

Trains a small slimmable convnet on the handwritten digits that
scikit-learn ships (8x8 images, no download) with `model.fit`: every step
trains all four widths at once. Then, for every width, it prints the
accuracy on held-out digits, the parameters and MACs that width uses and
its measured latency, switching width with `set_width`.

Run: `python examples/quickstart.py`
"""

import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import keras_slimmable as ks  # noqa: E402

WIDTHS = (0.25, 0.5, 0.75, 1.0)


def digits_convnet(widths=WIDTHS, classes=10):
    """A small slimmable convnet for 8x8 single-channel images."""

    def block(x, filters, strides):
        channels = ks.scale_channels(filters, widths)
        x = ks.SlimmableConv2D(
            channels, 3, strides=strides, padding=1, use_bias=False
        )(x)
        x = ks.SwitchableBatchNormalization(channels, momentum=0.9)(x)
        return keras.layers.ReLU()(x)

    inputs = keras.Input((8, 8, 1))
    x = block(inputs, 32, 1)
    x = block(x, 64, 2)
    x = block(x, 128, 2)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = ks.SlimmableDense(classes)(x)
    return ks.SlimmableModel(inputs, outputs, widths=widths, name="digits")


def median_latency_ms(model, images, runs=100):
    model(images)  # warm up: the width's compiled function
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model(images)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main():
    keras.utils.set_random_seed(0)
    digits = load_digits()
    images = (digits.images / 16.0).astype("float32")[..., None]
    x_train, x_test, y_train, y_test = train_test_split(
        images, digits.target, test_size=0.25, random_state=0
    )

    model = digits_convnet()
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    print(f"Training {model.name} at widths {model.widths} at once ...")
    model.fit(
        x_train,
        y_train,
        batch_size=64,
        epochs=15,
        validation_data=(x_test, y_test),
        verbose=1 if os.isatty(1) else 2,
    )

    figures = ks.profile(model)
    print()
    batch = len(x_test)
    print(
        "width  test accuracy  parameters  MACs/image  "
        f"latency: 1 image, {batch} images"
    )
    for width in model.widths:
        model.set_width(width)  # instant: each width has its own function
        predictions = model.predict(x_test, verbose=0).argmax(-1)
        accuracy = np.mean(predictions == y_test)
        counts = figures[width]
        parameters = counts["conv_fc_params"] + counts["bn_affine_params"]
        one = median_latency_ms(model, x_test[:1])
        many = median_latency_ms(model, x_test)
        print(
            f"{width:5.2f}  {accuracy:13.3f}  {parameters:10d}  "
            f"{counts['macs']:10d}  {one:7.2f} ms, {many:7.2f} ms"
        )
    print(
        "\nOne set of weights; a device picks its width at run time with "
        "model.set_width(w) or model(x, width=w)."
    )


if __name__ == "__main__":
    main()
