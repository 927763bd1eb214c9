r"""Evaluates every width of a slimmable model: top-1, top-5, MACs, params.

    python examples/evaluate.py --model=s_mobilenet_v1 --weights=imagenet \
        --data_dir=$HOME/tensorflow_datasets --manual_dir=$HOME/imagenet

    python examples/evaluate.py --model_file=runs/s_mobilenet_v1/best.keras \
        --dataset=folder --val_dir=/data/imagenet/val

The model is a zoo model (`--model`, with `--weights`: "imagenet", a
reference checkpoint or a `.weights.h5` file) or a saved `.keras` model
(`--model_file`, e.g. from `examples/train.py`). The validation images are
resized (shorter side `--resize_size`, 256 for 224) and centre-cropped. For
every width it prints top-1 and top-5 accuracy, with the MACs per image and
the parameters (convolutions, dense layers, batch-norm gamma and beta) that
width uses, as counted by `keras_slimmable.profile`.
"""

import os

from absl import flags

# The package defers its imports, and `_cli.run` imports TensorFlow quietly
# after parsing the flags (so --help answers at once).
os.environ["KERAS_SLIMMABLE_DEFER_IMPORTS"] = "1"
from keras_slimmable import _cli  # noqa: E402

CommandLineError = _cli.CommandLineError

DEFAULT_SPLITS = {"imagenet2012": "validation", "cifar10": "test"}

flags.DEFINE_string("model", None, "Zoo model, e.g. s_mobilenet_v1.")
flags.DEFINE_string(
    "weights",
    None,
    "--model: 'imagenet', a reference checkpoint or a .weights.h5 file.",
)
flags.DEFINE_list("widths", None, "--model: widths; the model's default.")
flags.DEFINE_integer(
    "classes", None, "--model: classes; those of the data if unset."
)
flags.DEFINE_string("model_file", None, "A saved .keras model instead.")
flags.DEFINE_enum(
    "dataset", "imagenet2012", ["imagenet2012", "cifar10", "folder"], "Data."
)
flags.DEFINE_string("data_dir", None, "TensorFlow Datasets data directory.")
flags.DEFINE_string(
    "manual_dir", None, "TensorFlow Datasets manual directory (ImageNet)."
)
flags.DEFINE_bool(
    "download", True, "Let TensorFlow Datasets download what it can."
)
flags.DEFINE_string("split", None, "tfds split; validation (ImageNet).")
flags.DEFINE_string("val_dir", None, "--dataset=folder: images by class.")
flags.DEFINE_bool(
    "skip_unreadable_images",
    False,
    "--dataset=folder: skip image files that cannot be decoded (and say "
    "how many) instead of stopping with their name.",
)
flags.DEFINE_integer(
    "image_size", None, "Image side; the model's input size if unset."
)
flags.DEFINE_integer(
    "resize_size", None, "Shorter side before the centre crop (256 for 224)."
)
flags.DEFINE_integer("batch_size", 100, "Batch size.")
flags.DEFINE_integer("steps", None, "Evaluate only this many batches.")
FLAGS = flags.FLAGS


def top5(y_true, y_pred):
    """Top-5 accuracy (a function: `compile` gives each width its own)."""
    import keras

    return keras.metrics.sparse_top_k_categorical_accuracy(y_true, y_pred, k=5)


def load_data(image_size):
    """`(dataset, class_names, description)` of the validation data."""
    from keras_slimmable import data

    options = dict(
        image_size=image_size,
        batch_size=FLAGS.batch_size,
        resize_size=FLAGS.resize_size,
    )
    if FLAGS.dataset == "folder":
        if not FLAGS.val_dir:
            raise CommandLineError("--dataset=folder needs --val_dir.")
        if FLAGS.skip_unreadable_images:
            options["unreadable"] = "skip"
        dataset, class_names = data.image_folder(
            FLAGS.val_dir, training=False, **options
        )
        skipped = getattr(dataset, "skipped_files", ())
        if skipped:
            print(
                f"Skipped {len(skipped)} unreadable image(s) in "
                f"{FLAGS.val_dir}."
            )
        description = FLAGS.val_dir
    else:
        split = FLAGS.split or DEFAULT_SPLITS[FLAGS.dataset]
        dataset, class_names = data.tfds_dataset(
            FLAGS.dataset,
            split,
            training=False,
            data_dir=FLAGS.data_dir,
            manual_dir=FLAGS.manual_dir,
            download=FLAGS.download,
            **options,
        )
        description = f"{FLAGS.dataset} {split}"
    if FLAGS.steps:
        dataset = dataset.take(FLAGS.steps)
        description += f", first {FLAGS.steps} batches"
    return dataset, list(class_names), description


def load_model():
    """The model of `--model_file`, or the zoo's `--model`; and the data."""
    import keras

    import keras_slimmable  # noqa: F401  (registers the model's classes)
    from keras_slimmable import zoo

    if bool(FLAGS.model) == bool(FLAGS.model_file):
        raise CommandLineError("Give --model or --model_file (one of them).")
    if FLAGS.model_file:
        model = keras.saving.load_model(FLAGS.model_file, compile=False)
        size = FLAGS.image_size or model.input_shape[1]
        dataset, class_names, description = load_data(size)
        return model, dataset, class_names, description
    size = FLAGS.image_size or 224
    dataset, class_names, description = load_data(size)
    widths = None
    if FLAGS.widths is not None:
        widths = tuple(float(w) for w in FLAGS.widths)
    model = zoo.create_model(
        FLAGS.model,
        widths=widths,
        weights=FLAGS.weights,
        input_shape=(size, size, 3),
        classes=FLAGS.classes or len(class_names),
    )
    return model, dataset, class_names, description


def main(argv):
    if len(argv) > 1:
        raise CommandLineError(f"Unexpected arguments: {argv[1:]}")
    import keras

    from keras_slimmable import profile
    from keras_slimmable.widths import width_name

    model, dataset, class_names, description = load_model()
    classes = model.output_shape[-1]
    if classes != len(class_names):
        raise CommandLineError(
            f"The model has {classes} classes but the data have "
            f"{len(class_names)}."
        )
    model.compile(
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy", top5],
    )
    results = model.evaluate(dataset, return_dict=True, verbose=2)
    counts = profile(model)
    print(f"\n{model.name} on {description}, {len(class_names)} classes")
    print("width   top-1    top-5      MACs/image    parameters")
    for width in reversed(model.widths):
        name = width_name(width)
        parameters = (
            counts[width]["conv_fc_params"] + counts[width]["bn_affine_params"]
        )
        print(
            f"{width:<6} {100 * results[f'{name}_accuracy']:6.2f}%  "
            f"{100 * results[f'{name}_top5']:6.2f}%  "
            f"{counts[width]['macs'] / 1e6:10.1f}M  "
            f"{parameters / 1e6:10.2f}M"
        )


if __name__ == "__main__":
    _cli.run(main, "python examples/evaluate.py")
