r"""Exports a zoo model for TF Serving, as one SavedModel, or as TFLite.

Examples:

    python -m keras_slimmable.export --model s_mobilenet_v1 \
        --weights imagenet --format serving --out /srv/models
    python -m keras_slimmable.export --model s_mobilenet_v1 \
        --weights imagenet --format tflite --width 0.5 --out mnv1_0_5.tflite
    python -m keras_slimmable.export --model_file run/best.keras \
        --format tflite --widths all --quantization int8 \
        --calibration_dir cifar10/train --calibration_images 500 \
        --calibration_resize_size 32 --out cifar10_int8.tflite

--weights is required with --model: `imagenet`, a reference checkpoint, a
.weights.h5 file of this package, or `none` for random (untrained) weights.
--model_file instead takes a whole trained model saved as a `.keras` file.
A TFLite file holds one width: --width, or the widest if unset (the output
says which); with --widths, one file holds a signature per width.
--quantization int8 calibrates every width on --calibration_images images
of --calibration_dir (class folders, as `keras_slimmable.data.image_folder`
reads them: resized and centre-cropped to the model's input size and
normalised as the zoo models expect); use training images, not test ones.
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
    "model",
    None,
    "Zoo model name, e.g. s_mobilenet_v1 (required unless --model_file).",
)
flags.DEFINE_string("weights", None, f"With --model: {WEIGHTS_CHOICES}.")
flags.DEFINE_string(
    "model_file",
    None,
    "Instead of --model and --weights: a trained SlimmableModel saved as a "
    ".keras file (model.save(...)); its input size and classes are its own.",
)
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
    ["float16", "dynamic_range", "int8"],
    "TFLite quantization; float32 if unset. int8 (full-integer, every width "
    "calibrated on its own activations) needs --calibration_dir.",
)
flags.DEFINE_string(
    "calibration_dir",
    None,
    "With --quantization int8: a folder of class folders of images "
    "(<dir>/<class>/*.jpg|png) to calibrate on, e.g. the training set.",
)
flags.DEFINE_integer(
    "calibration_images",
    500,
    "With --quantization int8: how many images of --calibration_dir, taken "
    "in proportion to each class.",
)
flags.DEFINE_integer(
    "calibration_resize_size",
    None,
    "With --quantization int8: the shorter side the calibration images are "
    "resized to before the centre crop to the input size; defaults to "
    "input size * 256 / 224 (ImageNet's evaluation); pass the input size "
    "for CIFAR-sized images.",
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
flags.mark_flags_as_required(["out"])
FLAGS = flags.FLAGS


CALIBRATION_FLAGS = (
    "calibration_dir",
    "calibration_images",
    "calibration_resize_size",
)


def _check_flags():
    if FLAGS.model_file is not None:
        for name in ("model", "weights", "image_size", "classes"):
            if FLAGS[name].present:
                raise _cli.CommandLineError(
                    f"--{name} does not go with --model_file (the file holds "
                    f"the whole model). Received: --{name}="
                    f"{FLAGS[name].value}, --model_file={FLAGS.model_file}"
                )
        if not os.path.isfile(FLAGS.model_file):
            raise _cli.CommandLineError(
                f"No file at --model_file={FLAGS.model_file}"
            )
        if not FLAGS.model_file.endswith(".keras"):
            raise _cli.CommandLineError(
                "--model_file must be a .keras file (model.save(...)); "
                "a .weights.h5 file goes with --model and --weights. "
                f"Received: --model_file={FLAGS.model_file}"
            )
    elif FLAGS.model is None:
        raise _cli.CommandLineError(
            "--model (a zoo model name) or --model_file (a .keras file) is "
            "required."
        )
    elif FLAGS.weights is None:
        raise _cli.CommandLineError(
            f"--weights is required: {WEIGHTS_CHOICES}."
        )
    _check_calibration_flags()
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


def _check_calibration_flags():
    if FLAGS.quantization != "int8":
        for name in CALIBRATION_FLAGS:
            if FLAGS[name].present:
                raise _cli.CommandLineError(
                    f"--{name} calibrates --quantization int8 only. "
                    f"Received: --quantization={FLAGS.quantization}, "
                    f"--{name}={FLAGS[name].value}"
                )
        return
    if FLAGS.calibration_dir is None:
        raise _cli.CommandLineError(
            "--quantization int8 needs --calibration_dir: a folder of class "
            "folders of images (e.g. the training set) to calibrate every "
            "width's activation ranges on."
        )
    if not os.path.isdir(FLAGS.calibration_dir):
        raise _cli.CommandLineError(
            "No folder at --calibration_dir="
            f"{FLAGS.calibration_dir} (a folder of class folders of images "
            "was expected)."
        )
    if FLAGS.calibration_images < 1:
        raise _cli.CommandLineError(
            "--calibration_images must be at least 1. Received: "
            f"--calibration_images={FLAGS.calibration_images}"
        )
    size = FLAGS.calibration_resize_size
    if size is not None and size < 1:
        raise _cli.CommandLineError(
            "--calibration_resize_size must be positive. Received: "
            f"--calibration_resize_size={size}"
        )


def _calibration_images(image_size):
    """The first --calibration_images images of --calibration_dir (every
    class in proportion), preprocessed for evaluation, as one array."""
    import numpy as np

    from keras_slimmable.data import image_folder

    count = FLAGS.calibration_images
    dataset, _ = image_folder(
        FLAGS.calibration_dir,
        training=False,
        image_size=image_size,
        batch_size=min(count, 64),
        resize_size=FLAGS.calibration_resize_size,
    )
    batches = []
    found = 0
    for images, _ in dataset:
        batches.append(images.numpy()[: count - found])
        found += len(batches[-1])
        if found >= count:
            break
    return np.concatenate(batches)


def _load_model_file(path):
    import keras

    try:
        model = keras.saving.load_model(path)
    except Exception as error:  # Keras raises many kinds for a bad file.
        raise _cli.CommandLineError(
            f"Could not load --model_file={path} as a Keras model: "
            f"{type(error).__name__}: {error}"
        ) from error
    if not hasattr(model, "widths"):
        raise _cli.CommandLineError(
            f"--model_file={path} holds a {type(model).__name__}, not a "
            "keras_slimmable.SlimmableModel."
        )
    shape = tuple(model.input.shape[1:])
    if len(shape) != 3 or None in shape:
        raise _cli.CommandLineError(
            f"--model_file={path} must take images of a fixed size, "
            f"(height, width, channels). Received a model with input shape "
            f"{(None,) + shape}"
        )
    return model


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

    if FLAGS.model_file is not None:
        model = _load_model_file(FLAGS.model_file)
        label = os.path.basename(FLAGS.model_file)
    else:
        model = _zoo_model()
        label = FLAGS.model
    calibration = None
    if FLAGS.quantization == "int8":
        size = model.input.shape[1]
        calibration = _calibration_images(size)
        print(
            f"Calibrating int8 on {len(calibration)} images of "
            f"{FLAGS.calibration_dir} ({size} px)."
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
            print(f"Exported {label} for TF Serving:")
            for width, path in written.items():
                print(f"  width {width}: {path}")
            print(f"  {os.path.join(FLAGS.out, 'models.config')}")
        elif FLAGS.format == "saved_model":
            path = export.export_saved_model(
                model, FLAGS.out, widths=widths, overwrite=FLAGS.overwrite
            )
            exported = widths or model.widths
            print(
                f"Exported {label} at widths "
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
                    representative_dataset=calibration,
                )
            exported = model.widths if widths == "all" else widths
            print(
                f"Exported {label} at widths "
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
                    representative_dataset=calibration,
                )
            print(
                f"Exported {label} at width {width}{which}, "
                f"{FLAGS.quantization or 'float32'}, to {path}"
            )
    except FileExistsError as error:
        raise _cli.CommandLineError(
            str(error).replace("overwrite=True", "--overwrite")
        ) from error


def _zoo_model():
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
    return model


if __name__ == "__main__":
    _cli.run(main, PROGRAM)
