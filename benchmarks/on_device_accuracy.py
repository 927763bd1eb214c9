r"""Top-1 per width and per LiteRT format of a trained slimmable model.

Loads a trained `SlimmableModel` (`.keras`), exports it as one LiteRT file
per format (float32, float16, dynamic range, int8; each one file with a
signature per width), the int8 file calibrated on training images (never
test images), and evaluates every signature on the test images with
`ai_edge_litert`'s interpreter, next to the Keras model's own top-1 at each
width. Also prints each file's size and the float32 and int8 median latency
per width (batch 1, all signatures of both files timed round robin).

    python benchmarks/on_device_accuracy.py \
        --model_file=/work/runs/s_mobilenet_v1_cifar10/best.keras \
        --train_dir=/work/data/train --test_dir=/work/data/test

`--quick` evaluates 200 test images with 32 calibration images and 5
timed runs (a check that everything runs, not a measurement).
"""

import json
import os
import tempfile
import time

os.environ["KERAS_SLIMMABLE_DEFER_IMPORTS"] = "1"
from absl import flags  # noqa: E402

from keras_slimmable import _cli  # noqa: E402

FORMATS = ("float32", "float16", "dynamic_range", "int8")

flags.DEFINE_string(
    "model_file",
    "/work/runs/s_mobilenet_v1_cifar10/best.keras",
    "A trained SlimmableModel saved as .keras.",
)
flags.DEFINE_string(
    "train_dir", "/work/data/train", "Class folders of training images."
)
flags.DEFINE_string(
    "test_dir", "/work/data/test", "Class folders of test images."
)
flags.DEFINE_integer(
    "calibration_images",
    500,
    "int8: training images calibrated on (every class in proportion).",
)
flags.DEFINE_integer(
    "test_images", None, "Test images evaluated; defaults to all."
)
flags.DEFINE_integer(
    "resize_size",
    None,
    "Shorter side before the centre crop; defaults to the input size "
    "(CIFAR-sized images, as the cifar10 recipe evaluates).",
)
flags.DEFINE_integer("threads", 1, "Interpreter threads.")
flags.DEFINE_integer("runs", 200, "Timed calls per signature (median).")
flags.DEFINE_bool(
    "quick", False, "200 test images, 32 calibration images, 5 runs."
)
flags.DEFINE_string(
    "json_out", None, "Also write the results to this JSON file."
)
FLAGS = flags.FLAGS


def load_images(directory, count, size):
    """The first `count` images of `directory` (all if None) in
    `image_folder`'s evaluation order (every class in proportion), as
    `(images, labels)` arrays."""
    import numpy as np

    from keras_slimmable.data import image_folder

    dataset, _ = image_folder(
        directory,
        training=False,
        image_size=size,
        resize_size=FLAGS.resize_size or size,
        batch_size=500,
    )
    images, labels = [], []
    found = 0
    for x, y in dataset:
        images.append(x.numpy())
        labels.append(y.numpy())
        found += len(x)
        if count is not None and found >= count:
            break
    images = np.concatenate(images)[:count]
    labels = np.concatenate(labels)[:count]
    return images, labels


def keras_predictions(model, images):
    import keras
    import numpy as np

    predictions = {}
    for width in model.widths:
        batches = [
            keras.ops.convert_to_numpy(
                model(images[i : i + 500], width=width, training=False)
            ).argmax(-1)
            for i in range(0, len(images), 500)
        ]
        predictions[width] = np.concatenate(batches)
    return predictions


def litert_predictions(path, widths, images):
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    from keras_slimmable.export import signature_name

    interpreter = Interpreter(model_path=str(path), num_threads=FLAGS.threads)
    predictions = {}
    for width in widths:
        runner = interpreter.get_signature_runner(signature_name(width))
        predictions[width] = np.array(
            [
                int(runner(images=image[None])["output_0"].argmax())
                for image in images
            ]
        )
    return predictions


