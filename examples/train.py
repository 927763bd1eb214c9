r"""Trains a slimmable zoo model: every width at each step (Algorithm 1).

    python examples/train.py --flagfile=zoo/s_mobilenet_v1/imagenet.flags \
        --data_dir=$HOME/tensorflow_datasets --manual_dir=$HOME/imagenet \
        --model_dir=runs/s_mobilenet_v1

    python examples/train.py --flagfile=zoo/s_mobilenet_v1/cifar10.flags \
        --dataset=folder --train_dir=cifar10/train --val_dir=cifar10/test \
        --model_dir=runs/s_mobilenet_v1_cifar10

The flagfiles `zoo/<model>/imagenet.flags` hold the reference recipes and
`zoo/<model>/cifar10.flags` the CIFAR-10 ones; flags given after
`--flagfile` override them. Recipe flags left unset take the values of
`--model`'s recipe in `keras_slimmable.recipes` (`RECIPES` for
`--recipe=imagenet`, `CIFAR10_RECIPES` for `--recipe=cifar10`, the default
with `--dataset=cifar10`), so `--model=s_resnet50` alone also trains with
the reference recipe; `--dry_run` prints the resolved recipe.

The learning rate is scaled linearly with the batch: `--learning_rate` is
the rate at `--base_batch_size` (the recipe's batch size, or `--batch_size`
when `--learning_rate` alone is given), and the run uses
`learning_rate * batch_size / base_batch_size`, which it prints. Data:
`--dataset=imagenet2012` or `cifar10` through TensorFlow Datasets
(`--data_dir`, `--manual_dir`), or `--dataset=folder` with `--train_dir`
and `--val_dir`, each holding one folder of images per class.

Every step runs the widths from the widest to the narrowest, sums their
gradients and takes one SGD step. The logs report, per width, the loss,
top-1 (`w0.25_accuracy`) and top-5 (`w0.25_top5`), on the training batches
and, with `val_`, on the validation data after every epoch.

`--model_dir` receives:

- `logs/`: TensorBoard scalars, every width's metrics and the learning rate
  (`tensorboard --logdir <model_dir>/logs`);
- `last.keras` after every epoch, `best.keras` at the best validation top-1
  of the widest width (its value in `best.json`). Load them with
  `keras.saving.load_model(path)` after importing `keras_slimmable`, or
  evaluate them with `examples/evaluate.py --model_file=...`;
- `backup/`: the training state (weights, every width's batch-norm
  statistics, optimizer) every `--backup_every_steps` steps and at the end
  of every epoch, and the run's seed. Run the same command again after an
  interruption: it resumes from the backed-up step and ends exactly as an
  uninterrupted run would (each epoch's data order and augmentation
  depend only on the seed and the epoch; a resumed epoch skips the
  batches already trained). Once training is complete, the same command
  does nothing; remove the folder to start again.
- `flags.txt`: the flags of the run (this script's, as a flagfile).

Every file a resumption reads is written beside its final name, flushed
to disk and renamed over it, so a kill at any instant leaves the previous
complete version; the backup keeps the previous state too
(`backup/previous.weights.h5`), used, with a message saying so, if the
latest one is damaged.

`--batch_size` is the global batch, split over the replicas of
`--strategy`. With TensorFlow (`KERAS_BACKEND=tensorflow`, the default):
`mirrored` (the GPUs of this machine, or `--devices`) or `tpu` (`--tpu`).
Several processes or machines: `jax_data_parallel`, Keras's
`DataParallel` on JAX (`KERAS_BACKEND=jax`), the same command on every
process with `--coordinator_address=<host:port of process 0>`,
`--num_processes` and `--process_id` (or Keras's
`KERAS_DISTRIBUTION_*` variables); each process reads its share of every
global batch, and all end with the same weights (docs/multi_host.md):

    KERAS_BACKEND=jax python examples/train.py --flagfile=... \
        --strategy=jax_data_parallel --coordinator_address=10.0.0.1:1234 \
        --num_processes=2 --process_id=0   # 1 on the other machine

`multi_worker` (TensorFlow's `MultiWorkerMirroredStrategy`) stops before
training: Keras 3 does not support it (keras-team/keras#20585). The model
is built and compiled under the strategy's scope.
"""

import glob
import importlib.util
import json
import os
import random
import signal
import sys
import time

from absl import flags
from absl import logging

# The package defers its imports, and `_cli.run` imports TensorFlow quietly
# after parsing the flags (so --help answers at once).
os.environ["KERAS_SLIMMABLE_DEFER_IMPORTS"] = "1"
from keras_slimmable import _cli  # noqa: E402

CommandLineError = _cli.CommandLineError

# Training examples of the tfds datasets, for pipelines of unknown length.
TRAIN_EXAMPLES = {"imagenet2012": 1281167, "cifar10": 50000}
DEFAULT_SPLITS = {
    "imagenet2012": ("train", "validation"),
    "cifar10": ("train", "test"),
}

