"""Inference latency: slimmable vs materialized vs keras.applications.

For S-MobileNet v1 and v2 at 224x224 on the CPU, batch 1 and 16, and for
each width, times side by side in one run (interleaved in a random order
each round, medians):

- the slimmable model at that width, through its public API
  `model(x, width=w)` (each width's compiled function);
- its `materialize(w)`d plain Keras model;
- `keras.applications.MobileNet(alpha=w)` / `MobileNetV2(alpha=w)` where
  the width matches an alpha (random weights: latency only).

The plain models run as compiled functions too (`tf.function`), as the
slimmable model does. Targets: slimmable at most 1.10x keras.applications,
materialized at most 1.02x. Also prints latency(w)/latency(widest) beside
MACs(w)/MACs(widest). Each round times every contender, in a random order,
over a few consecutive calls (their mean); the ratios are medians of the
per-round ratios, the times medians over the rounds. Beside each ratio, the
ratio of the best (fastest) rounds: the least disturbed by other load.

Run: `python benchmarks/inference.py`
(`--models s_mobilenet_v1 --batch_sizes 1` for a subset).
"""

import collections

import keras
import numpy as np
import tensorflow as tf
from absl import app
from absl import flags
from common import median_ms
from common import paired_ratio
from common import print_table
from common import quiet
from common import time_call

flags.DEFINE_list(
    "models", ["s_mobilenet_v1", "s_mobilenet_v2"], "Zoo models to time."
)
flags.DEFINE_list("batch_sizes", ["1", "16"], "Batch sizes.")
flags.DEFINE_integer("image_size", 224, "Input size.")
flags.DEFINE_integer("rounds", 60, "Rounds; each times every contender.")
flags.DEFINE_integer(
    "calls", 2, "Consecutive calls per contender and round (their mean)."
)
FLAGS = flags.FLAGS

SLIMMABLE_TARGET = 1.10
MATERIALIZED_TARGET = 1.02
APPLICATIONS = {
    "s_mobilenet_v1": (keras.applications.MobileNet, (0.25, 0.5, 0.75, 1.0)),
    "s_mobilenet_v2": (
        keras.applications.MobileNetV2,
        (0.35, 0.5, 0.75, 1.0, 1.3, 1.4),
    ),
}


def compiled(model):
    function = tf.function(
        lambda x: model(x, training=False), reduce_retracing=True
    )
    return function


def contenders(name, size):
    """{width: {"slimmable": fn, "materialized": fn, "applications": fn}}"""
    import keras_slimmable as ks

    model = ks.zoo.create_model(name, input_shape=(size, size, 3))
    application, alphas = APPLICATIONS[name]
    result = {}
    for width in model.widths:
        entry = {
            "slimmable": lambda x, w=width: model(x, width=w),
            "materialized": compiled(model.materialize(width)),
        }
        if width in alphas:
            entry["applications"] = compiled(
                application(
                    input_shape=(size, size, 3), alpha=width, weights=None
                )
            )
        result[width] = entry
    return model, result


def main(_):
    quiet()
    import keras_slimmable as ks

    size = FLAGS.image_size
    rng = np.random.default_rng(0)
    worst = collections.defaultdict(lambda: [0.0, 0.0])
    for name in FLAGS.models:
        model, functions = contenders(name, size)
        macs = {w: f["macs"] for w, f in ks.profile(model).items()}
        widest = model.widths[-1]
        for batch in (int(b) for b in FLAGS.batch_sizes):
            x = tf.constant(
                np.random.default_rng(0)
                .normal(size=(batch, size, size, 3))
                .astype("float32")
            )
            for entry in functions.values():  # warm up: trace everything
                for function in entry.values():
                    for _ in range(3):
                        function(x)
            calls = [
                (width, kind, function)
                for width, entry in functions.items()
                for kind, function in entry.items()
            ]
            times = collections.defaultdict(list)
            for _ in range(FLAGS.rounds):
                # A fresh order every round: whatever runs right after
                # another model pays for its cold caches (measured: up to
                # 0.25 ms at batch 1), so no contender may always go first.
                for k in rng.permutation(len(calls)):
                    width, kind, function = calls[k]
                    block = [time_call(function, x) for _ in range(FLAGS.calls)]
                    times[(width, kind)].append(sum(block) / len(block))
            ms = {key: median_ms(value) for key, value in times.items()}
            rows = []
            for width in model.widths:
                row = [width] + [
                    ms.get((width, kind), "-")
                    for kind in ("slimmable", "materialized", "applications")
                ]
                if (width, "applications") in times:
                    apps = times[(width, "applications")]
                    for kind in ("slimmable", "materialized"):
                        ratios = (
                            paired_ratio(times[(width, kind)], apps),
                            min(times[(width, kind)]) / min(apps),
                        )
                        for k, ratio in enumerate(ratios):
                            worst[kind][k] = max(worst[kind][k], ratio)
                        row += ratios
                else:
                    row += ["-"] * 4
                row += [
                    ms[(width, "slimmable")] / ms[(widest, "slimmable")],
                    macs[width] / macs[widest],
                ]
                rows.append(row)
            print(
                f"\n{name}, {size}x{size}, batch {batch}, CPU, "
                f"{FLAGS.rounds} rounds in random order, {FLAGS.calls} calls "
                "each (median ms; ratios: median of paired, ratio of best):"
            )
            print_table(
                [
                    "width",
                    "slimmable",
                    "materialized",
                    "keras.apps",
                    "slim/apps",
                    "(best)",
                    "mat/apps",
                    "(best)",
                    "lat/lat_max",
                    "MACs/MACs_max",
                ],
                rows,
            )
    for kind, target in (
        ("slimmable", SLIMMABLE_TARGET),
        ("materialized", MATERIALIZED_TARGET),
    ):
        paired, best = worst[kind]
        print(
            f"worst {kind}/keras.applications: {paired:.3f} (median of "
            f"paired), {best:.3f} (ratio of best); target <= {target}"
        )


if __name__ == "__main__":
    app.run(main)