def main(argv):
    if len(argv) > 1:
        raise _cli.CommandLineError(f"Unexpected arguments: {argv[1:]}")
    import keras

    import keras_slimmable as ks
    from keras_slimmable import export

    if not os.path.isfile(FLAGS.model_file):
        raise _cli.CommandLineError(
            f"No file at --model_file={FLAGS.model_file}"
        )
    for name in ("train_dir", "test_dir"):
        if not os.path.isdir(FLAGS[name].value):
            raise _cli.CommandLineError(
                f"No folder at --{name}={FLAGS[name].value}"
            )
    if os.path.realpath(FLAGS.train_dir) == os.path.realpath(FLAGS.test_dir):
        raise _cli.CommandLineError(
            "--train_dir and --test_dir are the same folder: int8 must be "
            "calibrated on training images, never on the test images."
        )
    test_count = FLAGS.test_images
    calibration_count = FLAGS.calibration_images
    runs = FLAGS.runs
    if FLAGS.quick:
        test_count = test_count or 200
        calibration_count = min(calibration_count, 32)
        runs = 5
    model = keras.saving.load_model(FLAGS.model_file)
    size = int(model.input.shape[1])
    widths = tuple(model.widths)
    test_x, test_y = load_images(FLAGS.test_dir, test_count, size)
    calibration, _ = load_images(FLAGS.train_dir, calibration_count, size)
    started = time.time()
    folder = tempfile.mkdtemp(prefix="on_device_accuracy_")
    files = {}
    with _cli.quiet_stderr(not FLAGS.verbose):
        for fmt in FORMATS:
            files[fmt] = export.export_tflite(
                model,
                os.path.join(folder, f"{fmt}.tflite"),
                widths="all",
                quantization=None if fmt == "float32" else fmt,
                representative_dataset=calibration if fmt == "int8" else None,
            )
    predictions = {"keras": keras_predictions(model, test_x)}
    with _cli.quiet_stderr(not FLAGS.verbose):
        for fmt in FORMATS:
            predictions[fmt] = litert_predictions(files[fmt], widths, test_x)
        latency = {
            fmt: ks.measure_latency(
                files[fmt], runs=runs, warmup=5, num_threads=FLAGS.threads
            )
            for fmt in ("float32", "int8")
        }
    top1 = {
        source: {w: float((p[w] == test_y).mean()) for w in widths}
        for source, p in predictions.items()
    }
    agreement = {
        fmt: {
            w: float((predictions[fmt][w] == predictions["keras"][w]).mean())
            for w in widths
        }
        for fmt in FORMATS
    }
    sizes = {fmt: files[fmt].stat().st_size for fmt in FORMATS}
    print(
        f"{os.path.basename(FLAGS.model_file)} ({FLAGS.model_file}), "
        f"{size} px, widths {widths}: top-1 on {len(test_y)} test images of "
        f"{FLAGS.test_dir}; int8 calibrated on {len(calibration)} images of "
        f"{FLAGS.train_dir}; one file per format, a signature per width "
        f"({time.time() - started:.0f} s)"
    )
    print(
        "File sizes (MB): "
        + ", ".join(f"{fmt} {sizes[fmt] / 1e6:.2f}" for fmt in FORMATS)
    )
    header = ["Keras"] + list(FORMATS)
    print(
        "| width | "
        + " | ".join(header)
        + f" | float32 ms | int8 ms ({FLAGS.threads} thread, batch 1, median"
        f" of {runs}) |"
    )
    print("|---" * (len(header) + 3) + "|")
    for w in widths:
        cells = [f"{100 * top1['keras'][w]:.2f}"] + [
            f"{100 * top1[fmt][w]:.2f}" for fmt in FORMATS
        ]
        print(
            f"| {w} | "
            + " | ".join(cells)
            + f" | {latency['float32'][w]['median_ms']:.3f}"
            + f" | {latency['int8'][w]['median_ms']:.3f} |"
        )
    print(
        "Agreement with the Keras model's predictions (fraction of images): "
        + "; ".join(
            f"{fmt} " + " / ".join(f"{agreement[fmt][w]:.4f}" for w in widths)
            for fmt in FORMATS
        )
    )
    if FLAGS.json_out:
        result = {
            "model_file": FLAGS.model_file,
            "test_images": len(test_y),
            "calibration_images": len(calibration),
            "widths": list(widths),
            "top1": {
                s: {str(w): v for w, v in t.items()} for s, t in top1.items()
            },
            "agreement": {
                f: {str(w): v for w, v in a.items()}
                for f, a in agreement.items()
            },
            "file_bytes": sizes,
            "latency_ms": {
                f: {str(w): t["median_ms"] for w, t in m.items()}
                for f, m in latency.items()
            },
        }
        with open(FLAGS.json_out, "w") as file:
            json.dump(result, file, indent=1)


if __name__ == "__main__":
    _cli.run(main, "benchmarks/on_device_accuracy.py")
