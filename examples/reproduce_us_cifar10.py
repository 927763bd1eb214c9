"""Universally slimmable networks on CIFAR-10 (issue 13, results on real data).

    python examples/reproduce_us_cifar10.py --output_dir=runs/us_cifar10

Trains, with the recipe of `examples/reproduce_cifar10.py` (its data
loading, augmentation, optimizer, weight decay and evaluation are imported
from it, not copied: S-MobileNet v1's architecture family at 32x32 for 10
classes, 3 epochs of the 50,000 training images, batch 128, SGD Nesterov
momentum 0.9, learning rate 0.05 linearly to 0, weight decay 5e-4 on conv
and dense kernels except depthwise, pad-4 random crop and flip, seed 0):

- `us_distill`: US-MobileNet v1 (`zoo.us_mobilenet_v1`, range
  [0.25, 1.0]) with the sandwich rule (4 widths a step: 1.0, 0.25 and two
  drawn at random) and inplace distillation (every width but the widest
  learns from the widest's predictions);
- `us`: the same without inplace distillation (every width learns from
  the labels);
- `slimmable`: the fixed-width S-MobileNet v1 (widths 0.25, 0.5, 0.75,
  1.0, Algorithm 1), rerun here with the same pipeline.

After training, each US network's batch norms are calibrated
(`calibrate_batch_norm`, the reference's cumulative average of batch
statistics) at 13 widths, 0.25 to 1.0 every 0.0625, on
`--calibration_images` training images in batches of
`--calibration_batch_size`, WITHOUT augmentation (the test preprocessing:
only `normalize`); then every width is evaluated (top-1) on the test
images. The S-Net is evaluated as in `reproduce_cifar10.py` (inference
mode, its switchable batch norms' moving statistics). The script writes a
markdown table (width, MACs from `keras_slimmable.profile`, top-1 of each
method) and a plot of top-1 against MACs (log x), both atomically, after
each method finishes (methods not yet run are marked so).

Resuming: `--output_dir` keeps each method's model (`<method>.keras`,
written atomically after every epoch; the epochs done are read from its
optimizer's step count) and its results (`<method>.results.json`, after
evaluation). Rerunning the same command skips finished methods and
finished epochs. The drawn widths of the sandwich rule depend on its seed
and the step only, and every epoch's shuffling and augmentation are
seeded by the epoch, so a resumed run follows the uninterrupted one's
schedule (up to TensorFlow's nondeterminism on CPU).

`--quick` trains 200 images for one epoch (eager, no tracing),
calibrates on 100 and tests on 100 (the test suite runs it).
`--timing_steps=N` times N training steps of each method and exits.
"""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

# The examples' command-line helper imports TensorFlow quietly
# (`--verbose` shows its start-up messages).
os.environ["KERAS_SLIMMABLE_DEFER_IMPORTS"] = "1"
from keras_slimmable import _cli  # noqa: E402

_cli.import_tensorflow_quietly(quiet="--verbose" not in sys.argv)
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402

# Defines the flags both scripts share (--data_dir, --archive, --epochs,
# --batch_size, --learning_rate, ...).
import reproduce_cifar10 as base  # noqa: E402
from absl import flags  # noqa: E402

from keras_slimmable import zoo  # noqa: E402
from keras_slimmable.data import augment  # noqa: E402
from keras_slimmable.profiling import profile  # noqa: E402
from keras_slimmable.sandwich import SandwichRule  # noqa: E402
from keras_slimmable.widths import width_name  # noqa: E402

REPO = base.REPO
IMAGE_SHAPE = base.IMAGE_SHAPE
US_RANGE = (0.25, 1.0)
# 0.25 to 1.0 every 1/16 (exact in binary): 13 widths, the S-Net's among
# them.
EVAL_WIDTHS = tuple(0.25 + 0.0625 * i for i in range(13))
S_WIDTHS = base.WIDTHS
METHODS = {
    "us_distill": "US + inplace distillation",
    "us": "US, no distillation",
    "slimmable": "S-Net (Algorithm 1)",
}

