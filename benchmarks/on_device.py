r"""One LiteRT file for every width against one file per width.

Exports a zoo model as one file per width, and as one multi-width file in
each layout (`materialized`, `sliced`, `shared`), with and without batch norm
folding, and in float16, dynamic range and int8 (calibrated on random
images: the latency does not depend on the ranges); prints every file's size
(deterministic) and each signature's median latency in `ai_edge_litert`'s
interpreter (XNNPACK, batch 1), all signatures timed round robin. Random
weights with measured batch norm statistics: size and latency do not
depend on the values, as long as no activation is subnormal (see
`calibrate`).

    python benchmarks/on_device.py --model=s_mobilenet_v1 --threads=1
"""

import os
import statistics
import tempfile
import time

from absl import app
from absl import flags

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

flags.DEFINE_string("model", "s_mobilenet_v1", "Zoo model name.")
flags.DEFINE_integer("image_size", 224, "Input height and width.")
flags.DEFINE_integer("threads", 1, "Interpreter threads.")
flags.DEFINE_integer("repeats", 30, "Timed runs per signature (median).")
flags.DEFINE_bool("quantized", True, "Also float16, dynamic range, int8.")
flags.DEFINE_list(
    "variants",
    None,
    "Only these one-file variants (materialized, materialized_folded, "
    "sliced, shared, float16, dynamic_range, int8); default all.",
)
flags.DEFINE_bool(
    "saved_model",
    False,
    "Instead: SavedModel latency of each width's plain model with and "
    "without batch norm folding, batch 1 and 16.",
)
FLAGS = flags.FLAGS


def runner(path, signature):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=FLAGS.threads)
    return interpreter, interpreter.get_signature_runner(signature)


def median_latencies(runners, images, repeats):
    """`{key: median ms}`, the runners timed round robin."""
    times = {key: [] for key in runners}
    for run in runners.values():
        run(images=images)  # warm up (XNNPACK packs the weights)
    for _ in range(repeats):
        for key, run in runners.items():
            start = time.perf_counter()
            run(images=images)
            times[key].append(1000 * (time.perf_counter() - start))
    return {key: statistics.median(t) for key, t in times.items()}


def calibrate(model, size):
    """Random weights with batch norm statistics measured at every width.

    A fresh model's batch norms are identities, so its activations shrink
    layer after layer into float32 subnormals, which x86 computes about
    ten times slower: timing such a model measures the subnormals. Here
    every batch norm's moving statistics are those of a batch of random
    images at its width (momentum 0), as in a trained model.
    """
    import keras
    import numpy as np

    from keras_slimmable import SwitchableBatchNormalization

    batch_norms = []
    for layer in model._flatten_layers():
        if isinstance(layer, SwitchableBatchNormalization):
            batch_norms.extend(layer.batch_norms)
        elif isinstance(layer, keras.layers.BatchNormalization):
            batch_norms.append(layer)
    images = np.random.default_rng(0).normal(size=(4, size, size, 3))
    for batch_norm in batch_norms:
        batch_norm.momentum = 0.0
    for width in model.widths:
        model(images.astype("float32"), width=width, training=True)
    for batch_norm in batch_norms:
        batch_norm.momentum = 0.99


