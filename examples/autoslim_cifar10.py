"""AutoSlim on CIFAR-10: search channel numbers, train, compare (issue 13).

The whole path of `keras_slimmable.search` on CIFAR-10 at 32x32:

1. a universally slimmable MobileNet v1 (`zoo.us_mobilenet_v1`, 10
   classes) trained with the sandwich rule (4 widths a step) and inplace
   distillation, or loaded with `--model_file`;
2. the greedy AutoSlim search on it (`autoslim_search`) for the MACs
   targets `--targets` (fractions of the full model's MACs), on the first
   `--held_out` images of the seeded shuffle of the *training* images
   (kept out of training; the test images are never searched on);
3. an AutoSlim model with one switch per configuration found
   (`autoslim_model`), trained from scratch with the same recipe (every
   switch at every step, as the slimmable networks train);
4. the comparison at each switch's MACs: the AutoSlim model's top-1 on the
   10,000 test images against uniform widths of (at most) the same MACs:
   the US model calibrated at that width, and a fixed S-MobileNet v1
   trained at those widths with the same recipe.

Writes `zoo/results/autoslim_cifar10.md`. Every stage saves its output
under `--output_dir` (default `/work/runs/autoslim_cifar10`) and a rerun
skips the stages already done, so an interrupted run resumes by running
the same command again. `--quick` runs a tiny version (the test suite
runs it).

Recipe (that of `examples/reproduce_cifar10.py`): SGD with Nesterov
momentum 0.9, learning rate 0.05 linearly to 0, batch 128, weight decay
5e-4 on conv and dense kernels, pad-4 random crop and flip, `--epochs`
epochs.
"""

import json
import os
import sys
import time
from pathlib import Path

os.environ["KERAS_SLIMMABLE_DEFER_IMPORTS"] = "1"
from keras_slimmable import _cli  # noqa: E402

_cli.import_tensorflow_quietly(quiet="--verbose" not in sys.argv)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from absl import flags  # noqa: E402

from keras_slimmable import recipes  # noqa: E402
from keras_slimmable import search  # noqa: E402
from keras_slimmable import zoo  # noqa: E402
from keras_slimmable.data import augment  # noqa: E402
from keras_slimmable.profiling import profile  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
IMAGE_SHAPE = (32, 32, 3)
CLASSES = 10

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "data_dir", "/work/data", "CIFAR-10 image folders: train/<class>/*.jpg "
    "and test/<class>/*.jpg."
)  # fmt: skip
flags.DEFINE_string(
    "output_dir", "/work/runs/autoslim_cifar10", "Stage outputs (resumable)."
)
flags.DEFINE_string(
    "output_markdown",
    str(REPO / "zoo" / "results" / "autoslim_cifar10.md"),
    "Where to write the results.",
)
flags.DEFINE_string(
    "model_file", None, "A trained us_mobilenet_v1 (.keras) to search in, "
    "instead of training one."
)  # fmt: skip
flags.DEFINE_list(
    "targets", ["0.6", "0.4", "0.25"], "MACs targets, as fractions of the "
    "full model's MACs."
)  # fmt: skip
flags.DEFINE_integer("held_out", 5000, "Held-out training images (search).")
flags.DEFINE_integer("search_batch", 500, "The search's one batch.")
flags.DEFINE_integer("divisor", 16, "Channels removed per search step.")
flags.DEFINE_integer("train_images", 45000, "Training images at most.")
flags.DEFINE_integer("test_images", 10000, "Test images.")
flags.DEFINE_integer("epochs", 3, "Epochs of every training.")
flags.DEFINE_integer("batch_size", 128, "Batch size.")
flags.DEFINE_float("learning_rate", 0.05, "Initial learning rate.")
flags.DEFINE_float("weight_decay", 5e-4, "L2 on conv and dense kernels.")
flags.DEFINE_integer("seed", 0, "Random seed (split, init, shuffling).")
flags.DEFINE_bool(
    "snet_baseline", True, "Also train a fixed S-MobileNet v1 at the uniform "
    "widths of the same MACs."
)  # fmt: skip
flags.DEFINE_bool("quick", False, "A tiny run (a smoke test).")


def _files(directory):
    classes = sorted(p.name for p in Path(directory).iterdir() if p.is_dir())
    files, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((Path(directory) / name).iterdir()):
            if path.suffix.lower() in (".jpg", ".jpeg", ".png"):
                files.append(str(path))
                labels.append(label)
    return np.array(files), np.array(labels, np.int32)


