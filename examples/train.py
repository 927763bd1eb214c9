r"""Trains a slimmable zoo model: every width at each step (Algorithm 1).

    python examples/train.py --flagfile=zoo/s_mobilenet_v1/imagenet.flags \
        --data_dir=$HOME/tensorflow_datasets --manual_dir=$HOME/imagenet \
        --model_dir=runs/s_mobilenet_v1

The flagfiles in `zoo/<model>/imagenet.flags` hold the reference recipes;
flags given after `--flagfile` override them. Recipe flags left unset take
the values of `--model`'s recipe in `keras_slimmable.recipes.RECIPES` (the
flagfile's), so `--model=s_resnet50` alone also trains with the reference
recipe; `--dry_run` prints the resolved recipe. Data: `--dataset=imagenet2012`
or `cifar10` through TensorFlow Datasets (`--data_dir`, `--manual_dir`), or
`--dataset=folder` with `--train_dir` and `--val_dir`, each holding one
folder of images per class.

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
  of every epoch. Run the same command again after an interruption: it
  resumes from the backed-up step (the data come in a new order). Once
  training is complete, the same command does nothing; remove the folder
  to start again.
- `flags.txt`: the flags of the run.

`--batch_size` is the global batch, split over the replicas of
`--strategy`: `mirrored` (the GPUs of this machine, or `--devices`),
`multi_worker` (several machines, configured by `TF_CONFIG`) or `tpu`
(`--tpu`). The model is built and compiled under the strategy's scope.
"""

import importlib.util
import json
import os
import sys

from absl import app
from absl import flags
from absl import logging

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
flags.DEFINE_integer(
    "resize_size",
    None,
    "Evaluation: shorter side before the centre crop (256 for 224 if unset).",
)
flags.DEFINE_integer(
    "steps_per_epoch",
    None,
    "Cap on the steps of an epoch (one pass over the data if unset).",
)
flags.DEFINE_integer("validation_steps", None, "Cap on the validation batches.")
flags.DEFINE_integer("validation_freq", 1, "Validate every N epochs.")

# The recipe: unset flags take the value of --model's recipe in
# keras_slimmable.recipes.RECIPES.
flags.DEFINE_integer("batch_size", None, "Global batch size.")
flags.DEFINE_integer("epochs", None, "Epochs.")
flags.DEFINE_float(
    "learning_rate",
    None,
    "Initial learning rate, for --batch_size (scale it with the batch).",
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
flags.DEFINE_integer("image_size", None, "Training and evaluation image side.")
flags.DEFINE_list("crop_scale", None, "Random-resized-crop area range.")
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
    ["default", "mirrored", "multi_worker", "tpu"],
    "tf.distribute strategy.",
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
flags.DEFINE_integer("seed", None, "Random seed (weights and data).")
flags.DEFINE_bool(
    "dry_run", False, "Print the run's configuration as JSON and exit."
)
FLAGS = flags.FLAGS

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
    "color_jitter",
    "lighting",
)
# The keys only some schedules need.
_SCHEDULE_KEYS = {
    "exponential_per_epoch": ["decay"],
    "linear_to_zero": [],
    "step_decay": ["boundaries", "factor"],
}


def resolve_recipe():
    """The training recipe: `--model`'s in `keras_slimmable.recipes.RECIPES`,
    with the flags that are set overriding it."""
    from keras_slimmable import recipes

    recipe = dict(recipes.RECIPES.get(FLAGS.model, {}))
    for key in RECIPE_KEYS:
        value = FLAGS[key].value
        if value is None:
            continue
        if key == "crop_scale":
            value = _floats(value, key)
        elif key == "boundaries":
            value = tuple(int(v) for v in value)
        recipe[key] = value
    optional = {k for keys in _SCHEDULE_KEYS.values() for k in keys}
    required = [k for k in RECIPE_KEYS if k not in optional]
    required += _SCHEDULE_KEYS.get(recipe.get("schedule"), [])
    missing = [k for k in required if recipe.get(k) is None]
    if missing:
        raise app.UsageError(
            f"The recipe of --model={FLAGS.model} (keras_slimmable.recipes."
            f"RECIPES, then the flags) lacks {missing}: set --"
            + ", --".join(missing)
        )
    return recipe


def _floats(values, name):
    try:
        return tuple(float(v) for v in values)
    except ValueError:
        raise app.UsageError(
            f"--{name} takes numbers. Received: {values}"
        ) from None


def make_strategy():
    """The `tf.distribute` strategy of `--strategy`."""
    import tensorflow as tf

    if FLAGS.strategy == "mirrored":
        return tf.distribute.MirroredStrategy(devices=FLAGS.devices)
    if FLAGS.strategy == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    if FLAGS.strategy == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
            tpu=FLAGS.tpu
        )
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    return tf.distribute.get_strategy()


def task_of(strategy):
    """`(task_type, task_id, is_chief)` of this process in a cluster."""
    resolver = getattr(strategy, "cluster_resolver", None)
    cluster = resolver.cluster_spec().as_dict() if resolver else {}
    if not cluster or FLAGS.strategy == "tpu":
        return None, None, True
    task_type, task_id = resolver.task_type, resolver.task_id
    is_chief = task_type == "chief" or (
        task_type == "worker" and task_id == 0 and "chief" not in cluster
    )
    return task_type, task_id, is_chief