flags.DEFINE_string("model", None, "Zoo model, e.g. s_mobilenet_v1.")
flags.DEFINE_list(
    "widths",
    None,
    "Width multipliers, ascending; the model's default if unset.",
)
flags.DEFINE_bool(
    "shared_batch_norm",
    False,
    "Train the paper's naive baseline: one batch norm shared by all widths.",
)
flags.DEFINE_enum(
    "dataset", "imagenet2012", ["imagenet2012", "cifar10", "folder"], "Data."
)
flags.DEFINE_string("data_dir", None, "TensorFlow Datasets data directory.")
flags.DEFINE_string(
    "manual_dir",
    None,
    "TensorFlow Datasets manual directory (ImageNet: holds "
    "ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar).",
)
flags.DEFINE_bool(
    "download", True, "Let TensorFlow Datasets download what it can."
)
flags.DEFINE_string("train_split", None, "tfds training split.")
flags.DEFINE_string("val_split", None, "tfds validation split.")
flags.DEFINE_string("train_dir", None, "--dataset=folder: <class>/<images>.")
flags.DEFINE_string(
    "val_dir", None, "--dataset=folder: validation images, by class."
)
flags.DEFINE_bool(
    "skip_unreadable_images",
    False,
    "--dataset=folder: skip image files that cannot be decoded (and say "
    "how many) instead of stopping with their name.",
)
flags.DEFINE_integer(
    "steps_per_epoch",
    None,
    "Cap on the steps of an epoch (one pass over the data if unset).",
)
flags.DEFINE_integer("validation_steps", None, "Cap on the validation batches.")
flags.DEFINE_integer("validation_freq", 1, "Validate every N epochs.")

# The recipe: unset flags take the value of --model's recipe in
# keras_slimmable.recipes.
flags.DEFINE_enum(
    "recipe",
    None,
    ["imagenet", "cifar10"],
    "The recipes unset recipe flags come from: imagenet (recipes.RECIPES) "
    "or cifar10 (recipes.CIFAR10_RECIPES). Defaults to cifar10 with "
    "--dataset=cifar10, else imagenet.",
)
flags.DEFINE_integer("batch_size", None, "Global batch size.")
flags.DEFINE_integer(
    "base_batch_size",
    None,
    "The global batch --learning_rate is for; the rate used is "
    "learning_rate * batch_size / base_batch_size. Defaults to the recipe's "
    "batch size, or to --batch_size when --learning_rate is given.",
)
flags.DEFINE_integer("epochs", None, "Epochs.")
flags.DEFINE_float(
    "learning_rate",
    None,
    "Initial learning rate at --base_batch_size (scaled to --batch_size).",
)
flags.DEFINE_enum(
    "schedule",
    None,
    ["exponential_per_epoch", "linear_to_zero", "step_decay"],
    "exponential_per_epoch: x--decay every epoch; linear_to_zero: to 0 at "
    "the last step; step_decay: x--factor at the epochs of --boundaries.",
)
flags.DEFINE_float("decay", None, "exponential_per_epoch: factor per epoch.")
flags.DEFINE_list("boundaries", None, "step_decay: the epochs of the drops.")
flags.DEFINE_float("factor", None, "step_decay: the factor of each drop.")
flags.DEFINE_float("momentum", None, "SGD momentum.")
flags.DEFINE_bool("nesterov", None, "Nesterov momentum.")
flags.DEFINE_float(
    "weight_decay",
    None,
    "L2 weight decay on conv and dense kernels, depthwise kernels excepted.",
)
flags.DEFINE_bool(
    "unbiased_moving_variance",
    None,
    "Batch norms' moving variance from the unbiased batch variance "
    "(n/(n-1), as PyTorch and the reference).",
)
flags.DEFINE_integer("image_size", None, "Training and evaluation image side.")
flags.DEFINE_list("crop_scale", None, "Random-resized-crop area range.")
flags.DEFINE_integer(
    "crop_padding",
    None,
    "Pad-and-crop augmentation with this padding (CIFAR: 4) instead of the "
    "random-resized-crop.",
)
flags.DEFINE_integer(
    "resize_size",
    None,
    "Evaluation: shorter side before the centre crop (256 for 224 if unset).",
)
flags.DEFINE_float("color_jitter", None, "Colour jitter strength; 0: off.")
flags.DEFINE_float("lighting", None, "PCA lighting standard deviation; 0: off.")

flags.DEFINE_string(
    "model_dir", None, "Checkpoints, backups and TensorBoard logs."
)
flags.DEFINE_integer(
    "backup_every_steps",
    1000,
    "Back up the training state every N steps (and after every epoch); "
    "0: after every epoch only.",
)
flags.DEFINE_integer(
    "log_every_steps",
    0,
    "Also write TensorBoard scalars every N steps; 0: per epoch only.",
)
flags.DEFINE_enum(
    "strategy",
    "default",
    ["default", "mirrored", "tpu", "jax_data_parallel", "multi_worker"],
    "default: one device. TensorFlow backend: mirrored (this machine's "
    "GPUs) or tpu. JAX backend: jax_data_parallel (Keras's DataParallel, "
    "across processes and machines: --coordinator_address, "
    "--num_processes, --process_id). multi_worker is not supported by "
    "Keras 3 (keras-team/keras#20585): use jax_data_parallel.",
)
flags.DEFINE_string(
    "coordinator_address",
    None,
    "--strategy=jax_data_parallel: host:port of process 0, which every "
    "process connects to (default: KERAS_DISTRIBUTION_JOB_ADDRESSES).",
)
flags.DEFINE_integer(
    "num_processes",
    None,
    "--strategy=jax_data_parallel: how many processes train together "
    "(default: KERAS_DISTRIBUTION_NUM_PROCESSES; 1 or unset: this one).",
)
flags.DEFINE_integer(
    "process_id",
    None,
    "--strategy=jax_data_parallel: this process's index, 0 to "
    "num_processes - 1 (default: KERAS_DISTRIBUTION_PROCESS_ID).",
)
flags.DEFINE_list(
    "devices",
    None,
    "--strategy=mirrored: the devices, e.g. /gpu:0,/gpu:1 (all GPUs if unset).",
)
flags.DEFINE_string("tpu", None, "--strategy=tpu: the TPU name or address.")
flags.DEFINE_integer(
    "steps_per_execution", 1, "Training steps per compiled call (TPU: >1)."
)
flags.DEFINE_bool(
    "run_eagerly",
    False,
    "Run the training step eagerly (debugging; much slower per step, but "
    "no tracing).",
)
flags.DEFINE_integer(
    "seed",
    None,
    "Random seed (weights, data order, augmentation). If unset, one is "
    "drawn and kept in the backup, so a resumed run continues the same.",
)
flags.DEFINE_bool(
    "dry_run", False, "Print the run's configuration as JSON and exit."
)
FLAGS = flags.FLAGS
# The flags defined above (flags.txt records only these).
_OWN_FLAGS = tuple(
    FLAGS.get_flags_for_module(FLAGS.find_module_defining_flag("model"))
)