FLAGS = flags.FLAGS
FLAGS.set_default(
    "output_markdown", str(REPO / "zoo" / "results" / "us_cifar10.md")
)
FLAGS.set_default(
    "output_plot", str(REPO / "zoo" / "results" / "us_cifar10.png")
)
flags.DEFINE_string(
    "output_dir",
    None,
    "Where each method's model and results are kept; rerunning with the "
    "same folder skips finished methods and epochs. Defaults to a "
    "temporary folder (nothing to resume).",
)
flags.DEFINE_list(
    "methods", list(METHODS), f"The methods to run, of {list(METHODS)}."
)
flags.DEFINE_integer(
    "num_widths",
    4,
    "Widths per sandwich-rule step (widest, narrowest, "
    "and this minus 2 drawn at random).",
)
flags.DEFINE_integer(
    "calibration_images", 2048, "Training images for batch-norm calibration."
)
flags.DEFINE_integer(
    "calibration_batch_size", 128, "Batch size of the calibration."
)


# Training -------------------------------------------------------------------


def build(method):
    if method == "slimmable":
        return base.build_model(S_WIDTHS)
    return zoo.us_mobilenet_v1(
        widths=US_RANGE, input_shape=IMAGE_SHAPE, classes=base.CLASSES
    )


def compile_method(method, model, total_steps):
    if method == "slimmable":
        base.compile_model(model, total_steps)
    else:
        base.compile_model(
            model,
            total_steps,
            sandwich_rule=SandwichRule(FLAGS.num_widths, seed=FLAGS.seed),
            inplace_distillation=method == "us_distill",
        )


def write_json_atomically(path, value):
    base._write_atomically(
        path, lambda p: Path(p).write_text(json.dumps(value, indent=1))
    )


def train(method, out, x_train, y_train, steps_per_epoch):
    """Trains (or resumes) one method; returns the trained model."""
    path = out / f"{method}.keras"
    log_path = out / f"{method}.epochs.json"
    label = METHODS[method]
    if path.exists():
        model = keras.saving.load_model(path)
        done = int(model.optimizer.iterations.numpy()) // steps_per_epoch
        print(f"[{label}] resumed from {path} after {done} epochs", flush=True)
    else:
        keras.utils.set_random_seed(FLAGS.seed)
        model = build(method)
        compile_method(method, model, FLAGS.epochs * steps_per_epoch)
        done = 0
    seconds = json.loads(log_path.read_text()) if log_path.exists() else []
    seconds = seconds[:done]
    for epoch in range(done, FLAGS.epochs):
        start = time.perf_counter()
        # Seeded by the epoch: a resumed epoch shuffles and augments as
        # the uninterrupted run's would.
        keras.utils.set_random_seed(FLAGS.seed + epoch)
        model.fit(
            base._train_dataset(
                x_train, y_train, FLAGS.batch_size, FLAGS.seed + epoch
            ),
            initial_epoch=epoch,
            epochs=epoch + 1,
            verbose=0,
            callbacks=[base.EpochProgress(label, FLAGS.epochs)],
        )
        base.save_model_atomically(model, path)
        seconds.append(time.perf_counter() - start)
        write_json_atomically(log_path, seconds)
    return model, float(sum(seconds))


# Evaluation -----------------------------------------------------------------


def normalized(images):
    return keras.ops.convert_to_numpy(augment.normalize(images))


def top1(model, x, y, width, batch_size=500):
    correct = 0
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size], width=width)
        predicted = np.argmax(keras.ops.convert_to_numpy(logits), axis=-1)
        correct += int(np.sum(predicted == y[start : start + batch_size]))
    return correct / len(x)