def _known_length(dataset):
    import tensorflow as tf

    length = int(dataset.cardinality())
    if length in (tf.data.INFINITE_CARDINALITY, tf.data.UNKNOWN_CARDINALITY):
        return None
    return length


def load_data(recipe):
    """`(train, validation or None, class_names, steps_per_epoch)`.

    The training data repeat; an epoch is one pass over them (or the known
    size of a tfds split), capped by `--steps_per_epoch`.
    """
    from keras_slimmable import data

    augmentation = dict(
        image_size=recipe["image_size"],
        batch_size=recipe["batch_size"],
        crop_scale=tuple(recipe["crop_scale"]),
        color_jitter=recipe["color_jitter"],
        lighting=recipe["lighting"],
        seed=FLAGS.seed,
    )
    evaluation = dict(
        image_size=recipe["image_size"],
        batch_size=recipe["batch_size"],
        resize_size=FLAGS.resize_size,
    )
    if FLAGS.dataset == "folder":
        if not FLAGS.train_dir:
            raise app.UsageError("--dataset=folder needs --train_dir.")
        train, class_names = data.image_folder(
            FLAGS.train_dir, training=True, **augmentation
        )
        validation = None
        if FLAGS.val_dir:
            validation, val_classes = data.image_folder(
                FLAGS.val_dir, training=False, **evaluation
            )
            if list(val_classes) != list(class_names):
                raise app.UsageError(
                    f"--train_dir has the classes {class_names} but "
                    f"--val_dir has {val_classes}."
                )
    else:
        train_split, val_split = DEFAULT_SPLITS[FLAGS.dataset]
        source = dict(
            data_dir=FLAGS.data_dir,
            manual_dir=FLAGS.manual_dir,
            download=FLAGS.download,
        )
        train, class_names = data.tfds_dataset(
            FLAGS.dataset,
            FLAGS.train_split or train_split,
            training=True,
            **source,
            **augmentation,
        )
        validation, _ = data.tfds_dataset(
            FLAGS.dataset,
            FLAGS.val_split or val_split,
            training=False,
            **source,
            **evaluation,
        )

    length = _known_length(train)
    steps = length
    if steps is None and FLAGS.dataset in TRAIN_EXAMPLES:
        steps = TRAIN_EXAMPLES[FLAGS.dataset] // recipe["batch_size"]
    if FLAGS.steps_per_epoch:
        steps = min(steps or FLAGS.steps_per_epoch, FLAGS.steps_per_epoch)
    if not steps:
        raise app.UsageError(
            "The training data's length is unknown: set --steps_per_epoch."
        )
    if length is not None:
        train = train.repeat()
    if validation is not None and FLAGS.validation_steps:
        validation = validation.take(FLAGS.validation_steps)
    return train, validation, list(class_names), steps


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
    model.compile(
        optimizer=recipes.make_optimizer(recipe, steps_per_epoch),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=[
            "accuracy",
            keras.metrics.SparseTopKCategoricalAccuracy(k=5, name="top5"),
        ],
        steps_per_execution=FLAGS.steps_per_execution,
    )
    return model


def _backup_and_restore(backup_dir):
    import keras

    class StepBackupAndRestore(keras.callbacks.BackupAndRestore):
        """`BackupAndRestore` that also backs up after every epoch and
        tells the step it restores (Keras's resumes at an epoch's start)."""

        def on_epoch_begin(self, epoch, logs=None):
            # The epoch in the metadata of a mid-epoch backup, also when a
            # resumed run starts at a later epoch.
            self._current_epoch = epoch

        def on_epoch_end(self, epoch, logs=None):
            super().on_epoch_end(epoch, logs)
            if self.save_freq != "epoch":
                self._save_model()

        def restore(self, model):
            """Loads the backup into `model`; returns its step (0: none)."""
            if not os.path.exists(self._weights_path):
                return 0
            if not model.optimizer.built:
                model.optimizer.build(model.trainable_variables)
            model.load_weights(self._weights_path)
            return int(model.optimizer.iterations.numpy())

    return StepBackupAndRestore(
        backup_dir,
        save_freq=FLAGS.backup_every_steps or "epoch",
        # Kept: a resumed run fits twice, and a finished run stays finished.
        delete_checkpoint=False,
    )


def _best_record(checkpoint, path):
    import keras

    class BestRecord(keras.callbacks.Callback):
        """Writes a `ModelCheckpoint`'s best value to JSON, the threshold
        of a resumed run."""

        def on_epoch_end(self, epoch, logs=None):
            best = checkpoint.best
            if best is None or abs(float(best)) == float("inf"):
                return
            with open(path + ".tmp", "w") as f:
                json.dump(
                    {"monitor": checkpoint.monitor, "value": float(best)}, f
                )
            os.replace(path + ".tmp", path)

    return BestRecord()