RECIPE_KEYS = (
    "batch_size",
    "epochs",
    "learning_rate",
    "schedule",
    "decay",
    "boundaries",
    "factor",
    "momentum",
    "nesterov",
    "weight_decay",
    "image_size",
    "crop_scale",
    "crop_padding",
    "resize_size",
    "color_jitter",
    "lighting",
    "unbiased_moving_variance",
)
# The keys only some schedules or augmentations need, and those with a
# default.
_SCHEDULE_KEYS = {
    "exponential_per_epoch": ["decay"],
    "linear_to_zero": [],
    "step_decay": ["boundaries", "factor"],
}
_OPTIONAL_KEYS = {
    "crop_scale",
    "crop_padding",
    "resize_size",
    "unbiased_moving_variance",
}

# Test hook: `KERAS_SLIMMABLE_KILL_AT=<point>[@<n>]` SIGKILLs this process
# the n-th time (default 1st) it reaches `<point>` (see `_kill_point`).
KILL_AT_VARIABLE = "KERAS_SLIMMABLE_KILL_AT"
_kill_counts = {}


def _kill_point(name, partial_file=None):
    """SIGKILLs the process at the point `name` if the test hook asks.

    With `partial_file`, the file is first cut to half its size: a kill in
    the middle of writing it.
    """
    wanted = os.environ.get(KILL_AT_VARIABLE)
    if not wanted:
        return
    point, _, count = wanted.partition("@")
    if point != name:
        return
    _kill_counts[name] = _kill_counts.get(name, 0) + 1
    if _kill_counts[name] != int(count or 1):
        return
    if partial_file is not None and os.path.exists(partial_file):
        with open(partial_file, "r+b") as f:
            f.truncate(os.path.getsize(partial_file) // 2)
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)


# Recipe ------------------------------------------------------------------


def recipe_name():
    """`"imagenet"` or `"cifar10"`: the recipes unset flags come from."""
    if FLAGS.recipe:
        return FLAGS.recipe
    return "cifar10" if FLAGS.dataset == "cifar10" else "imagenet"


def _recipe_table():
    from keras_slimmable import recipes

    if recipe_name() == "cifar10":
        return recipes.CIFAR10_RECIPES
    return recipes.RECIPES


def resolve_recipe():
    """The training recipe: `--model`'s in the `--recipe` table of
    `keras_slimmable.recipes`, with the flags that are set overriding it.

    Adds `base_batch_size`, the batch `learning_rate` is for.
    """
    base = _recipe_table().get(FLAGS.model, {})
    recipe = dict(base)
    for key in RECIPE_KEYS:
        value = FLAGS[key].value
        if value is None:
            continue
        if key == "crop_scale":
            value = _floats(value, key)
        elif key == "boundaries":
            value = tuple(int(v) for v in value)
        recipe[key] = value
    if FLAGS.base_batch_size is not None:
        recipe["base_batch_size"] = FLAGS.base_batch_size
    elif FLAGS.learning_rate is None and "batch_size" in base:
        recipe["base_batch_size"] = base["batch_size"]
    else:
        recipe["base_batch_size"] = recipe.get("batch_size")
    optional = {k for keys in _SCHEDULE_KEYS.values() for k in keys}
    optional |= _OPTIONAL_KEYS
    required = [k for k in RECIPE_KEYS if k not in optional]
    required += _SCHEDULE_KEYS.get(recipe.get("schedule"), [])
    if recipe.get("crop_padding") is None:
        required.append("crop_scale")
    missing = [k for k in required if recipe.get(k) is None]
    if missing:
        raise CommandLineError(
            f"The recipe of --model={FLAGS.model} (keras_slimmable.recipes, "
            f"--recipe={recipe_name()}, then the flags) lacks {missing}: "
            "set --" + ", --".join(missing)
        )
    recipe.setdefault("unbiased_moving_variance", False)
    return recipe


def scaled_learning_rate(recipe):
    """`(learning rate used, a sentence saying how it was obtained)`."""
    from keras_slimmable import recipes

    rate = recipes.scale_learning_rate(
        recipe["learning_rate"], recipe["batch_size"], recipe["base_batch_size"]
    )
    if recipe["batch_size"] == recipe["base_batch_size"]:
        how = f"at batch {recipe['batch_size']}"
    else:
        how = (
            f"= {recipe['learning_rate']:g} x {recipe['batch_size']} / "
            f"{recipe['base_batch_size']}, scaled linearly from the rate for "
            f"batch {recipe['base_batch_size']}"
        )
    return rate, f"Learning rate {rate:.6g} ({how})."