def evaluate(method, model, calibration, x_test, y_test):
    """`{"top1": {width: top-1}, ...}` of a trained model."""
    result = {}
    if method == "slimmable":
        logs = model.evaluate(
            x_test, y_test, batch_size=500, verbose=0, return_dict=True
        )
        result["top1"] = {
            str(w): float(logs[base._accuracy_key(w)]) for w in S_WIDTHS
        }
        return result
    # Before calibration, the two listed widths have the moving averages
    # of training's batch statistics (as the S-Net has).
    result["moving_average_top1"] = {
        str(w): top1(model, x_test, y_test, w) for w in US_RANGE
    }
    start = time.perf_counter()
    model.calibrate_batch_norm(
        list(EVAL_WIDTHS),
        calibration,
        batch_size=FLAGS.calibration_batch_size,
        verbose=0,
    )
    result["calibration_seconds"] = time.perf_counter() - start
    result["top1"] = {
        str(w): top1(model, x_test, y_test, w) for w in EVAL_WIDTHS
    }
    return result


# Results --------------------------------------------------------------------


def _cell(results, method, width):
    if method not in results:
        return "not run yet"
    value = results[method]["top1"].get(str(width))
    return "" if value is None else f"{value:.4f}"


def results_markdown(results, us_macs, s_macs, wall, config):
    command = " ".join(
        ["python", "examples/reproduce_us_cifar10.py"] + sys.argv[1:]
    )
    per_method = ", ".join(
        f"{METHODS[m]} {results[m]['seconds'] / 60:.1f} min"
        for m in METHODS
        if m in results
    )
    lines = [
        "# Universally slimmable networks on CIFAR-10",
        "",
        "Written by `examples/reproduce_us_cifar10.py`; do not edit by hand.",
        "",
        f"Command: `{command}`",
        "",
        f"Wall time of the last invocation: {wall / 60:.1f} min "
        f"({time.strftime('%Y-%m-%d %H:%M %Z')}); training, calibration "
        f"and evaluation per method (over all invocations): {per_method}.",
        "",
        f"Setup: {config}.",
        "",
        "Top-1 on the test images. US networks: batch norms calibrated at "
        "each width, then inference mode. S-Net: inference mode with its "
        "switchable batch norms' moving statistics (only its 4 widths). "
        "MACs per image from `keras_slimmable.profile` at 32x32 "
        "(US-MobileNet v1's channel rule):",
        "",
        "| width | MACs (M) | "
        + " | ".join(METHODS[m] for m in METHODS)
        + " |",
        "|---|---|" + "---|" * len(METHODS),
    ]
    for w in EVAL_WIDTHS:
        cells = " | ".join(_cell(results, m, w) for m in METHODS)
        lines.append(f"| {width_name(w)} | {us_macs[w] / 1e6:.2f} | {cells} |")
    same = all(s_macs[w] == us_macs[w] for w in S_WIDTHS)
    lines += [
        "",
        "The S-Net's MACs at its widths "
        + (
            "equal the US network's."
            if same
            else "are: "
            + ", ".join(
                f"{width_name(w)} {s_macs[w] / 1e6:.2f} M" for w in S_WIDTHS
            )
            + "."
        ),
    ]
    lines += ["", "As measured:", ""]
    for m in ("us_distill", "us"):
        if m not in results:
            continue
        moving = results[m]["moving_average_top1"]
        lines.append(
            f"- {METHODS[m]} before calibration (training's moving "
            "averages at its listed widths): "
            + ", ".join(
                f"{width_name(float(w))} {v:.4f}" for w, v in moving.items()
            )
            + "."
        )
        values = [results[m]["top1"][str(w)] for w in EVAL_WIDTHS]
        drops = [
            width_name(w)
            for w, a, b in zip(EVAL_WIDTHS[1:], values, values[1:])
            if b < a
        ]
        lines.append(
            f"- {METHODS[m]}: top-1 rises with width at "
            f"{len(EVAL_WIDTHS) - 1 - len(drops)} of "
            f"{len(EVAL_WIDTHS) - 1} steps"
            + (f" (falls at {', '.join(drops)})" if drops else "")
            + "."
        )
    for m, other in (
        ("us_distill", "us"),
        ("us_distill", "slimmable"),
        ("us", "slimmable"),
    ):
        if m in results and other in results:
            lines.append(
                f"- {METHODS[m]} minus {METHODS[other]}, in points: "
                + ", ".join(
                    f"{width_name(w)} "
                    f"{100 * (results[m]['top1'][str(w)] - results[other]['top1'][str(w)]):+.1f}"  # noqa: E501
                    for w in EVAL_WIDTHS
                    if str(w) in results[other]["top1"]
                )
                + "."
            )
    lines += ["", "![top-1 against MACs](us_cifar10.png)", ""]
    return "\n".join(lines)


