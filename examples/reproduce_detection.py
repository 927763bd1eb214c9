"""Slimmable detection on CIFAR-10 objects pasted on canvases (issue 14).

    python examples/reproduce_detection.py --output_dir=runs/detection

No detection data set can be downloaded here, so the script builds one
from the CIFAR-10 image folder (`keras_slimmable.data.detection.
pasted_objects`): 2 to 4 CIFAR images, resized to squares of 24 to 64
pixels, pasted without overlap on 128x128 canvases whose background is
another CIFAR image, enlarged and darkened; each pasted image's box and
class are known. Training canvases come from the training images (seed
`--seed`), test canvases from the test images (seed `--seed + 1`).

It trains three ways, with one recipe (RetinaNet on S-MobileNet v2 with
include_top=False, pyramid levels P3-P5, a 64-channel feature pyramid,
heads of two 32-channel convolutions, 9 anchors a location; Adam,
learning rate `--learning_rate` cosine to 0, batch `--batch_size`,
`--epochs` epochs, random horizontal flips seeded by the epoch):

- `slimmable`: one detector at widths 0.35, 0.5, 0.75, 1.0, switchable
  batch norms, trained by Algorithm 1 (the four widths' detection losses
  summed, one step);
- `individual`: one detector per width, each trained alone;
- `naive`: one detector at the four widths trained by Algorithm 1 with
  one batch norm shared by all widths (the paper's naive baseline).

Then it measures COCO box AP (AP@[.5:.95], AP50, AP75; `detection.box_ap`,
checked against pycocotools in the tests) of every width on the test
canvases and writes `zoo/results/detection.md` and a plot of AP against
the backbone's MACs.

Resuming: `--output_dir` keeps each model (`<name>.keras`, written
atomically after every epoch; epochs done are read from its optimizer's
step count), its AP (`<name>.results.json`) and the data sets (`.npz`
caches). Rerunning the same command skips finished work.

`--quick` uses 64x64 canvases, 32 training and 16 test canvases, one
epoch of 2 steps, run eagerly (the test suite runs it).
"""

import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ["KERAS_SLIMMABLE_DEFER_IMPORTS"] = "1"
from keras_slimmable import _cli  # noqa: E402