def _floats(values, name):
    try:
        return tuple(float(v) for v in values)
    except ValueError:
        raise CommandLineError(
            f"--{name} takes numbers. Received: {values}"
        ) from None


def resolve_widths():
    """The widths of the run: `--widths`, or `--model`'s default."""
    if FLAGS.widths is not None:
        return _floats(FLAGS.widths, "widths")
    from keras_slimmable.zoo import registry

    builder = registry.get_builder(FLAGS.model)
    manifest = getattr(sys.modules[builder.__module__], "MANIFEST", {})
    widths = manifest.get("widths")
    return None if widths is None else tuple(float(w) for w in widths)


# Strategy ----------------------------------------------------------------


# The strategies each Keras backend can run.
_BACKEND_STRATEGIES = {
    "tensorflow": ("default", "mirrored", "tpu"),
    "jax": ("default", "jax_data_parallel"),
    "torch": ("default",),
}
_MULTI_HOST_PATH = (
    "to train on several processes or machines, run with KERAS_BACKEND=jax "
    "and --strategy=jax_data_parallel (Keras's DataParallel; "
    "docs/multi_host.md)"
)


def check_strategy():
    """Stops, before anything is built, on a `--strategy` this Keras and
    backend cannot train with, saying why and what works."""
    import keras

    strategy = FLAGS.strategy
    if strategy == "multi_worker":
        raise CommandLineError(
            "--strategy=multi_worker cannot train: Keras 3 does not support "
            "TensorFlow's MultiWorkerMirroredStrategy (its first step fails, "
            f"keras-team/keras#20585); {_MULTI_HOST_PATH}."
        )
    backend = keras.backend.backend()
    if strategy not in _BACKEND_STRATEGIES.get(backend, ("default",)):
        needs = next(
            name
            for name, strategies in _BACKEND_STRATEGIES.items()
            if strategy in strategies
        )
        raise CommandLineError(
            f"--strategy={strategy} needs KERAS_BACKEND={needs}. Received: "
            f"KERAS_BACKEND={backend}"
            + ("" if needs == "jax" else f"; {_MULTI_HOST_PATH}")
            + "."
        )
    process_flags = [
        f"--{name}"
        for name in ("coordinator_address", "num_processes", "process_id")
        if FLAGS[name].value is not None
    ]
    if process_flags and strategy != "jax_data_parallel":
        raise CommandLineError(
            f"{', '.join(process_flags)} are for "
            f"--strategy=jax_data_parallel. Received: --strategy={strategy}"
        )


def make_strategy():
    """The strategy of `--strategy`: a `tf.distribute` strategy, or for
    `jax_data_parallel` Keras's `DataParallel` distribution (which joins
    the processes)."""
    if FLAGS.strategy == "jax_data_parallel":
        from keras_slimmable import distribute

        return distribute.data_parallel(
            coordinator_address=FLAGS.coordinator_address,
            num_processes=FLAGS.num_processes,
            process_id=FLAGS.process_id,
        )
    import tensorflow as tf

    if FLAGS.strategy == "mirrored":
        return tf.distribute.MirroredStrategy(devices=FLAGS.devices)
    if FLAGS.strategy == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=FLAGS.tpu
        )
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    return tf.distribute.get_strategy()


def replicas_of(strategy):
    """How many replicas the global batch is split over."""
    if FLAGS.strategy == "jax_data_parallel":
        return strategy.num_model_replicas
    return strategy.num_replicas_in_sync


def task_of(strategy):
    """`(task_type, task_id, is_chief)` of this process in a cluster."""
    if FLAGS.strategy == "jax_data_parallel":
        from keras_slimmable import distribute

        index = distribute.process_index()
        if distribute.process_count() == 1:
            return None, None, True
        return "process", index, index == 0
    resolver = getattr(strategy, "cluster_resolver", None)
    cluster = resolver.cluster_spec().as_dict() if resolver else {}
    if not cluster or FLAGS.strategy == "tpu":
        return None, None, True
    task_type, task_id = resolver.task_type, resolver.task_id
    is_chief = task_type == "chief" or (
        task_type == "worker" and task_id == 0 and "chief" not in cluster
    )
    return task_type, task_id, is_chief


def _seed_of_process_0(seed, backup):
    """Process 0's seed, on every process (recorded in each backup): the
    processes must start from the same weights and read the global
    batches in the same order, each taking its share."""
    from keras_slimmable import distribute

    agreed = distribute.from_first_process(seed)
    if backup is not None and agreed != seed:
        backup.seed(agreed)
    return agreed


def _whole_batches(validation, batch_size):
    """The validation data in whole global batches only.

    Under `jax_data_parallel` each process takes its share of every
    batch: a short last batch left one process without data, waiting for
    the others forever. Up to `batch_size - 1` examples go unmeasured.
    """
    if FLAGS.strategy != "jax_data_parallel":
        return validation
    return validation.rebatch(batch_size, drop_remainder=True)