def write_plot(path, results, us_macs, s_macs):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(6, 4.2), dpi=100)
    for method, marker in zip(METHODS, "o^s"):
        if method not in results:
            continue
        macs = s_macs if method == "slimmable" else us_macs
        widths = [w for w in EVAL_WIDTHS if str(w) in results[method]["top1"]]
        axes.plot(
            [macs[w] / 1e6 for w in widths],
            [100 * results[method]["top1"][str(w)] for w in widths],
            marker=marker,
            markersize=4 if method != "slimmable" else 7,
            label=METHODS[method],
        )
    axes.set_xscale("log")
    axes.set_xlabel("MACs (millions, log scale)")
    axes.set_ylabel("top-1 (%)")
    axes.set_title("US-MobileNet v1 and S-MobileNet v1 on CIFAR-10")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    base._write_atomically(path, lambda p: figure.savefig(p, format="png"))
    pyplot.close(figure)


# Main -----------------------------------------------------------------------


def main(argv):
    del argv
    start = time.perf_counter()
    base.check_methods(FLAGS.methods, METHODS)
    if FLAGS.quick:
        FLAGS.train_images = min(FLAGS.train_images, 200)
        FLAGS.test_images = min(FLAGS.test_images, 100)
        FLAGS.epochs = 1
        FLAGS.batch_size = min(FLAGS.batch_size, 100)
        FLAGS.calibration_images = min(FLAGS.calibration_images, 100)
        FLAGS.calibration_batch_size = min(FLAGS.calibration_batch_size, 50)
    with tempfile.TemporaryDirectory(prefix="us_cifar10_") as scratch:
        out = Path(FLAGS.output_dir or Path(scratch) / "run")
        out.mkdir(parents=True, exist_ok=True)
        run(out, scratch, start)


def run(out, scratch, start):
    keras.utils.set_random_seed(FLAGS.seed)
    counts = {"train": FLAGS.train_images, "test": FLAGS.test_images}
    folders = (
        base._extract_splits(FLAGS.archive, scratch, counts, FLAGS.seed)
        if FLAGS.data_dir is None
        else base._split_folders(FLAGS.data_dir, counts, FLAGS.seed, scratch)
    )
    x_train, y_train, _ = base._load_arrays(folders["train"])
    x_test, y_test, _ = base._load_arrays(folders["test"])
    print(
        f"Decoded {len(x_train)} training and {len(x_test)} test images "
        f"in {time.perf_counter() - start:.0f}s",
        flush=True,
    )
    steps_per_epoch = len(x_train) // FLAGS.batch_size
    if FLAGS.timing_steps > 0:
        time_methods(x_train, y_train)
        return
    # The calibration images: a fixed random subset of the training images,
    # preprocessed as the test images (no augmentation).
    chosen = np.random.default_rng(FLAGS.seed).choice(
        len(x_train), min(FLAGS.calibration_images, len(x_train)), False
    )
    calibration = normalized(x_train[np.sort(chosen)])
    x_test_normalized = normalized(x_test)

    us_macs = {
        w: p["macs"]
        for w, p in profile(
            build("us"), IMAGE_SHAPE, widths=list(EVAL_WIDTHS)
        ).items()
    }
    s_macs = {
        w: p["macs"]
        for w, p in profile(build("slimmable"), IMAGE_SHAPE).items()
    }
    results = {}
    for method in METHODS:
        path = out / f"{method}.results.json"
        if path.exists():
            results[method] = json.loads(path.read_text())
            print(f"[{METHODS[method]}] finished earlier: {path}", flush=True)
    for method in FLAGS.methods:
        if method in results:
            continue
        path = out / f"{method}.results.json"
        model, seconds = train(method, out, x_train, y_train, steps_per_epoch)
        begin = time.perf_counter()
        result = evaluate(method, model, calibration, x_test_normalized, y_test)
        result["seconds"] = seconds + time.perf_counter() - begin
        write_json_atomically(path, result)
        results[method] = result
        print(
            f"[{METHODS[method]}] top-1: "
            + " ".join(
                f"{width_name(float(w))}:{v:.4f}"
                for w, v in result["top1"].items()
            ),
            flush=True,
        )
        write_results(results, us_macs, s_macs, start, x_train, x_test)
    write_results(results, us_macs, s_macs, start, x_train, x_test, True)


