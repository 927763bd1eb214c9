"""Pick the widest width that fits a latency budget on this device.

Builds (or loads) a zoo model, times every width here, prints the table,
sets the widest width whose median latency is within `--budget_ms` and,
with `--tflite_out`, exports that width to TFLite.

    python examples/select_width.py --model s_mobilenet_v1 \
        --weights imagenet --budget_ms 20 --tflite_out mobilenet.tflite

By default the widths are timed as Keras runs them (`model(x, width=w)`,
each width's compiled function). With `--runtime tflite` every width is
first converted to TFLite and timed in `ai_edge_litert`'s interpreter, the
runtime a phone would use: choose with the runtime you deploy, as the two
do not scale alike. Latency depends on the machine, its load and the
threads available: measure on the target device, not on a workstation.
"""

import os
import shutil
import tempfile

# TensorFlow prints start-up messages; `_cli.run` imports it quietly after
# parsing the flags (`--verbose` shows them).
os.environ["KERAS_SLIMMABLE_DEFER_IMPORTS"] = "1"
from absl import app  # noqa: E402
from absl import flags  # noqa: E402
from absl import logging  # noqa: E402

from keras_slimmable import _cli  # noqa: E402

flags.DEFINE_string("model", "s_mobilenet_v1", "Zoo model name.")
flags.DEFINE_string(
    "weights",
    None,
    "'imagenet', a reference checkpoint or a .weights.h5 file; random "
    "weights if unset (latency does not depend on the weights).",
)
flags.DEFINE_float("budget_ms", None, "Latency budget per call, in ms.")
flags.DEFINE_list("widths", None, "Widths to consider; defaults to all.")
flags.DEFINE_integer("image_size", 224, "Input height and width.")
flags.DEFINE_integer("classes", 1000, "Number of classes.")
flags.DEFINE_integer("batch_size", 1, "Images per call.")
flags.DEFINE_integer("runs", 50, "Timed calls per width.")
flags.DEFINE_integer("warmup", 5, "Untimed calls per width first.")
flags.DEFINE_enum(
    "runtime",
    "keras",
    ["keras", "tflite"],
    "keras: time model(x, width=w); tflite: convert every width to TFLite "
    "and time it in ai_edge_litert.",
)
flags.DEFINE_string(
    "tflite_out", None, "Write the chosen width as a TFLite file here."
)
flags.DEFINE_enum(
    "quantization",
    None,
    ["float16", "dynamic_range"],
    "TFLite quantization (timed and exported); float32 if unset.",
)
flags.mark_flags_as_required(["budget_ms"])
FLAGS = flags.FLAGS


def print_table(measurements, budget_ms):
    print(f"{'width':>6}  {'median':>9}  {'p10':>9}  {'p90':>9}  fits")
    for width, t in measurements.items():
        fits = "yes" if t["median_ms"] <= budget_ms else "no"
        print(
            f"{width:>6.2f}  {t['median_ms']:>6.2f} ms  {t['p10_ms']:>6.2f} ms"
            f"  {t['p90_ms']:>6.2f} ms  {fits}"
        )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS["verbosity"].present:
        # TensorFlow logs every SavedModel it writes at INFO.
        logging.set_verbosity(logging.WARNING)
    import keras_slimmable as ks

    size = FLAGS.image_size
    model = ks.zoo.create_model(
        FLAGS.model,
        weights=FLAGS.weights,
        input_shape=(size, size, 3),
        classes=FLAGS.classes,
    )
    widths = (
        model.widths
        if FLAGS.widths is None
        else sorted(float(w) for w in FLAGS.widths)
    )
    scratch = tempfile.mkdtemp(prefix="select_width-")
    try:
        if FLAGS.runtime == "tflite":
            target = {
                width: ks.export.export_tflite(
                    model,
                    os.path.join(scratch, f"w{width}.tflite"),
                    width=width,
                    quantization=FLAGS.quantization,
                )
                for width in widths
            }
        else:
            target = model
        measurements = ks.measure_latency(
            target,
            widths=widths,
            batch_size=FLAGS.batch_size,
            runs=FLAGS.runs,
            warmup=FLAGS.warmup,
        )
        print(
            f"{FLAGS.model}, batch {FLAGS.batch_size}, {size}x{size}, "
            f"{FLAGS.runtime}, {FLAGS.runs} runs per width on this device:"
        )
        print_table(measurements, FLAGS.budget_ms)
        try:
            width = ks.select_width(
                None, FLAGS.budget_ms, measurements=measurements
            )
        except ValueError as error:
            raise SystemExit(f"error: {error}") from None
        model.set_width(width)
        print(f"Chosen width: {width} (model.set_width({width}))")
        if FLAGS.tflite_out:
            if FLAGS.runtime == "tflite":
                # The very file that was timed.
                os.makedirs(
                    os.path.dirname(os.path.abspath(FLAGS.tflite_out)),
                    exist_ok=True,
                )
                shutil.copyfile(target[width], FLAGS.tflite_out)
            else:
                ks.export.export_tflite(
                    model,
                    FLAGS.tflite_out,
                    width=width,
                    quantization=FLAGS.quantization,
                    overwrite=True,  # As the copy above: --tflite_out wins.
                )
            print(f"TFLite file of width {width}: {FLAGS.tflite_out}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    _cli.run(main, "python examples/select_width.py")