def _decode(files, labels):
    def load(path, label):
        image = tf.io.decode_image(
            tf.io.read_file(path), channels=3, expand_animations=False
        )
        image.set_shape(IMAGE_SHAPE)
        return image, label

    images, targets = [], []
    dataset = (
        tf.data.Dataset.from_tensor_slices((files, labels))
        .map(load, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(1000)
    )
    for x, y in dataset.as_numpy_iterator():
        images.append(x)
        targets.append(y)
    return np.concatenate(images), np.concatenate(targets)


def _train_dataset(images, labels):
    def prepare(image, label):
        image = augment.random_pad_crop(image, IMAGE_SHAPE[0], padding=4)
        return augment.normalize(augment.random_flip(image)), label

    return (
        tf.data.Dataset.from_tensor_slices((images, labels))
        .shuffle(len(images), seed=FLAGS.seed, reshuffle_each_iteration=True)
        .map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(FLAGS.batch_size, drop_remainder=True)
        .prefetch(tf.data.AUTOTUNE)
    )


def _normalized(images):
    return keras.ops.convert_to_numpy(augment.normalize(images))


def _compile(model, steps, **kwargs):
    recipes.apply_weight_decay(model, FLAGS.weight_decay)
    model.compile(
        optimizer=recipes.sgd(
            recipes.LinearToZero(FLAGS.learning_rate, steps),
            momentum=0.9,
            nesterov=True,
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        run_eagerly=FLAGS.quick,
        **kwargs,
    )


def _train(model, train, path, **compile_kwargs):
    """Trains `model` unless `path` holds its trained weights."""
    if path.exists():
        model.load_weights(path)
        print(f"Loaded {path}", flush=True)
        return model
    steps = len(train) * FLAGS.epochs
    _compile(model, steps, **compile_kwargs)
    start = time.perf_counter()
    model.fit(train, epochs=FLAGS.epochs, verbose=2)
    print(f"Trained {model.name} in {time.perf_counter() - start:.0f}s")
    model.save_weights(path)
    return model


def _top1(model, width, images, labels):
    correct = 0
    for start in range(0, len(images), 500):
        logits = model(images[start : start + 500], width=width)
        predicted = np.argmax(keras.ops.convert_to_numpy(logits), axis=-1)
        correct += int(np.sum(predicted == labels[start : start + 500]))
    return correct / len(images)


def _uniform_width(model, macs):
    """The widest width on a 0.005 grid of the range with MACs <= `macs`."""
    low, high = model.width_range
    grid = np.round(np.arange(low, high + 1e-9, 0.005), 3)
    counts = profile(model, widths=[float(w) for w in grid])
    fitting = [w for w in grid if counts[float(w)]["macs"] <= macs]
    width = float(max(fitting)) if fitting else float(low)
    return width, counts[width]["macs"]


def _write(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(path.name + ".tmp")
    scratch.write_text(text)
    os.replace(scratch, path)


def main(argv):
    del argv
    start = time.perf_counter()
    try:
        targets = [float(t) for t in FLAGS.targets]
    except ValueError:
        targets = [None]
    if not targets or not all(t is not None and 0 < t <= 1 for t in targets):
        raise ValueError(
            "--targets are fractions of the full MACs, in (0, 1]. "
            f"Received: --targets={FLAGS.targets}"
        )
    if FLAGS.quick:
        FLAGS.held_out = min(FLAGS.held_out, 64)
        FLAGS.search_batch = min(FLAGS.search_batch, 64)
        FLAGS.train_images = min(FLAGS.train_images, 128)
        FLAGS.test_images = min(FLAGS.test_images, 100)
        FLAGS.epochs = 1
        FLAGS.batch_size = min(FLAGS.batch_size, 64)
        FLAGS.divisor = max(FLAGS.divisor, 128)
        targets = [0.9, 0.8]
    targets = sorted(targets, reverse=True)
    out = Path(FLAGS.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(FLAGS.seed)

    files, labels = _files(Path(FLAGS.data_dir) / "train")
    order = np.random.default_rng(FLAGS.seed).permutation(len(files))
    held = order[: FLAGS.held_out]
    rest = order[FLAGS.held_out : FLAGS.held_out + FLAGS.train_images]
    test_files, test_labels = _files(Path(FLAGS.data_dir) / "test")
    test_order = np.random.default_rng(FLAGS.seed).permutation(len(test_files))[
        : FLAGS.test_images
    ]
    x_held, y_held = _decode(files[held], labels[held])
    x_train, y_train = _decode(files[rest], labels[rest])
    x_test, y_test = _decode(test_files[test_order], test_labels[test_order])
    x_test = _normalized(x_test)
    x_held = _normalized(x_held)
    print(
        f"Decoded {len(x_train)} training, {len(x_held)} held-out and "
        f"{len(x_test)} test images in {time.perf_counter() - start:.0f}s",
        flush=True,
    )
    train = _train_dataset(x_train, y_train)

    # 1. The universally slimmable model.
    if FLAGS.model_file and FLAGS.model_file.endswith(".keras"):
        us = keras.saving.load_model(FLAGS.model_file)
        print(f"Loaded {FLAGS.model_file}", flush=True)
    elif FLAGS.model_file:
        us = zoo.us_mobilenet_v1(input_shape=IMAGE_SHAPE, classes=CLASSES)
        us.load_weights(FLAGS.model_file)
        print(f"Loaded {FLAGS.model_file}", flush=True)
    else:
        us = zoo.us_mobilenet_v1(input_shape=IMAGE_SHAPE, classes=CLASSES)
        _train(
            us,
            train,
            out / "us_mobilenet_v1.weights.h5",
            sandwich_rule=4,
            inplace_distillation=True,
        )
    full_macs = profile(us, widths=[1.0])[1.0]["macs"]

    # 2. The search, on the held-out training images.
    search_file = out / "search.json"
    if search_file.exists():
        found = [
            search.SearchResult(**r)
            for r in json.loads(search_file.read_text())
        ]
        print(f"Loaded {search_file}", flush=True)
    else:
        began = time.perf_counter()
        found = search.autoslim_search(
            us,
            (x_held[: FLAGS.search_batch], y_held[: FLAGS.search_batch]),
            [t * full_macs for t in targets],
            divisor=FLAGS.divisor,
            verbose=0 if FLAGS.quick else 1,
        )
        search_seconds = time.perf_counter() - began
        print(f"Searched in {search_seconds:.0f}s", flush=True)
        _write(search_file, json.dumps([r._asdict() for r in found]))

    # 3. The AutoSlim model, trained with the same recipe.
    autoslim = search.autoslim_model(us, found, name="autoslim_cifar10")
    autoslim = _train(autoslim, train, out / "autoslim.weights.h5")
    switch_macs = {w: p["macs"] for w, p in profile(autoslim).items()}

    # 4. Uniform widths of (at most) the same MACs.
    uniform = {s: _uniform_width(us, m) for s, m in switch_macs.items()}
    widths = sorted({w for w, _ in uniform.values()})
    us.calibrate_batch_norm(
        widths,
        _normalized(x_train[:2048]),
        batch_size=128,
        verbose=0,
    )
    snet = None
    if FLAGS.snet_baseline:
        snet = zoo.s_mobilenet_v1(
            widths=widths, input_shape=IMAGE_SHAPE, classes=CLASSES
        )
        snet = _train(snet, train, out / "s_mobilenet_v1_uniform.weights.h5")

    rows = []
    for switch in sorted(switch_macs, reverse=True):
        result = min(found, key=lambda r: abs(r.macs - switch_macs[switch]))
        width, width_macs = uniform[switch]
        row = {
            "switch": switch,
            "target": result.target_macs,
            "macs": switch_macs[switch],
            "autoslim": _top1(autoslim, switch, x_test, y_test),
            "search_error": result.error,
            "width": width,
            "width_macs": width_macs,
            "us": _top1(us, width, x_test, y_test),
            "snet": None
            if snet is None
            else _top1(snet, width, x_test, y_test),
        }
        rows.append(row)
        print(row, flush=True)
    wall = time.perf_counter() - start
    _write(
        FLAGS.output_markdown,
        _markdown(rows, found, full_macs, len(x_train), len(x_test), wall),
    )
    _write(out / "results.json", json.dumps(rows, indent=1))
    print(Path(FLAGS.output_markdown).read_text())


def _markdown(rows, found, full_macs, train_images, test_images, wall):
    command = "python examples/autoslim_cifar10.py " + " ".join(sys.argv[1:])
    lines = [
        "# AutoSlim on CIFAR-10: searched channels vs uniform widths",
        "",
        f"Command: `{command.strip()}` ({wall / 60:.0f} min wall, shared "
        "2-core CPU).",
        "",
        f"US-MobileNet v1 at 32x32, 10 classes ({full_macs / 1e6:.2f} M MACs "
        f"at full width); {train_images} training images, "
        f"{FLAGS.held_out} held-out training images for the search (its one "
        f"batch: the first {FLAGS.search_batch}), {test_images} test images "
        f"for every top-1 below; {FLAGS.epochs} epochs of each training, "
        f"batch {FLAGS.batch_size}, SGD Nesterov 0.9, learning rate "
        f"{FLAGS.learning_rate} linearly to 0, weight decay "
        f"{FLAGS.weight_decay}; search divisor {FLAGS.divisor}; seed "
        f"{FLAGS.seed}.",
        "",
        "| switch | target (M MACs) | AutoSlim MACs (M) | AutoSlim top-1 "
        "| uniform width | its MACs (M) | US calibrated top-1 "
        "| S-Net top-1 | search error (held-out batch) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        snet = "-" if r["snet"] is None else f"{r['snet']:.4f}"
        lines.append(
            f"| {r['switch']} | {r['target'] / 1e6:.2f} | "
            f"{r['macs'] / 1e6:.2f} | {r['autoslim']:.4f} | {r['width']} | "
            f"{r['width_macs'] / 1e6:.2f} | {r['us']:.4f} | {snet} | "
            f"{r['search_error']:.4f} |"
        )
    lines += [
        "",
        "Channel groups found (group: count), largest target first:",
        "",
    ]
    for r in found:
        lines.append(
            f"- {r.target_macs / 1e6:.2f} M target: "
            + ", ".join(f"{k} {v}" for k, v in r.groups.items())
        )
    lines += [
        "",
        "AutoSlim top-1: the AutoSlim model (one switch per configuration, "
        "trained from scratch). US calibrated: the searched US model at the "
        "widest uniform width (0.005 grid) with at most the switch's MACs, "
        "batch norm calibrated on 2,048 training images. S-Net: "
        "S-MobileNet v1 trained at those uniform widths with the same recipe.",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    _cli.run(main, "python examples/autoslim_cifar10.py")