def _check_same_step(step):
    """Stops if the processes resumed from backups of different steps."""
    from keras_slimmable import distribute

    steps = distribute.every_process(step)
    if len(set(steps)) > 1:
        raise CommandLineError(
            "The processes' backups are at different steps (by process: "
            f"{steps}): resume them from the same one, e.g. by copying "
            "process 0's backup/ into the others' "
            "<model_dir>/workers/process_<id>/."
        )


# Data --------------------------------------------------------------------


def _known_length(dataset):
    import tensorflow as tf

    length = int(dataset.cardinality())
    if length in (tf.data.INFINITE_CARDINALITY, tf.data.UNKNOWN_CARDINALITY):
        return None
    return length


def epoch_seed(seed, epoch):
    """The data seed of an epoch: a function of `(seed, epoch)` only, so a
    resumed run sees each epoch's data as an uninterrupted one does."""
    import numpy as np

    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def _image_folder(directory, **kwargs):
    from keras_slimmable import data

    if FLAGS.skip_unreadable_images:
        kwargs["unreadable"] = "skip"
    dataset, class_names = data.image_folder(directory, **kwargs)
    skipped = getattr(dataset, "skipped_files", ())
    if skipped:
        print(f"Skipped {len(skipped)} unreadable image(s) in {directory}.")
    return dataset, class_names


def load_data(recipe, seed):
    """`(epoch_data, validation or None, class_names, steps_per_epoch)`.

    `epoch_data(epoch)` is the training data of an epoch (repeated: an
    epoch is one pass over the data, or the known size of a tfds split,
    capped by `--steps_per_epoch`), shuffled and augmented with
    `epoch_seed(seed, epoch)`.
    """
    from keras_slimmable import data

    augmentation = dict(
        image_size=recipe["image_size"],
        batch_size=recipe["batch_size"],
        crop_scale=tuple(recipe.get("crop_scale") or (0.08, 1.0)),
        crop_padding=recipe.get("crop_padding"),
        color_jitter=recipe["color_jitter"],
        lighting=recipe["lighting"],
    )
    evaluation = dict(
        image_size=recipe["image_size"],
        batch_size=recipe["batch_size"],
        resize_size=recipe.get("resize_size"),
    )
    if FLAGS.dataset == "folder":
        if not FLAGS.train_dir:
            raise CommandLineError("--dataset=folder needs --train_dir.")

        def training_data(data_seed):
            return _image_folder(
                FLAGS.train_dir, training=True, seed=data_seed, **augmentation
            )

        validation = None
        if FLAGS.val_dir:
            validation, val_classes = _image_folder(
                FLAGS.val_dir, training=False, **evaluation
            )
    else:
        train_split, val_split = DEFAULT_SPLITS[FLAGS.dataset]
        source = dict(
            data_dir=FLAGS.data_dir,
            manual_dir=FLAGS.manual_dir,
            download=FLAGS.download,
        )

        def training_data(data_seed):
            return data.tfds_dataset(
                FLAGS.dataset,
                FLAGS.train_split or train_split,
                training=True,
                seed=data_seed,
                **source,
                **augmentation,
            )

        validation, val_classes = data.tfds_dataset(
            FLAGS.dataset,
            FLAGS.val_split or val_split,
            training=False,
            **source,
            **evaluation,
        )

    first, class_names = training_data(epoch_seed(seed, 0))
    if validation is not None and list(val_classes) != list(class_names):
        raise CommandLineError(
            f"The training data have the classes {list(class_names)} but "
            f"the validation data have {list(val_classes)}."
        )
    steps = _known_length(first)
    if steps is None and FLAGS.dataset in TRAIN_EXAMPLES:
        steps = TRAIN_EXAMPLES[FLAGS.dataset] // recipe["batch_size"]
    if FLAGS.steps_per_epoch:
        steps = min(steps or FLAGS.steps_per_epoch, FLAGS.steps_per_epoch)
    if not steps:
        raise CommandLineError(
            "The training data's length is unknown: set --steps_per_epoch."
        )

    def epoch_data(epoch):
        dataset = first if epoch == 0 else None
        if dataset is None:
            dataset, _ = training_data(epoch_seed(seed, epoch))
        # Repeated: a capped pipeline of unknown length never runs short.
        return dataset.repeat()

    if validation is not None and FLAGS.validation_steps:
        validation = validation.take(FLAGS.validation_steps)
    return epoch_data, validation, list(class_names), steps


# Model -------------------------------------------------------------------


def build_model(recipe, widths, classes, steps_per_epoch):
    """The zoo model with weight decay, compiled (call under the scope)."""
    import keras

    from keras_slimmable import recipes
    from keras_slimmable import zoo

    size = recipe["image_size"]
    model = zoo.create_model(
        FLAGS.model,
        widths=widths,
        input_shape=(size, size, 3),
        classes=classes,
        shared_batch_norm=FLAGS.shared_batch_norm,
    )
    recipes.apply_weight_decay(model, recipe["weight_decay"])
    recipes.set_unbiased_moving_variance(
        model, recipe["unbiased_moving_variance"]
    )
    learning_rate, _ = scaled_learning_rate(recipe)
    model.compile(
        optimizer=recipes.make_optimizer(
            dict(recipe, learning_rate=learning_rate), steps_per_epoch
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[
            "accuracy",
            keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5"),
        ],
        steps_per_execution=FLAGS.steps_per_execution,
        run_eagerly=FLAGS.run_eagerly,
    )
    return model


# Crash-safe files --------------------------------------------------------


def _fsync_directory(directory):
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows: directories cannot be opened
        return
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _fsync_file(path):
    with open(path, "rb+") as f:
        f.flush()
        os.fsync(f.fileno())


def _partial_path(path):
    """A scratch name beside `path`, keeping its suffix (Keras checks it)."""
    directory, name = os.path.split(path)
    for suffix in (".weights.h5", ".keras", ".json"):
        if name.endswith(suffix):
            stem = name[: -len(suffix)]
            break
    else:
        stem, suffix = name, ""
    return os.path.join(directory, f".{stem}.partial-{os.getpid()}{suffix}")


def write_atomically(path, write, kill_point=None):
    """Writes `path` through `write(scratch_path)`: beside it, flushed to
    disk, then renamed over it. A kill at any instant leaves either the old
    complete file or the new one."""
    partial = _partial_path(path)
    try:
        write(partial)
        _fsync_file(partial)
        if kill_point:
            _kill_point(kill_point + ".writing", partial_file=partial)
            _kill_point(kill_point + ".written")
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)
    _fsync_directory(os.path.dirname(path) or ".")


