"""Reproduces the slimmable-networks claims on CIFAR-10 (issue 5).

The full run (about 30 minutes on an idle 2-core CPU, under 90 on a
shared one):

    python examples/reproduce_cifar10.py

Trains, with the same architecture, epochs, batches and optimizer:

- (a) individual: one plain network per width, each trained alone (the
  zoo builder with `widths=(w,)`: a single-width `SlimmableModel` is
  exactly an individually trained network of that width);
- (b) slimmable: one network with switchable batch norms, all widths
  trained at every step (Algorithm 1 of the paper);
- (c) naive: the same weight sharing with ONE batch norm shared by all
  widths (`shared_batch_norm=True`), the paper's naive baseline.

Every method is evaluated the same way: the model in inference mode (the
batch norms' moving statistics), every width, on the 10,000 test images.
The script writes `zoo/results/cifar10.md` (top-1 per width and method,
MACs per width, the command, the wall time, the paper's claims as
measured) and `zoo/results/cifar10.png` (top-1 against MACs, log x axis,
one line per method: the idea of the paper's Figure 2), both atomically.

Model: `s_mobilenet_v1` with its reference widths (0.25, 0.5, 0.75, 1.0)
and `classes=10`, unmodified, at 32x32 input (11.6 / 6.6 / 3.1 / 0.83 M
MACs from width 1.0 down). At 32x32 the zoo's 32x downsampling leaves a
1x1 map in the last stage; a stride-1 stem (the usual CIFAR adaptation)
would keep 2x2 but costs 4x the MACs (46 M at width 1.0): measured 65
against 220 images/s for a slimmable step, so within this budget it would
get under 1 epoch instead of 3. At a fixed, small compute budget the
extra epochs help far more than the extra resolution, and MobileNet v1
beats v2 here: v2's expanded depthwise convs run at 104 images/s for
6 M MACs, and its tail batch norm is shared by all widths even in the
slimmable model. ResNet-50 (84 M MACs at 32x32 even with the ImageNet
stem) is out of reach.

Data: CIFAR-10 as an image folder (`--data_dir`, or by default the
archive `../shared/datasets/cifar10-jpeg.tar.gz` beside the repository,
extracted into a temporary directory), decoded once into memory by
`keras_slimmable.data.image_folder` (so the six trainings do not decode
the JPEGs again every epoch) and augmented per epoch with the standard
CIFAR augmentation of `keras_slimmable.data.augment` (`random_pad_crop`
with 4 pixels, `random_flip`, then `normalize`). Optimizer, the same for
every network: SGD with Nesterov momentum 0.9 (`recipes.sgd`), learning
rate 0.05 linearly to 0 over the run (`recipes.LinearToZero`), batch 128,
weight decay 5e-4 on conv and dense kernels except depthwise
(`recipes.apply_weight_decay`), 3 epochs of all 50,000 training images
(390 steps an epoch). The learning rate was chosen up front from 60 steps
of the slimmable model: at 0.1 its summed four-width gradient kept the
width-0.25 network at chance, at 0.05 every width learned.

Budget arithmetic, measured with `--timing_steps=20` on this machine while
other jobs ran (load average about 5): per epoch of 50,000 images,
(a) the four individual networks together 149 s of CPU / 2 cores (240 s
wall), (b) slimmable 171 s (291 s wall), (c) naive 174 s (294 s wall):
494 s per epoch for the three methods on an idle machine (825 s as
loaded). Tracing costs about 50-70 s per four-width model and 10 s per
individual network; evaluation (10,000 images x 4 widths x 3 methods)
and decoding about 2 minutes. So 3 epochs: 3 x 494 s = 25 min + about
4 min = about 30 min on an idle machine, 45-50 min at the measured load,
inside the 90-minute limit even at more than twice that load. (4 epochs,
about 38 min idle, would not have been sure to finish before the
session that started the run ended; 3 keeps the whole training set.)

`--quick` trains a few hundred images for one epoch (the test suite runs
it); `--timing_steps=N` times N training steps of each method, prints the
per-epoch cost and exits without writing results.
"""

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# TensorFlow prints start-up messages; the examples' command-line helper
# imports it quietly (`--verbose` shows them).
os.environ["KERAS_SLIMMABLE_DEFER_IMPORTS"] = "1"
from keras_slimmable import _cli  # noqa: E402

_cli.import_tensorflow_quietly(quiet="--verbose" not in sys.argv)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402

