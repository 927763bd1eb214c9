r"""Exports a zoo model for TF Serving, as one SavedModel, or as TFLite.

Examples:

    python -m keras_slimmable.export --model s_mobilenet_v1 \
        --weights imagenet --format serving --out /srv/models
    python -m keras_slimmable.export --model s_mobilenet_v1 \
        --weights imagenet --format tflite --width 0.5 --out mnv1_0_5.tflite

--weights is required: `imagenet`, a reference checkpoint, a .weights.h5
file of this package, or `none` for random (untrained) weights. A TFLite
file holds one width: --width, or the widest if unset (the output says
which).
"""

import os

from absl import flags

from keras_slimmable import _cli

PROGRAM = "python -m keras_slimmable.export"
WEIGHTS_CHOICES = (
    "'imagenet', a reference checkpoint (.pt/.pth), a .weights.h5 file, or "
    "'none' for random (untrained) weights"
)

flags.DEFINE_string(
    "model", None, "Zoo model name, e.g. s_mobilenet_v1 (required)."
)
flags.DEFINE_string("weights", None, f"Required: {WEIGHTS_CHOICES}.")
flags.DEFINE_enum(
    "format",
    "serving",
    ["serving", "saved_model", "tflite"],
    "serving: TF Serving layout, one narrow model per width, plus "
    "models.config; saved_model: one SavedModel with a signature per width; "
    "tflite: one .tflite file of --width, or with --widths one file with a "
    "signature per width.",
)
flags.DEFINE_string("out", None, "Output folder (or .tflite file; required).")
flags.DEFINE_list(
    "widths",
    None,
    "Widths to export; defaults to all (serving, saved_model). With --format "
    "tflite: one file with a signature per width ('all' for every width).",
)
flags.DEFINE_float(
    "width",
    None,
    "The width of a TFLite export; defaults to the model's widest.",
)
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


def _check_flags():
    if FLAGS.weights is None:
        raise _cli.CommandLineError(
            f"--weights is required: {WEIGHTS_CHOICES}."
        )
    if FLAGS.width is not None and FLAGS.widths is not None:
        raise _cli.CommandLineError(
            "Give --width (a file of one width) or --widths (one file with "
            f"a signature per width), not both. Received: --width="
            f"{FLAGS.width}, --widths={','.join(FLAGS.widths)}"
        )
    if FLAGS.format != "tflite":
        for name in ("width", "quantization"):
            if FLAGS[name].present:
                raise _cli.CommandLineError(
                    f"--{name} is for --format tflite. Received: "
                    f"--format={FLAGS.format}, --{name}={FLAGS[name].value}"
                )


def _parse_widths(text):
    if FLAGS.format == "tflite" and [t.lower() for t in text] == ["all"]:
        return "all"
    widths = []
    for item in text:
        try:
            widths.append(float(item))
        except ValueError:
            raise _cli.CommandLineError(
                f"--widths must be numbers, e.g. 0.25,1.0. Received: {item!r}"
            ) from None
    return widths


def main(argv):
    if len(argv) > 1:
        raise _cli.CommandLineError(f"Unexpected arguments: {argv[1:]}")
    _check_flags()
    widths = None if FLAGS.widths is None else _parse_widths(FLAGS.widths)
    if (
        FLAGS.format != "serving"
        and os.path.exists(FLAGS.out)
        and not FLAGS.overwrite
    ):
        # Before the model is built (the library checks again).
        raise _cli.CommandLineError(
            f"{FLAGS.out} already exists; it is left as it is. Pass "
            "--overwrite to replace it."
        )
    from keras_slimmable import export
    from keras_slimmable import zoo

    if FLAGS.model not in zoo.list_models():
        raise _cli.CommandLineError(
            f"Unknown --model={FLAGS.model}. Choose one of: "
            f"{', '.join(zoo.list_models())}."
        )
    weights = None if FLAGS.weights.lower() == "none" else FLAGS.weights
    size = FLAGS.image_size
    model = zoo.create_model(
        FLAGS.model,
        weights=weights,
        input_shape=(size, size, 3),
        classes=FLAGS.classes,
    )
    if weights is None:
        print(
            f"Note: exporting random (untrained) weights of {FLAGS.model} "
            "(--weights none)."
        )
    try:
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
            print(f"Exported {FLAGS.model} for TF Serving:")
            for width, path in written.items():
                print(f"  width {width}: {path}")
            print(f"  {os.path.join(FLAGS.out, 'models.config')}")
        elif FLAGS.format == "saved_model":
            path = export.export_saved_model(
                model, FLAGS.out, widths=widths, overwrite=FLAGS.overwrite
            )
            exported = widths or model.widths
            print(
                f"Exported {FLAGS.model} at widths "
                f"{', '.join(str(w) for w in sorted(exported))} to {path} "
                "(a signature per width, serving_default the widest)"
            )
        elif widths is not None:
            with _cli.quiet_stderr(not FLAGS.verbose):
                path = export.export_tflite(
                    model,
                    FLAGS.out,
                    widths=widths,
                    quantization=FLAGS.quantization,
                    overwrite=FLAGS.overwrite,
                )
            exported = model.widths if widths == "all" else widths
            print(
                f"Exported {FLAGS.model} at widths "
                f"{', '.join(str(w) for w in sorted(exported))}, "
                f"{FLAGS.quantization or 'float32'}, to {path} (one "
                "signature per width: serving_w0_25, ...)"
            )
        else:
            width = FLAGS.width
            if width is None:
                width = max(model.widths)
                which = " (the widest; --width picks another)"
            else:
                which = ""
            with _cli.quiet_stderr(not FLAGS.verbose):
                path = export.export_tflite(
                    model,
                    FLAGS.out,
                    width=width,
                    quantization=FLAGS.quantization,
                    overwrite=FLAGS.overwrite,
                )
            print(
                f"Exported {FLAGS.model} at width {width}{which}, "
                f"{FLAGS.quantization or 'float32'}, to {path}"
            )
    except FileExistsError as error:
        raise _cli.CommandLineError(
            str(error).replace("overwrite=True", "--overwrite")
        ) from error


if __name__ == "__main__":
    _cli.run(main, PROGRAM)