def write_json_atomically(path, value, kill_point=None):
    def write(partial):
        with open(partial, "w") as f:
            json.dump(value, f)

    write_atomically(path, write, kill_point)


def read_json(path):
    """The JSON in `path`; `None` (with a warning) if it is damaged."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        print(f"Warning: {path} is damaged and ignored ({error}).")
        return None


def remove_leftovers(directory):
    """Removes the scratch files of writes a kill interrupted."""
    for path in glob.glob(os.path.join(directory, ".*.partial-*")):
        os.remove(path)


def _save_model_atomically(model, path, kill_point):
    write_atomically(path, lambda partial: model.save(partial), kill_point)


# Callbacks ---------------------------------------------------------------


class TrainingBackup:
    """The training state in `backup_dir`, written crash-safely.

    `latest.weights.h5` holds the model's weights (every width's batch-norm
    statistics included) and the optimizer's state, whose `iterations` is
    the step; `previous.weights.h5` the backup before it; `run.json` the
    run's seed.
    """

    def __init__(self, backup_dir):
        self.backup_dir = backup_dir
        self.latest = os.path.join(backup_dir, "latest.weights.h5")
        self.previous = os.path.join(backup_dir, "previous.weights.h5")
        self.run_file = os.path.join(backup_dir, "run.json")
        os.makedirs(backup_dir, exist_ok=True)
        remove_leftovers(backup_dir)

    def seed(self, seed):
        """The run's seed: `seed` if given, else the one recorded, else a
        new one (recorded)."""
        record = (
            read_json(self.run_file) if os.path.exists(self.run_file) else None
        )
        recorded = record.get("seed") if isinstance(record, dict) else None
        if seed is None and recorded is None and os.path.exists(self.latest):
            print(
                "Warning: the backup does not say the run's seed: the data "
                "after the resumption come in a new order."
            )
        if seed is None:
            seed = recorded if recorded is not None else random.randrange(2**31)
        if recorded != seed:
            write_json_atomically(self.run_file, {"seed": seed})
        return seed

    def save(self, model):
        """Backs up `model`'s training state; the previous backup is kept."""
        partial = _partial_path(self.latest)
        try:
            model.save_weights(partial)
            _fsync_file(partial)
            _kill_point("backup.writing", partial_file=partial)
            _kill_point("backup.written")
            if os.path.exists(self.latest):
                # The current backup becomes the previous one (a hard
                # link: no copy), then the new one replaces it.
                keep = _partial_path(self.previous)
                try:
                    os.link(self.latest, keep)
                except OSError:
                    with (
                        open(self.latest, "rb") as src,
                        open(keep, "wb") as dst,
                    ):
                        dst.write(src.read())
                    _fsync_file(keep)
                os.replace(keep, self.previous)
                _kill_point("backup.kept_previous")
            os.replace(partial, self.latest)
        finally:
            if os.path.exists(partial):
                os.remove(partial)
        _fsync_directory(self.backup_dir)

    def restore(self, model):
        """Loads the newest loadable backup into `model`; returns its step
        (0: none)."""
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        errors = []
        for path in (self.latest, self.previous):
            if not os.path.exists(path):
                continue
            try:
                model.load_weights(path)
            except Exception as error:  # h5py and Keras raise many kinds
                errors.append((path, error))
                continue
            step = int(model.optimizer.iterations.numpy())
            for damaged, error in errors:
                print(
                    f"Warning: the backup {damaged} is damaged ({error}); "
                    f"resuming from the previous one, {path}, at step "
                    f"{step}: the steps trained after it are lost and are "
                    "trained again."
                )
            return step
        if errors:
            details = "; ".join(f"{p}: {e}" for p, e in errors)
            raise CommandLineError(
                f"No backup in {self.backup_dir} can be loaded ({details}). "
                "Move the folder away to start the training again."
            )
        return 0