def make_callbacks(model, root, has_validation):
    """`(backup, [other callbacks])`, writing into `root`."""
    import keras

    from keras_slimmable.widths import width_name

    callbacks = [
        keras.callbacks.ModelCheckpoint(os.path.join(root, "last.keras")),
    ]
    # TensorFlow's summaries need the `tensorboard` package.
    if importlib.util.find_spec("tensorboard") is None:
        logging.warning("No TensorBoard logs: pip install tensorboard.")
    else:
        callbacks.append(
            keras.callbacks.TensorBoard(
                os.path.join(root, "logs"),
                update_freq=FLAGS.log_every_steps or "epoch",
            )
        )
    if has_validation:
        monitor = f"val_{width_name(model.widths[-1])}_accuracy"
        record_path = os.path.join(root, "best.json")
        threshold = None
        if os.path.exists(record_path):
            with open(record_path) as f:
                record = json.load(f)
            if record.get("monitor") == monitor:
                threshold = record["value"]
        best = keras.callbacks.ModelCheckpoint(
            os.path.join(root, "best.keras"),
            monitor=monitor,
            mode="max",
            save_best_only=True,
            initial_value_threshold=threshold,
        )
        callbacks += [best, _best_record(best, record_path)]
    return _backup_and_restore(os.path.join(root, "backup")), callbacks


def fit(model, train, validation, epochs, steps_per_epoch, initial_step, **kw):
    """Fits from `initial_step` to the end of `epochs`; returns the last
    epoch's logs. `kw`: more arguments of `model.fit`.

    A run resumed in the middle of an epoch first finishes that epoch (a
    `fit` of its remaining steps), then runs the following ones.
    """
    epoch, done = divmod(initial_step, steps_per_epoch)
    phases = []  # (initial epoch, end epoch, steps per epoch)
    if done:
        phases.append((epoch, epoch + 1, steps_per_epoch - done))
        epoch += 1
    if epoch < epochs:
        phases.append((epoch, epochs, steps_per_epoch))
    logs = {}
    for start, end, steps in phases:
        history = model.fit(
            train,
            initial_epoch=start,
            epochs=end,
            steps_per_epoch=steps,
            validation_data=validation,
            shuffle=False,  # the pipeline shuffles
            **kw,
        )
        logs = {k: v[-1] for k, v in history.history.items() if v}
    return logs


def train(extra_callbacks=()):
    """Runs the training the flags describe; returns the last epoch's logs.

    Args:
        extra_callbacks: more Keras callbacks, called after the others.
    """
    if FLAGS.model is None:
        raise app.UsageError("--model is required (or a --flagfile).")
    recipe = resolve_recipe()
    widths = None if FLAGS.widths is None else _floats(FLAGS.widths, "widths")
    if FLAGS.dry_run:
        print(
            json.dumps(
                {
                    "model": FLAGS.model,
                    "widths": widths,
                    "dataset": FLAGS.dataset,
                    "recipe": recipe,
                },
                indent=2,
            )
        )
        return {}

    import keras

    from keras_slimmable.widths import width_name

    if FLAGS.seed is not None:
        keras.utils.set_random_seed(FLAGS.seed)
    strategy = make_strategy()
    task_type, task_id, chief = task_of(strategy)
    train_data, validation, class_names, steps_per_epoch = load_data(recipe)

    callbacks = []
    initial_step = 0
    root = None
    with strategy.scope():
        model = build_model(recipe, widths, len(class_names), steps_per_epoch)
        if FLAGS.model_dir:
            # Every worker saves (saving may need them all), the non-chief
            # ones into a folder of their own.
            root = FLAGS.model_dir
            if not chief:
                root = os.path.join(root, "workers", f"{task_type}_{task_id}")
            os.makedirs(root, exist_ok=True)
            backup, others = make_callbacks(model, root, validation is not None)
            initial_step = backup.restore(model)
            callbacks = [backup, *others]
        else:
            logging.warning("No --model_dir: no checkpoints, no resumption.")

    epochs = recipe["epochs"]
    total = epochs * steps_per_epoch
    if chief:
        print(
            f"{FLAGS.model} at widths {model.widths}, {len(class_names)} "
            f"classes, {strategy.num_replicas_in_sync} replica(s), global "
            f"batch {recipe['batch_size']}, {steps_per_epoch} steps per "
            f"epoch, {epochs} epochs."
        )
        if root:
            with open(os.path.join(root, "flags.txt"), "w") as f:
                f.write(FLAGS.flags_into_string())
        if initial_step:
            epoch, step = divmod(initial_step, steps_per_epoch)
            print(
                f"Resuming from step {initial_step} of {total} (epoch "
                f"{epoch + 1}, after its step {step} of {steps_per_epoch})."
            )
    if initial_step >= total:
        print("Training already complete.")
        return {}

    logs = fit(
        model,
        train_data,
        validation,
        epochs,
        steps_per_epoch,
        initial_step,
        validation_freq=FLAGS.validation_freq,
        callbacks=[*callbacks, *extra_callbacks],
        # Keras's progress bar on a terminal, a line per epoch otherwise.
        verbose=(1 if sys.stdout.isatty() else 2) if chief else 0,
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
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    train()


if __name__ == "__main__":
    app.run(main)