def write_results(results, us_macs, s_macs, start, x_train, x_test, show=False):
    steps = len(x_train) // FLAGS.batch_size
    config = (
        f"us_mobilenet_v1 (range {US_RANGE}) and s_mobilenet_v1 (widths "
        f"{S_WIDTHS}) at 32x32 for 10 classes; {len(x_train)} training "
        f"images, {len(x_test)} test images; {FLAGS.epochs} epochs of "
        f"{steps} steps, batch {FLAGS.batch_size}; SGD Nesterov momentum "
        f"0.9, learning rate {FLAGS.learning_rate} linearly to 0, weight "
        f"decay {FLAGS.weight_decay} except depthwise; pad-4 random crop "
        f"and flip; sandwich rule with {FLAGS.num_widths} widths a step "
        f"(SandwichRule seed {FLAGS.seed}); seed {FLAGS.seed} (subsets, "
        f"initialization; shuffling and augmentation seed {FLAGS.seed} + "
        f"epoch); US batch norms calibrated on {FLAGS.calibration_images} "
        f"training images without augmentation, batches of "
        f"{FLAGS.calibration_batch_size}; the S-Net rerun by this script"
    )
    wall = time.perf_counter() - start
    markdown = results_markdown(results, us_macs, s_macs, wall, config)
    write_plot(FLAGS.output_plot, results, us_macs, s_macs)
    base._write_atomically(
        FLAGS.output_markdown, lambda p: Path(p).write_text(markdown)
    )
    if show:
        print()
        print(markdown)


def time_methods(x_train, y_train):
    """Prints the measured wall time of a training step of each method."""
    warmup = 3
    for method in FLAGS.methods:
        keras.utils.set_random_seed(FLAGS.seed)
        model = build(method)
        compile_method(method, model, 10**6)
        timer = base.StepTimer()
        model.fit(
            base._train_dataset(
                x_train, y_train, FLAGS.batch_size, FLAGS.seed
            ).repeat(),
            steps_per_epoch=warmup + FLAGS.timing_steps,
            epochs=1,
            verbose=0,
            callbacks=[timer],
        )
        times = np.array(timer.times)
        step = (times[-1, 0] - times[warmup, 0]) / FLAGS.timing_steps
        epoch = step * (len(x_train) // FLAGS.batch_size)
        print(
            f"{METHODS[method]}: {step:.3f} s/step wall, {epoch:.0f} s per "
            f"epoch (first step, tracing: {times[1, 0] - times[0, 0]:.0f} s)",
            flush=True,
        )


if __name__ == "__main__":
    _cli.run(main, "python examples/reproduce_us_cifar10.py")