def _callbacks_module():
    import keras

    class BackupCallback(keras.callbacks.Callback):
        """Backs up every `every_steps` steps and after every epoch (after
        the other callbacks' epoch ends: put it after them)."""

        def __init__(self, backup, every_steps, steps_per_epoch):
            super().__init__()
            self.backup = backup
            self.every_steps = every_steps
            self.steps_per_epoch = steps_per_epoch
            self._previous_step = 0

        def _step(self):
            return int(self.model.optimizer.iterations.numpy())

        def on_train_begin(self, logs=None):
            self._previous_step = self._step()

        def on_train_batch_end(self, batch, logs=None):
            step = self._step()
            previous, self._previous_step = self._previous_step, step
            if not self.every_steps:
                return
            # At the multiples of `every_steps` (or the first step past one,
            # with several steps per execution). An epoch's last step is
            # backed up after its validation and checkpoints, by
            # `on_epoch_end`: a resumption from it would skip them.
            if (
                step // self.every_steps > previous // self.every_steps
                and step % self.steps_per_epoch
            ):
                self.backup.save(self.model)

        def on_epoch_end(self, epoch, logs=None):
            self.backup.save(self.model)

    class LastCheckpoint(keras.callbacks.Callback):
        """Saves the model to a `.keras` file after every epoch,
        atomically."""

        def __init__(self, path):
            super().__init__()
            self.path = path

        def on_epoch_end(self, epoch, logs=None):
            _save_model_atomically(self.model, self.path, "last")

    class BestCheckpoint(keras.callbacks.Callback):
        """Saves the model to a `.keras` file when `monitor` reaches a new
        maximum, then the value to a JSON record (the threshold of a
        resumed run), each atomically."""

        def __init__(self, path, record_path, monitor):
            super().__init__()
            self.path = path
            self.record_path = record_path
            self.monitor = monitor
            self.best = None
            if os.path.exists(record_path):
                record = read_json(record_path)
                if (
                    isinstance(record, dict)
                    and record.get("monitor") == monitor
                ):
                    self.best = float(record["value"])

        def on_epoch_end(self, epoch, logs=None):
            value = (logs or {}).get(self.monitor)
            if value is None:
                return
            value = float(value)
            if self.best is not None and not value > self.best:
                return
            _save_model_atomically(self.model, self.path, "best")
            # A kill between the two renames leaves the older, lower
            # threshold: a later epoch may replace best.keras with one at
            # least as good as that, never a worse one than recorded.
            write_json_atomically(
                self.record_path,
                {"monitor": self.monitor, "value": value, "epoch": epoch + 1},
                "best_record",
            )
            self.best = value

    class EpochLog(keras.callbacks.Callback):
        """One line per epoch: its number out of all, time and metrics."""

        def __init__(self, epochs):
            super().__init__()
            self.epochs = epochs

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.monotonic()

        def on_epoch_end(self, epoch, logs=None):
            seconds = time.monotonic() - self._start
            metrics = " - ".join(
                f"{name}: {value:.4f}"
                for name, value in (logs or {}).items()
                if isinstance(value, (int, float))
            )
            print(
                f"Epoch {epoch + 1}/{self.epochs} - {seconds:.0f}s - {metrics}",
                flush=True,
            )

    class StepTensorBoard(keras.callbacks.TensorBoard):
        """`TensorBoard` whose per-step summaries count the optimizer's
        steps: Keras's restarts at 0 in every `fit`, and this script fits
        once per epoch (and resumes)."""

        def on_train_begin(self, logs=None):
            # Keras's own method with the step instead of 0 (private
            # attributes, Keras 3.15; tests/test_train_script.py's resume
            # test fails if they change).
            step = int(self.model.optimizer.iterations.numpy())
            self._global_train_batch = step
            self._previous_epoch_iterations = step
            self._push_writer(self._train_writer, step)

    class KillAt(keras.callbacks.Callback):
        """Test hook: `step.<n>` after training step n, `validation` in a
        validation batch (see `_kill_point`)."""

        def on_train_batch_end(self, batch, logs=None):
            step = int(self.model.optimizer.iterations.numpy())
            _kill_point(f"step.{step}")

        def on_test_batch_end(self, batch, logs=None):
            _kill_point("validation")

    return (
        BackupCallback,
        LastCheckpoint,
        BestCheckpoint,
        EpochLog,
        KillAt,
        StepTensorBoard,
    )


def make_callbacks(model, root, has_validation, backup, steps_per_epoch):
    """The run's callbacks, writing into `root`; the backup's last."""

    from keras_slimmable.widths import width_name

    BackupCallback, LastCheckpoint, BestCheckpoint, _, _, StepTensorBoard = (
        _callbacks_module()
    )
    remove_leftovers(root)
    callbacks = [LastCheckpoint(os.path.join(root, "last.keras"))]
    # TensorFlow's summaries need the `tensorboard` package.
    if importlib.util.find_spec("tensorboard") is None:
        logging.warning("No TensorBoard logs: pip install tensorboard.")
    else:
        callbacks.append(
            StepTensorBoard(
                os.path.join(root, "logs"),
                update_freq=FLAGS.log_every_steps or "epoch",
            )
        )
    if has_validation:
        monitor = f"val_{width_name(model.widths[-1])}_accuracy"
        callbacks.append(
            BestCheckpoint(
                os.path.join(root, "best.keras"),
                os.path.join(root, "best.json"),
                monitor,
            )
        )
    callbacks.append(
        BackupCallback(backup, FLAGS.backup_every_steps, steps_per_epoch)
    )
    return callbacks


# Training ----------------------------------------------------------------