def main(argv):
    del argv
    import numpy as np

    from keras_slimmable import export
    from keras_slimmable import profile
    from keras_slimmable import zoo

    size = FLAGS.image_size
    model = zoo.create_model(FLAGS.model, input_shape=(size, size, 3))
    calibrate(model, size)
    if FLAGS.saved_model:
        saved_model_folding(model, size)
        return
    widths = tuple(model.widths)
    macs = {w: counts["macs"] for w, counts in profile(model).items()}
    folder = tempfile.mkdtemp(prefix="on_device_")
    files = {}
    for w in widths:
        files["per_width", w] = export.export_tflite(
            model, os.path.join(folder, f"w{w}.tflite"), width=w
        )
    variants = {
        "materialized": {},
        "materialized_folded": {"fold_batch_norm": True},
        "sliced": {"layout": "sliced"},
        "shared": {"layout": "shared"},
    }
    if FLAGS.quantized:
        variants["float16"] = {"quantization": "float16"}
        variants["dynamic_range"] = {"quantization": "dynamic_range"}
        calibration = np.random.default_rng(1).normal(size=(16, size, size, 3))
        variants["int8"] = {
            "quantization": "int8",
            "representative_dataset": calibration.astype("float32"),
        }
    if FLAGS.variants:
        unknown = set(FLAGS.variants) - set(variants)
        if unknown:
            raise ValueError(
                f"Unknown --variants {sorted(unknown)}; choose from "
                f"{sorted(variants)}."
            )
        variants = {k: v for k, v in variants.items() if k in FLAGS.variants}
    for name, kwargs in variants.items():
        files[name] = export.export_tflite(
            model,
            os.path.join(folder, f"{name}.tflite"),
            widths="all",
            **kwargs,
        )
    mb = 1e6
    per_width_total = sum(files["per_width", w].stat().st_size for w in widths)
    print(f"{FLAGS.model}, {size} px, widths {widths}")
    print("File sizes (MB):")
    for w in widths:
        nbytes = files["per_width", w].stat().st_size
        print(f"  per-width file {w}: {nbytes / mb:.2f}")
    print(f"  per-width files together: {per_width_total / mb:.2f}")
    for name in variants:
        print(
            f"  one file, {name}: {files[name].stat().st_size / mb:.2f} "
            f"({files[name].stat().st_size / per_width_total:.3f} of the "
            "per-width files together)"
        )
    images = np.random.default_rng(0).normal(size=(1, size, size, 3))
    images = images.astype("float32")
    keep = []
    runners = {}
    for w in widths:
        interpreter, run = runner(files["per_width", w], "serving_default")
        keep.append(interpreter)
        runners["per_width", w] = run
    for name in variants:
        for w in widths:
            signature = export.signature_name(w)
            interpreter, run = runner(files[name], signature)
            keep.append(interpreter)
            runners[name, w] = run
    latency = median_latencies(runners, images, FLAGS.repeats)
    widest = max(widths)
    print(
        f"Median latency (ms), {FLAGS.threads} thread(s), batch 1, "
        f"{FLAGS.repeats} runs round robin; ratio to the widest per-width "
        "file; MACs ratio:"
    )
    header = ["per_width"] + list(variants)
    print("  width  " + "  ".join(f"{h:>20}" for h in header) + "  MACs ratio")
    base = latency["per_width", widest]
    for w in widths:
        cells = [
            f"{latency[h, w]:8.2f} ({latency[h, w] / base:5.3f})"
            for h in header
        ]
        print(
            f"  {w:<5}  "
            + "  ".join(f"{c:>20}" for c in cells)
            + f"  {macs[w] / macs[widest]:.3f}"
        )


def _by_keyword(function):
    return lambda images: function(images)


def saved_model_folding(model, size):
    """Prints SavedModel latency with and without batch norm folding."""
    import keras
    import numpy as np
    import tensorflow as tf

    folder = tempfile.mkdtemp(prefix="on_device_sm_")
    functions = {}
    loaded = []  # the functions need their objects alive
    for w in model.widths:
        for fold in (False, True):
            plain = model.materialize(w, fold_batch_norm=fold)
            archive = keras.export.ExportArchive()
            archive.add_endpoint(
                "serve",
                plain.call,
                input_signature=[
                    tf.TensorSpec((None, size, size, 3), tf.float32)
                ],
            )
            path = os.path.join(folder, f"w{w}_{fold}")
            archive.write_out(path, verbose=False)
            loaded.append(tf.saved_model.load(path))
            functions[w, fold] = loaded[-1].serve
    print(
        f"SavedModel median latency (ms), {FLAGS.repeats} runs round robin, "
        "unfolded / folded (ratio):"
    )
    for batch in (1, 16):
        images = np.random.default_rng(0).normal(size=(batch, size, size, 3))
        images = tf.constant(images.astype("float32"))
        runners = {key: _by_keyword(f) for key, f in functions.items()}
        latency = median_latencies(runners, images, FLAGS.repeats)
        for w in model.widths:
            plain, folded = latency[w, False], latency[w, True]
            print(
                f"  batch {batch:2d}, width {w}: {plain:8.2f} / "
                f"{folded:8.2f} ({folded / plain:.3f})"
            )


if __name__ == "__main__":
    app.run(main)
