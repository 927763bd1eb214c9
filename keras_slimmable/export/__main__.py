"""Exports a zoo model for TF Serving, as one SavedModel, or as TFLite.

Examples:

    python -m keras_slimmable.export --model s_mobilenet_v1 \
        --weights s_mobilenet_v1.pt --format serving --out /srv/models
    python -m keras_slimmable.export --model s_mobilenet_v1 \
        --weights imagenet --format tflite --width 0.5 --out mnv1_0_5.tflite
"""

from absl import app
from absl import flags
from absl import logging

flags.DEFINE_string("model", None, "Zoo model name, e.g. s_mobilenet_v1.")
flags.DEFINE_string(
    "weights",
    None,
    "'imagenet', a reference checkpoint, or a .weights.h5 file; "
    "random weights if unset.",
)
flags.DEFINE_enum(
    "format",
    "serving",
    ["serving", "saved_model", "tflite"],
    "serving: TF Serving layout, one narrow model per width, plus "
    "models.config; saved_model: one SavedModel with a signature per width; "
    "tflite: one .tflite file of --width.",
)
flags.DEFINE_string("out", None, "Output folder (or .tflite file).")
flags.DEFINE_list("widths", None, "Widths to export; defaults to all.")
flags.DEFINE_float("width", None, "The width of a TFLite export.")
flags.DEFINE_enum(
    "quantization",
    None,
    ["float16", "dynamic_range"],
    "TFLite quantization; float32 if unset.",
)
flags.DEFINE_string("name", None, "Served model name; defaults to --model.")
flags.DEFINE_integer("version", 1, "Served model version.")
flags.DEFINE_string(
    "server_base_dir",
    None,
    "--out as the server sees it (e.g. /models in the container).",
)
flags.DEFINE_integer("image_size", 224, "Input height and width.")
flags.DEFINE_integer("classes", 1000, "Number of classes.")
flags.DEFINE_bool("overwrite", False, "Replace existing exports.")
flags.mark_flags_as_required(["model", "out"])
FLAGS = flags.FLAGS


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS["verbosity"].present:
        # TensorFlow logs every SavedModel it writes at INFO.
        logging.set_verbosity(logging.WARNING)
    from keras_slimmable import export
    from keras_slimmable import zoo

    size = FLAGS.image_size
    model = zoo.create_model(
        FLAGS.model,
        weights=FLAGS.weights,
        input_shape=(size, size, 3),
        classes=FLAGS.classes,
    )
    widths = None if FLAGS.widths is None else [float(w) for w in FLAGS.widths]
    if FLAGS.format == "serving":
        written = export.export_for_serving(
            model,
            FLAGS.out,
            FLAGS.name or FLAGS.model,
            version=FLAGS.version,
            widths=widths,
            overwrite=FLAGS.overwrite,
            server_base_dir=FLAGS.server_base_dir,
        )
        for width, path in written.items():
            print(f"width {width}: {path}")
    elif FLAGS.format == "saved_model":
        path = export.export_saved_model(
            model, FLAGS.out, widths=widths, overwrite=FLAGS.overwrite
        )
        print(f"{path} (signatures per width and serving_default)")
    else:
        path = export.export_tflite(
            model,
            FLAGS.out,
            width=FLAGS.width,
            quantization=FLAGS.quantization,
        )
        print(f"{path}")


if __name__ == "__main__":
    app.run(main)
