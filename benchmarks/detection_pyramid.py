"""How the feature pyramid keeps its channels fixed across widths: the
reference's zero padding against this package's slimmable lateral
convolutions, side by side.

    python benchmarks/detection_pyramid.py [--image_size 224] [--repeats 50]

For each zoo backbone and width, the backbone's pyramid levels (P2-P5, or
those it has) enter a 256-channel feature pyramid through 1x1 lateral
convolutions. The reference pads each level with zeros back to its full
channel count and runs the full convolution; `SlimmableConv2D` with a fixed
output count reads only the leading input channels of its kernel. Both
give the same output (checked here, and in tests/backends/test_retinanet.py).
The script prints, per width: the backbone's MACs, the laterals' MACs both
ways, and the measured time of the four lateral convolutions both ways
(TensorFlow, compiled, batch 1, median of `--repeats`), with the ratios.
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from keras_slimmable import SlimmableModel  # noqa: E402
from keras_slimmable import zoo  # noqa: E402
from keras_slimmable.profiling import profile  # noqa: E402

FPN_CHANNELS = 256
MODELS = {
    "s_resnet50": (0.25, 0.5, 0.75, 1.0),
    "s_mobilenet_v2": (0.35, 0.5, 0.75, 1.0),
}


def median_seconds(function, inputs, repeats):
    function(*inputs)  # trace
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function(*inputs)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def lateral_functions(full, kernels):
    """The lateral convolutions of every level, slimmable and zero-padded,
    as compiled TensorFlow functions of the levels (sorted by name)."""

    @tf.function
    def sliced(*features):
        return [
            tf.nn.conv2d(f, kernels[k][:, :, : f.shape[-1]], 1, "VALID")
            for k, f in zip(sorted(full), features)
        ]

    @tf.function
    def padded(*features):
        outputs = []
        for k, f in zip(sorted(full), features):
            # Concatenated zeros: TensorFlow's graph optimizer folds a
            # `tf.pad` into the convolution's spatial padding and then
            # rejects the channel padding.
            zeros = tf.zeros(f.shape[:-1] + (full[k] - f.shape[-1],))
            f = tf.concat([f, zeros], axis=-1)
            outputs.append(tf.nn.conv2d(f, kernels[k], 1, "VALID"))
        return outputs

    return sliced, padded


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    args = parser.parse_args()
    shape = (args.image_size, args.image_size, 3)
    rng = np.random.default_rng(0)
    images = rng.random((1,) + shape).astype("float32")
    print(
        f"Lateral 1x1 convolutions into a {FPN_CHANNELS}-channel pyramid, "
        f"{args.image_size}px, batch 1, TensorFlow CPU, median of "
        f"{args.repeats}"
    )
    for name in args.models:
        widths = MODELS[name]
        backbone = getattr(zoo, name)(
            widths=widths, include_top=False, weights=None, input_shape=shape
        )
        levels = backbone.pyramid_outputs
        pyramid = SlimmableModel(
            backbone.inputs[0],
            levels,
            widths=widths,
        )
        full = {k: v.shape[-1] for k, v in levels.items()}
        kernels = {
            k: tf.constant(
                rng.normal(size=(1, 1, c, FPN_CHANNELS)).astype("float32")
            )
            for k, c in full.items()
        }
        backbone_macs = profile(backbone, shape)

        sliced, padded = lateral_functions(full, kernels)

        print(f"\n{name}: levels {sorted(full)}, full channels {full}")
        print(
            "| width | backbone MACs | lateral MACs sliced | zero-padded | "
            "padded / sliced MACs | lateral time sliced | zero-padded | "
            "padded / sliced time | max difference |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        for width in widths:
            outputs = pyramid(images, width=width)
            features = [
                tf.constant(keras.ops.convert_to_numpy(outputs[k]))
                for k in sorted(full)
            ]
            sliced_macs = sum(
                int(np.prod(f.shape[1:])) * FPN_CHANNELS for f in features
            )
            padded_macs = sum(
                int(np.prod(f.shape[1:3])) * full[k] * FPN_CHANNELS
                for k, f in zip(sorted(full), features)
            )
            difference = max(
                float(tf.reduce_max(tf.abs(a - b)))
                for a, b in zip(sliced(*features), padded(*features))
            )
            t_sliced = median_seconds(sliced, features, args.repeats)
            t_padded = median_seconds(padded, features, args.repeats)
            print(
                f"| {width} | {backbone_macs[width]['macs'] / 1e6:.0f} M | "
                f"{sliced_macs / 1e6:.0f} M | {padded_macs / 1e6:.0f} M | "
                f"{padded_macs / sliced_macs:.2f}x | "
                f"{t_sliced * 1e3:.2f} ms | {t_padded * 1e3:.2f} ms | "
                f"{t_padded / t_sliced:.2f}x | {difference:.1e} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