from keras_slimmable import recipes  # noqa: E402
from keras_slimmable import zoo  # noqa: E402
from keras_slimmable.data import augment  # noqa: E402
from keras_slimmable.data import image_folder  # noqa: E402
from keras_slimmable.profiling import profile  # noqa: E402
from keras_slimmable.widths import width_name  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ARCHIVE = REPO.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"
IMAGE_SHAPE = (32, 32, 3)
CLASSES = 10
WIDTHS = (0.25, 0.5, 0.75, 1.0)
METHODS = {
    "individual": "(a) individual",
    "slimmable": "(b) slimmable",
    "naive": "(c) naive",
}

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "data_dir",
    None,
    "A CIFAR-10 image folder (train/<class>/*.jpg, test/<class>/*.jpg). "
    "Defaults to extracting --archive into a temporary directory.",
)
flags.DEFINE_string(
    "archive", str(DEFAULT_ARCHIVE), "The CIFAR-10 JPEG archive (.tar.gz)."
)
flags.DEFINE_string(
    "output_markdown",
    str(REPO / "zoo" / "results" / "cifar10.md"),
    "Where to write the results table.",
)
flags.DEFINE_string(
    "output_plot",
    str(REPO / "zoo" / "results" / "cifar10.png"),
    "Where to write the top-1 against MACs plot.",
)
flags.DEFINE_integer(
    "train_images", 50000, "Training images, a class-balanced subset."
)
flags.DEFINE_integer("test_images", 10000, "Test images, class-balanced.")
flags.DEFINE_integer("epochs", 3, "Epochs, the same for every method.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_float("learning_rate", 0.05, "Initial learning rate.")
flags.DEFINE_float("weight_decay", 5e-4, "L2 on conv and dense kernels.")
flags.DEFINE_integer("seed", 0, "Random seed (subsets, init, shuffling).")
flags.DEFINE_bool(
    "quick",
    False,
    "A smoke run: 200 training and 100 test images, one epoch of two "
    "batches of 100, eager (no tracing).",
)
flags.DEFINE_integer(
    "timing_steps",
    0,
    "If > 0, time this many training steps of each method, print the "
    "per-epoch cost and exit without writing results.",
)


# Data ---------------------------------------------------------------------


def _choose(files_by_class, images, seed):
    """A class-balanced random subset of `images` files (all of them if
    there are no more), in a stable order."""
    if images >= sum(len(f) for f in files_by_class.values()):
        return [
            f for name in sorted(files_by_class) for f in files_by_class[name]
        ]
    rng = np.random.default_rng(seed)
    chosen = []
    for index, name in enumerate(sorted(files_by_class)):
        files = sorted(files_by_class[name])
        count = images // len(files_by_class) + (
            index < images % len(files_by_class)
        )
        chosen += [
            files[i] for i in sorted(rng.choice(len(files), count, False))
        ]
    return chosen


def _split_folders(root, counts, seed, scratch):
    """`{split: folder}` of a class-balanced subset of each split of a
    CIFAR-10 image folder `root`: `root`'s own folder when the split is
    taken whole, else a folder of symlinks in `scratch`."""
    folders = {}
    for offset, (split, images) in enumerate(counts.items()):
        source = Path(root) / split
        if not source.is_dir():
            raise FileNotFoundError(f"No {split}/ folder in {root}")
        by_class = {
            d.name: [str(f) for f in d.iterdir() if f.is_file()]
            for d in source.iterdir()
            if d.is_dir()
        }
        chosen = _choose(by_class, images, seed + offset)
        if len(chosen) == sum(len(f) for f in by_class.values()):
            folders[split] = str(source)
            continue
        target = Path(scratch) / split
        for file in chosen:
            link = target / Path(file).parent.name / Path(file).name
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(file)
        folders[split] = str(target)
    return folders