def fit(
    model, epoch_data, validation, epochs, steps_per_epoch, initial_step, **kw
):
    """Fits from `initial_step` to the end of `epochs`, one `model.fit` per
    epoch; returns the last epoch's logs. `kw`: more arguments of
    `model.fit`.

    `epoch_data(epoch)` gives each epoch's data; a run resumed in the
    middle of an epoch skips the batches of it already trained.
    """
    logs = {}
    first_epoch, done = divmod(initial_step, steps_per_epoch)
    for epoch in range(first_epoch, epochs):
        skip = done if epoch == first_epoch else 0
        history = model.fit(
            epoch_data(epoch).skip(skip),
            initial_epoch=epoch,
            epochs=epoch + 1,
            steps_per_epoch=steps_per_epoch - skip,
            validation_data=validation,
            shuffle=False,  # the pipeline shuffles
            **kw,
        )
        logs = {k: v[-1] for k, v in history.history.items() if v}
    return logs


def _write_flags(path):
    """This script's flags that have a value, as a flagfile."""
    lines = [flag.serialize() for flag in _OWN_FLAGS if flag.value is not None]

    def write(partial):
        with open(partial, "w") as f:
            f.write("\n".join(lines) + "\n")

    write_atomically(path, write)


def train(extra_callbacks=()):
    """Runs the training the flags describe; returns the last epoch's logs.

    Args:
        extra_callbacks: more Keras callbacks, called after the others.
    """
    check_strategy()
    if FLAGS.model is None:
        raise CommandLineError("--model is required (or a --flagfile).")
    recipe = resolve_recipe()
    widths = resolve_widths()
    learning_rate, learning_rate_note = scaled_learning_rate(recipe)
    if FLAGS.dry_run:
        print(
            json.dumps(
                {
                    "model": FLAGS.model,
                    "widths": widths,
                    "dataset": FLAGS.dataset,
                    "recipe_table": recipe_name(),
                    "recipe": recipe,
                    "scaled_learning_rate": learning_rate,
                },
                indent=2,
            )
        )
        return {}

    import keras

    from keras_slimmable.widths import width_name

    strategy = make_strategy()
    task_type, task_id, chief = task_of(strategy)
    root = None
    backup = None
    if FLAGS.model_dir:
        # Every worker saves (saving may need them all), the non-chief
        # ones into a folder of their own.
        root = FLAGS.model_dir
        if not chief:
            root = os.path.join(root, "workers", f"{task_type}_{task_id}")
        os.makedirs(root, exist_ok=True)
        backup = TrainingBackup(os.path.join(root, "backup"))
        seed = backup.seed(FLAGS.seed)
    else:
        logging.warning("No --model_dir: no checkpoints, no resumption.")
        seed = FLAGS.seed if FLAGS.seed is not None else random.randrange(2**31)
    if FLAGS.strategy == "jax_data_parallel":
        seed = _seed_of_process_0(seed, backup)
    keras.utils.set_random_seed(seed)
    epoch_data, validation, class_names, steps_per_epoch = load_data(
        recipe, seed
    )
    if validation is not None and replicas_of(strategy) > 1:
        validation = _whole_batches(validation, recipe["batch_size"])

    callbacks = []
    initial_step = 0
    with strategy.scope():
        model = build_model(recipe, widths, len(class_names), steps_per_epoch)
        if backup is not None:
            callbacks = make_callbacks(
                model, root, validation is not None, backup, steps_per_epoch
            )
            initial_step = backup.restore(model)
    if FLAGS.strategy == "jax_data_parallel":
        _check_same_step(initial_step)

    epochs = recipe["epochs"]
    total = epochs * steps_per_epoch
    if chief:
        print(
            f"{FLAGS.model} at widths {model.widths}, {len(class_names)} "
            f"classes, {replicas_of(strategy)} replica(s), global "
            f"batch {recipe['batch_size']}, {steps_per_epoch} steps per "
            f"epoch, {epochs} epochs, seed {seed}."
        )
        print(learning_rate_note)
        if root:
            _write_flags(os.path.join(root, "flags.txt"))
    if initial_step >= total:
        if chief:
            print(
                f"Training already complete: the backup in {root} is at "
                f"step {initial_step} of {total}; nothing to do (remove "
                f"{root} to train again)."
            )
        return {}
    if chief and initial_step:
        epoch, step = divmod(initial_step, steps_per_epoch)
        print(
            f"Resuming from step {initial_step} of {total} (epoch "
            f"{epoch + 1}, after its step {step} of {steps_per_epoch})."
        )

    _, _, _, EpochLog, KillAt, _ = _callbacks_module()
    callbacks = [*callbacks]
    if chief:
        callbacks.insert(0, EpochLog(epochs))
    if os.environ.get(KILL_AT_VARIABLE):
        callbacks.append(KillAt())
    logs = fit(
        model,
        epoch_data,
        validation,
        epochs,
        steps_per_epoch,
        initial_step,
        validation_freq=FLAGS.validation_freq,
        callbacks=[*callbacks, *extra_callbacks],
        verbose=0,
    )
    if chief:
        print(f"Finished at step {int(model.optimizer.iterations.numpy())}.")
        if f"val_{width_name(model.widths[-1])}_accuracy" in logs:
            print("width  top-1   top-5   (validation, last epoch)")
            for width in reversed(model.widths):
                name = width_name(width)
                print(
                    f"{width:<5}  {logs[f'val_{name}_accuracy']:.4f}  "
                    f"{logs[f'val_{name}_top5']:.4f}"
                )
    return logs


def main(argv):
    if len(argv) > 1:
        raise CommandLineError(f"Unexpected arguments: {argv[1:]}")
    train()


if __name__ == "__main__":
    _cli.run(main, "python examples/train.py")