_cli.import_tensorflow_quietly(quiet="--verbose" not in sys.argv)
sys.path.insert(0, str(Path(__file__).resolve().parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from keras_slimmable import zoo  # noqa: E402
from keras_slimmable.data import augment  # noqa: E402
from keras_slimmable.data.detection import pasted_objects  # noqa: E402
from keras_slimmable.detection import retinanet  # noqa: E402
from keras_slimmable.profiling import profile  # noqa: E402
from keras_slimmable.widths import width_name  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
WIDTHS = (0.35, 0.5, 0.75, 1.0)
METHODS = {
    "slimmable": "(a) slimmable",
    "individual": "(b) individual",
    "naive": "(c) naive",
}

# Defines the flags shared with the CIFAR-10 reproduction (--data_dir,
# --archive, --output_markdown, --output_plot, --train_images,
# --test_images, --epochs, --batch_size, --learning_rate, --seed, --quick,
# --timing_steps); the defaults differ below.
import reproduce_cifar10 as cifar  # noqa: E402

FLAGS = flags.FLAGS
for name, value in {
    "output_markdown": str(REPO / "zoo" / "results" / "detection.md"),
    "output_plot": str(REPO / "zoo" / "results" / "detection.png"),
    "train_images": 4000,
    "test_images": 500,
    "epochs": 4,
    "batch_size": 16,
    "learning_rate": 1e-3,
}.items():
    FLAGS.set_default(name, value)
flags.DEFINE_string(
    "output_dir",
    None,
    "Where models, results and data caches are kept; rerunning with the "
    "same folder resumes. Defaults to a temporary folder.",
)
flags.DEFINE_list(
    "methods", list(METHODS), f"The methods to run, of {list(METHODS)}."
)
flags.DEFINE_integer("image_size", 128, "Canvas side, pixels.")


# Data -----------------------------------------------------------------------


def _source_folders(scratch):
    """`{split: CIFAR-10 class folder}`."""
    if FLAGS.data_dir is not None:
        return {s: str(Path(FLAGS.data_dir) / s) for s in ("train", "test")}
    # Enough source images for the canvases (about 3.7 images each).
    counts = {
        "train": min(50000, FLAGS.train_images * 4),
        "test": min(10000, FLAGS.test_images * 4),
    }
    return cifar._extract_splits(FLAGS.archive, scratch, counts, FLAGS.seed)


def load_sets(out, scratch):
    folders = _source_folders(scratch)
    cache = out / "data"
    train = pasted_objects(
        folders["train"],
        FLAGS.train_images,
        image_size=FLAGS.image_size,
        object_size=_object_size(),
        seed=FLAGS.seed,
        cache_dir=cache,
    )
    test = pasted_objects(
        folders["test"],
        FLAGS.test_images,
        image_size=FLAGS.image_size,
        object_size=_object_size(),
        seed=FLAGS.seed + 1,
        cache_dir=cache,
    )
    return train, test


def _object_size():
    scale = FLAGS.image_size / 128
    return (int(round(24 * scale)), int(round(64 * scale)))


def normalized(images):
    return keras.ops.convert_to_numpy(augment.normalize(images))


def flipped(images, boxes, labels, seed):
    """Each canvas flipped left-right with probability 1/2 (seeded)."""
    flip = np.random.default_rng(seed).random(len(images)) < 0.5
    images = images.copy()
    boxes = boxes.copy()
    images[flip] = images[flip, :, ::-1]
    width = images.shape[2]
    real = (labels >= 0) & flip[:, None]
    x1 = boxes[..., 0].copy()
    boxes[..., 0] = np.where(real, width - boxes[..., 2], boxes[..., 0])
    boxes[..., 2] = np.where(real, width - x1, boxes[..., 2])
    return images, boxes


# Models ---------------------------------------------------------------------


def build(widths, shared_batch_norm=False):
    backbone = zoo.s_mobilenet_v2(
        widths=widths,
        include_top=False,
        weights=None,
        input_shape=(FLAGS.image_size, FLAGS.image_size, 3),
        shared_batch_norm=shared_batch_norm,
    )
    return retinanet(
        backbone,
        num_classes=10,
        min_level=3,
        max_level=5,
        fpn_channels=64,
        head_channels=32,
        head_convs=2,
    )


def models_of(method):
    """`[(name, label, widths, shared_batch_norm)]` trained by a method."""
    if method == "individual":
        return [
            (
                f"individual_{width_name(w, '_')}",
                f"(b) individual {w}",
                (w,),
                False,
            )
            for w in WIDTHS
        ]
    return [(method, METHODS[method], WIDTHS, method == "naive")]


def compile_detector(model, total_steps):
    schedule = keras.optimizers.schedules.CosineDecay(
        FLAGS.learning_rate, max(total_steps, 1)
    )
    model.compile(
        keras.optimizers.Adam(schedule), run_eagerly=FLAGS.quick or None
    )


def write_atomically(path, text):
    cifar._write_atomically(path, lambda p: Path(p).write_text(text))


def train(name, label, widths, shared, out, train_set, steps_per_epoch):
    path = out / f"{name}.keras"
    log_path = out / f"{name}.epochs.json"
    if path.exists():
        model = keras.saving.load_model(path)
        done = int(model.optimizer.iterations.numpy()) // steps_per_epoch
        print(f"[{label}] resumed from {path} after {done} epochs", flush=True)
    else:
        keras.utils.set_random_seed(FLAGS.seed)
        model = build(widths, shared)
        compile_detector(model, FLAGS.epochs * steps_per_epoch)
        done = 0
    seconds = json.loads(log_path.read_text()) if log_path.exists() else []
    seconds = seconds[:done]
    images = train_set["images"]
    for epoch in range(done, FLAGS.epochs):
        start = time.perf_counter()
        keras.utils.set_random_seed(FLAGS.seed + epoch)
        x, boxes = flipped(
            images, train_set["boxes"], train_set["labels"], FLAGS.seed + epoch
        )
        order = np.random.default_rng(FLAGS.seed + epoch).permutation(len(x))
        count = steps_per_epoch * FLAGS.batch_size
        order = order[:count]
        history = model.fit(
            normalized(x[order]),
            {"boxes": boxes[order], "labels": train_set["labels"][order]},
            batch_size=FLAGS.batch_size,
            epochs=1,
            shuffle=False,
            verbose=0,
        )
        cifar.save_model_atomically(model, path)
        seconds.append(time.perf_counter() - start)
        write_atomically(log_path, json.dumps(seconds))
        losses = " ".join(
            f"{k}:{v[-1]:.3f}" for k, v in sorted(history.history.items())
        )
        print(
            f"[{label}] epoch {epoch + 1}/{FLAGS.epochs} "
            f"{seconds[-1]:.0f}s {losses}",
            flush=True,
        )
    return model, float(sum(seconds))


# Results --------------------------------------------------------------------


def evaluate(model, test_set):
    results = model.evaluate_box_ap(
        normalized(test_set["images"]),
        {"boxes": test_set["boxes"], "labels": test_set["labels"]},
        batch_size=50,
    )
    return {str(w): v for w, v in results.items()}


def results_markdown(results, macs, wall, config):
    lines = [
        "# Slimmable detection on pasted CIFAR-10 objects",
        "",
        "Written by `python examples/reproduce_detection.py` "
        f"({wall / 60:.0f} min wall on this run, resumed runs count their "
        "own time only). Box AP is COCO's AP@[.5:.95] (AP50 in brackets) "
        "on the test canvases, per width of the backbone.",
        "",
        f"Setup: {config}.",
        "",
        "The data: no detection set can be downloaded here, so each canvas "
        "is a CIFAR-10 image enlarged and darkened as the background, with 2 "
        "to 4 other CIFAR-10 images pasted on it as objects, resized to "
        "squares of 24 to 64 pixels (at 128 px) without overlap; their "
        "boxes and classes are the targets "
        "(`keras_slimmable.data.detection.pasted_objects`, reproducible "
        "from the seed). Training canvases use the CIFAR-10 training "
        "images, test canvases the test images.",
        "",
        "| width | backbone MACs | detector MACs | (a) slimmable | "
        "(b) individual | (c) naive |",
        "|---|---|---|---|---|---|",
    ]
    for w in WIDTHS:
        cells = []
        for method in METHODS:
            value = _result(results, method, w)
            cells.append(
                "not run yet"
                if value is None
                else f"{100 * value['ap']:.1f} ({100 * value['ap50']:.1f})"
            )
        lines.append(
            f"| {w} | {macs['backbone'][w] / 1e6:.1f} M | "
            f"{macs['detector'][w] / 1e6:.1f} M | " + " | ".join(cells) + " |"
        )
    seconds = {
        m: sum(results[n]["seconds"] for n, *_ in models_of(m) if n in results)
        for m in METHODS
    }
    times = ", ".join(
        f"{METHODS[m]} {seconds[m] / 60:.0f} min" for m in METHODS
    )
    lines += [
        "",
        *_comparisons(results),
        "",
        f"Training time (wall, 2-core CPU): {times}. One seed and one run "
        "each: the absolute AP of a few epochs from scratch is low; the "
        "columns compare like with like.",
        "",
        "![Box AP against backbone MACs](detection.png)",
        "",
    ]
    return "\n".join(lines)


def _comparisons(results):
    """One line per width: the slimmable detector's AP minus the others'."""
    lines = ["Box AP of (a) minus (b) and minus (c), in points:", ""]
    for w in WIDTHS:
        ours = _result(results, "slimmable", w)
        parts = []
        for method in ("individual", "naive"):
            other = _result(results, method, w)
            if ours is not None and other is not None:
                parts.append(
                    f"{100 * (ours['ap'] - other['ap']):+.1f} against "
                    f"{METHODS[method]}"
                )
        lines.append(f"- {w}: " + ("; ".join(parts) or "not run yet"))
    return lines


def _result(results, method, width):
    for name, _, widths, _ in models_of(method):
        if width in widths and name in results:
            return results[name]["ap"].get(str(width))
    return None


def write_plot(path, results, macs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6, 4))
    for method, marker in zip(METHODS, "osx"):
        points = [
            (macs["backbone"][w] / 1e6, 100 * v["ap"])
            for w in WIDTHS
            if (v := _result(results, method, w)) is not None
        ]
        if points:
            axis.plot(*zip(*points), marker=marker, label=METHODS[method])
    axis.set_xscale("log")
    axis.set_xlabel("backbone MACs (millions)")
    axis.set_ylabel("box AP@[.5:.95] (%)")
    axis.set_title("S-MobileNet v2 RetinaNet, pasted CIFAR-10 objects")
    axis.grid(True, alpha=0.3)
    axis.legend()
    figure.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(path).with_name(f".{Path(path).stem}.{os.getpid()}.png")
    figure.savefig(temporary, dpi=100)
    plt.close(figure)
    os.replace(temporary, path)


def main(argv):
    del argv
    start = time.perf_counter()
    cifar.check_methods(FLAGS.methods, METHODS)
    if FLAGS.quick:
        FLAGS.image_size = 64
        FLAGS.train_images = min(FLAGS.train_images, 32)
        FLAGS.test_images = min(FLAGS.test_images, 16)
        FLAGS.epochs = 1
        FLAGS.batch_size = min(FLAGS.batch_size, 16)
    with tempfile.TemporaryDirectory(prefix="detection_") as scratch:
        out = Path(FLAGS.output_dir or Path(scratch) / "run")
        out.mkdir(parents=True, exist_ok=True)
        run(out, scratch, start)


def run(out, scratch, start):
    train_set, test_set = load_sets(out, scratch)
    print(
        f"{len(train_set['images'])} training and {len(test_set['images'])} "
        f"test canvases ready in {time.perf_counter() - start:.0f}s",
        flush=True,
    )
    steps_per_epoch = len(train_set["images"]) // FLAGS.batch_size
    if FLAGS.timing_steps > 0:
        time_models(train_set)
        return
    shape = (FLAGS.image_size, FLAGS.image_size, 3)
    detector = build(WIDTHS)
    backbone_macs = profile(
        zoo.s_mobilenet_v2(
            widths=WIDTHS, include_top=False, weights=None, input_shape=shape
        ),
        shape,
    )
    macs = {
        "backbone": {w: backbone_macs[w]["macs"] for w in WIDTHS},
        "detector": {w: p["macs"] for w, p in profile(detector, shape).items()},
    }
    results = {}
    for method in METHODS:
        for name, *_ in models_of(method):
            path = out / f"{name}.results.json"
            if path.exists():
                results[name] = json.loads(path.read_text())
    for method in FLAGS.methods:
        for name, label, widths, shared in models_of(method):
            if name in results:
                print(f"[{label}] finished earlier", flush=True)
                continue
            model, seconds = train(
                name, label, widths, shared, out, train_set, steps_per_epoch
            )
            begin = time.perf_counter()
            result = {"ap": evaluate(model, test_set)}
            result["seconds"] = seconds + time.perf_counter() - begin
            write_atomically(
                out / f"{name}.results.json", json.dumps(result, indent=1)
            )
            results[name] = result
            print(
                f"[{label}] box AP: "
                + " ".join(
                    f"{w}:{100 * v['ap']:.1f}" for w, v in result["ap"].items()
                ),
                flush=True,
            )
            write_results(results, macs, start)
    write_results(results, macs, start, show=True)


def write_results(results, macs, start, show=False):
    config = (
        "S-MobileNet v2 RetinaNet (P3-P5, 64-channel pyramid, heads of two "
        f"32-channel convolutions) at "
        f"{FLAGS.image_size}x{FLAGS.image_size} for 10 classes; "
        f"{FLAGS.train_images} training and {FLAGS.test_images} test "
        f"canvases; {FLAGS.epochs} epochs, batch {FLAGS.batch_size}, Adam "
        f"{FLAGS.learning_rate} cosine to 0, horizontal flips; seed "
        f"{FLAGS.seed}"
    )
    markdown = results_markdown(
        results, macs, time.perf_counter() - start, config
    )
    write_plot(FLAGS.output_plot, results, macs)
    write_atomically(FLAGS.output_markdown, markdown)
    if show:
        print()
        print(markdown)


def time_models(train_set):
    """Prints the wall time of a training step of each model."""
    x = normalized(train_set["images"][: FLAGS.batch_size * 4])
    # Two fits of 4 steps: the first traces, the second is timed.
    y = {
        "boxes": train_set["boxes"][: FLAGS.batch_size * 4],
        "labels": train_set["labels"][: FLAGS.batch_size * 4],
    }
    for method in FLAGS.methods:
        for _, label, widths, shared in models_of(method):
            model = build(widths, shared)
            compile_detector(model, 100)
            model.fit(x, y, batch_size=FLAGS.batch_size, epochs=1, verbose=0)
            begin = time.perf_counter()
            model.fit(x, y, batch_size=FLAGS.batch_size, epochs=1, verbose=0)
            step = (time.perf_counter() - begin) / 4
            print(f"[{label}] {step:.3f} s/step", flush=True)


if __name__ == "__main__":
    _cli.run(main, "python examples/reproduce_detection.py")