def _extract_splits(archive, directory, counts, seed):
    """Extracts a class-balanced subset of each split of the CIFAR-10
    archive (only the chosen files: fast for --quick); `{split: folder}`."""
    if not Path(archive).is_file():
        raise FileNotFoundError(
            f"No CIFAR-10 archive at {archive}: give --data_dir or --archive."
        )
    members = subprocess.run(
        ["tar", "-tzf", str(archive)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    members = [m for m in members if m.lower().endswith((".jpg", ".png"))]
    folders, wanted = {}, []
    for offset, (split, images) in enumerate(counts.items()):
        by_class = {}
        for member in members:
            parts = Path(member).parts
            if len(parts) >= 3 and parts[-3] == split:
                by_class.setdefault(parts[-2], []).append(member)
        if not by_class:
            raise FileNotFoundError(f"No {split}/<class>/ images in {archive}")
        wanted += _choose(by_class, images, seed + offset)
        folders[split] = str(
            Path(directory) / Path(by_class[min(by_class)][0]).parents[1]
        )
    listing = Path(directory) / "members.txt"
    listing.write_text("\n".join(wanted) + "\n")
    subprocess.run(
        ["tar", "-xzf", str(archive), "-C", str(directory), "-T", str(listing)],
        check=True,
    )
    return folders


def _load_arrays(directory):
    """Every image of an image folder as uint8 arrays, decoded once."""
    dataset, class_names = image_folder(
        str(directory),
        training=False,
        image_size=IMAGE_SHAPE[0],
        resize_size=IMAGE_SHAPE[0],
        batch_size=1000,
        normalize=False,
        drop_remainder=False,
    )
    images, labels = [], []
    for x, y in dataset.as_numpy_iterator():
        images.append(np.round(np.clip(x, 0, 1) * 255).astype(np.uint8))
        labels.append(np.asarray(y).reshape(len(x)).astype(np.int32))
    return np.concatenate(images), np.concatenate(labels), class_names


def _train_dataset(images, labels, batch_size, seed):
    def prepare(image, label):
        image = augment.random_pad_crop(image, IMAGE_SHAPE[0], padding=4)
        image = augment.random_flip(image)
        return augment.normalize(image), label

    return (
        tf.data.Dataset.from_tensor_slices((images, labels))
        .shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
        .map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def _test_dataset(images, labels, batch_size):
    def prepare(image, label):
        return augment.normalize(image), label

    return (
        tf.data.Dataset.from_tensor_slices((images, labels))
        .map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .cache()
        .prefetch(tf.data.AUTOTUNE)
    )


# Models and training ------------------------------------------------------


def build_model(widths, shared_batch_norm=False):
    """The zoo's S-MobileNet v1 at 32x32 for 10 classes."""
    return zoo.s_mobilenet_v1(
        widths=widths,
        input_shape=IMAGE_SHAPE,
        classes=CLASSES,
        shared_batch_norm=shared_batch_norm,
    )


def compile_model(model, total_steps, **compile_kwargs):
    """The same optimizer for every method; `compile_kwargs` go to
    `model.compile` (e.g. `sandwich_rule`, for
    `examples/reproduce_us_cifar10.py`)."""
    recipes.apply_weight_decay(model, FLAGS.weight_decay)
    model.compile(
        optimizer=recipes.sgd(
            recipes.LinearToZero(FLAGS.learning_rate, total_steps),
            momentum=0.9,
            nesterov=True,
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        # --quick only: tracing the four-width training step takes longer
        # (about 45 s) than the whole smoke run's few eager steps.
        run_eagerly=FLAGS.quick,
        **compile_kwargs,
    )


def _accuracy_key(width):
    return f"{width_name(width)}_accuracy"


class EpochProgress(keras.callbacks.Callback):
    """Prints one line per epoch: time, loss, training top-1 per width."""

    def __init__(self, label, epochs):
        super().__init__()
        self.label = label
        self.epochs = epochs

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        accuracies = " ".join(
            f"{width_name(w)}:{logs[_accuracy_key(w)]:.3f}"
            for w in self.model.widths
            if _accuracy_key(w) in logs
        )
        print(
            f"[{self.label}] epoch {epoch + 1}/{self.epochs} "
            f"{time.perf_counter() - self.start:.0f}s "
            f"loss {logs.get('loss', float('nan')):.3f} "
            f"train top-1 {accuracies}",
            flush=True,
        )


class StepTimer(keras.callbacks.Callback):
    """Records the end of every training batch: wall and process CPU time
    (CPU seconds / cores estimates the wall time on an idle machine)."""

    def on_train_begin(self, logs=None):
        self.times = [(time.perf_counter(), time.process_time())]

    def on_train_batch_end(self, batch, logs=None):
        self.times.append((time.perf_counter(), time.process_time()))


def _method_models(method):
    """`[(label, model)]` trained by one method."""
    if method == "individual":
        return [
            (f"(a) individual {width_name(w)}", build_model((w,)))
            for w in WIDTHS
        ]
    return [
        (METHODS[method], build_model(WIDTHS, method == "naive")),
    ]


def train_and_evaluate(method, train, test, steps_per_epoch):
    """Trains one method; returns `({width: top-1}, seconds)`."""
    accuracies = {}
    start = time.perf_counter()
    for label, model in _method_models(method):
        keras.utils.set_random_seed(FLAGS.seed)
        compile_model(model, FLAGS.epochs * steps_per_epoch)
        model.fit(
            train,
            epochs=FLAGS.epochs,
            verbose=0,
            callbacks=[EpochProgress(label, FLAGS.epochs)],
        )
        logs = model.evaluate(test, verbose=0, return_dict=True)
        for width in model.widths:
            accuracies[width] = float(logs[_accuracy_key(width)])
    return accuracies, time.perf_counter() - start


def time_methods(train, steps, train_images):
    """Prints the measured cost of one epoch of each method: wall seconds
    on this machine as it is now, and CPU seconds / cores, the estimate for
    an idle machine."""
    warmup = 3
    cores = os.cpu_count() or 1
    totals = np.zeros(2)
    for method in METHODS:
        per_step = np.zeros(2)
        for label, model in _method_models(method):
            compile_model(model, 10**6)
            timer = StepTimer()
            history = model.fit(
                train.repeat(),
                steps_per_epoch=warmup + steps,
                epochs=1,
                verbose=0,
                callbacks=[timer],
            )
            times = np.array(timer.times)
            first = times[1] - times[0]
            step = (times[-1] - times[warmup]) / steps
            step[1] /= cores
            per_step += step
            print(
                f"{label}: {step[0]:.3f} s/step wall, {step[1]:.3f} "
                f"CPU/{cores} (first step, tracing: {first[0]:.0f} s); "
                f"loss {history.history['loss'][-1]:.3f}",
                flush=True,
            )
        epoch = per_step * (train_images // FLAGS.batch_size)
        totals += epoch
        print(
            f"{METHODS[method]}: {epoch[0]:.0f} s wall, {epoch[1]:.0f} s "
            f"CPU/{cores} per epoch of {train_images} images",
            flush=True,
        )
    print(
        f"All three methods, per epoch: {totals[0]:.0f} s wall, "
        f"{totals[1]:.0f} s CPU/{cores}; {FLAGS.epochs} epochs of training: "
        f"{totals[0] * FLAGS.epochs / 60:.1f} min wall, "
        f"{totals[1] * FLAGS.epochs / 60:.1f} min CPU/{cores}",
        flush=True,
    )


# Results ------------------------------------------------------------------


def check_methods(requested, known):
    """Raises for a `--methods` entry not in `known` (the scripts that
    import this one and train several methods)."""
    unknown = [m for m in requested if m not in known]
    if unknown:
        raise ValueError(
            f"Unknown methods {unknown}: expected some of {list(known)}. "
            f"Received: --methods={','.join(requested)}"
        )


def save_model_atomically(model, path):
    """`model.save` to a temporary `.keras` file, then renamed: a kill
    leaves the previous file whole."""
    path = Path(path)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    try:
        model.save(temporary)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def _write_atomically(path, write):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def _claims(results):
    """The paper's three claims, as measured: `[(claim, holds, detail)]`."""
    a, b, c = (results[m] for m in METHODS)
    gaps = {w: 100 * (b[w] - a[w]) for w in WIDTHS}
    drops = {w: 100 * (b[w] - c[w]) for w in WIDTHS}
    largest = max(drops, key=drops.get)

    def listing(values):
        return ", ".join(f"{width_name(w)} {v:+.1f}" for w, v in values.items())

    return [
        (
            "(b) is within 1.5 points of (a) at every width",
            all(abs(g) <= 1.5 for g in gaps.values()),
            f"(b) - (a) in points: {listing(gaps)}",
        ),
        (
            "(b)'s top-1 rises with width",
            all(b[u] < b[v] for u, v in zip(WIDTHS, WIDTHS[1:])),
            "(b) in %, narrowest first: "
            + ", ".join(f"{100 * b[w]:.1f}" for w in WIDTHS),
        ),
        (
            "(c) is at least 10 points below (b) at some width",
            drops[largest] >= 10,
            f"(b) - (c) in points: {listing(drops)}; largest at "
            f"{width_name(largest)}",
        ),
    ]


def results_markdown(results, macs, seconds, wall, config):
    command = " ".join(
        ["python", "examples/reproduce_cifar10.py"] + sys.argv[1:]
    )
    lines = [
        "# Slimmable networks on CIFAR-10",
        "",
        "Written by `examples/reproduce_cifar10.py`; do not edit by hand.",
        "",
        f"Command: `{command}`",
        "",
        f"Wall time: {wall / 60:.1f} min "
        f"({time.strftime('%Y-%m-%d %H:%M %Z')}); training and evaluation "
        "per method: "
        + ", ".join(f"{METHODS[m]} {seconds[m] / 60:.1f} min" for m in METHODS)
        + ".",
        "",
        f"Setup: {config}.",
        "",
        "Top-1 on the test images, every method evaluated the same way "
        "(inference mode, the batch norms' moving statistics):",
        "",
        "| width | MACs (M) | "
        + " | ".join(METHODS[m] for m in METHODS)
        + " |",
        "|---|---|" + "---|" * len(METHODS),
    ]
    for w in WIDTHS:
        cells = " | ".join(f"{results[m][w]:.4f}" for m in METHODS)
        lines.append(f"| {width_name(w)} | {macs[w] / 1e6:.2f} | {cells} |")
    lines += ["", "The paper's claims, as measured:", ""]
    for claim, holds, detail in _claims(results):
        lines.append(
            f"- {claim}: **{'holds' if holds else 'does not hold'}** "
            f"({detail})."
        )
    lines += [
        "",
        "MACs per width from `keras_slimmable.profile` at 32x32 "
        "(the three methods share the architecture, so the same MACs).",
        "",
        "![top-1 against MACs](cifar10.png)",
        "",
    ]
    return "\n".join(lines)


def write_plot(path, results, macs):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(5.5, 4), dpi=100)
    x = [macs[w] / 1e6 for w in WIDTHS]
    for method, marker in zip(METHODS, "os^"):
        axes.plot(
            x,
            [100 * results[method][w] for w in WIDTHS],
            marker=marker,
            label=METHODS[method],
        )
    for w, value in zip(WIDTHS, x):
        axes.annotate(
            f"{w}x",
            (value, 100 * results["slimmable"][w]),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=8,
        )
    axes.set_xscale("log")
    axes.set_xlabel("MACs (millions, log scale)")
    axes.set_ylabel("top-1 (%)")
    axes.set_title("S-MobileNet v1 on CIFAR-10")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    _write_atomically(path, lambda p: figure.savefig(p, format="png"))
    pyplot.close(figure)


# Main ---------------------------------------------------------------------


def main(argv):
    del argv
    start = time.perf_counter()
    if FLAGS.quick:
        FLAGS.train_images = min(FLAGS.train_images, 200)
        FLAGS.test_images = min(FLAGS.test_images, 100)
        FLAGS.epochs = 1
        FLAGS.batch_size = min(FLAGS.batch_size, 100)
    keras.utils.set_random_seed(FLAGS.seed)

    counts = {"train": FLAGS.train_images, "test": FLAGS.test_images}
    with tempfile.TemporaryDirectory(prefix="cifar10_") as scratch:
        if FLAGS.data_dir is None:
            folders = _extract_splits(
                FLAGS.archive, scratch, counts, FLAGS.seed
            )
            print(f"Extracted {FLAGS.archive}", flush=True)
        else:
            folders = _split_folders(
                FLAGS.data_dir, counts, FLAGS.seed, scratch
            )
        x_train, y_train, _ = _load_arrays(folders["train"])
        x_test, y_test, _ = _load_arrays(folders["test"])
    print(
        f"Decoded {len(x_train)} training and {len(x_test)} test images "
        f"in {time.perf_counter() - start:.0f}s",
        flush=True,
    )
    train = _train_dataset(x_train, y_train, FLAGS.batch_size, FLAGS.seed)
    test = _test_dataset(x_test, y_test, 500)
    steps_per_epoch = len(x_train) // FLAGS.batch_size

    if FLAGS.timing_steps > 0:
        time_methods(train, FLAGS.timing_steps, len(x_train))
        return

    macs = {
        w: p["macs"]
        for w, p in profile(build_model(WIDTHS), IMAGE_SHAPE).items()
    }
    results, seconds = {}, {}
    for method in ("slimmable", "naive", "individual"):
        results[method], seconds[method] = train_and_evaluate(
            method, train, test, steps_per_epoch
        )
        print(
            f"{METHODS[method]} done in {seconds[method] / 60:.1f} min: "
            + " ".join(
                f"{width_name(w)}:{results[method][w]:.4f}" for w in WIDTHS
            ),
            flush=True,
        )
    wall = time.perf_counter() - start
    config = (
        f"s_mobilenet_v1 at 32x32, widths {WIDTHS}; {len(x_train)} training "
        f"images, {len(x_test)} test images; {FLAGS.epochs} epochs of "
        f"{steps_per_epoch} steps, batch {FLAGS.batch_size}; SGD Nesterov "
        f"momentum 0.9, learning rate {FLAGS.learning_rate} linearly to 0, "
        f"weight decay {FLAGS.weight_decay}; pad-4 random crop and flip; "
        f"seed {FLAGS.seed}"
    )
    markdown = results_markdown(results, macs, seconds, wall, config)
    write_plot(FLAGS.output_plot, results, macs)
    _write_atomically(
        FLAGS.output_markdown, lambda p: Path(p).write_text(markdown)
    )
    print()
    print(markdown)


if __name__ == "__main__":
    _cli.run(main, "python examples/reproduce_cifar10.py")
