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
MACs(w)/MACs(widest). The ratios are medians of per-round ratios (each
round times every contender moments apart), the times medians.

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
flags.DEFINE_integer("rounds", 30, "Timed calls per model, width and batch.")
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
    worst = collections.defaultdict(float)
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
                    times[(width, kind)].append(time_call(function, x))
            ms = {key: median_ms(value) for key, value in times.items()}
            rows = []
            for width in model.widths:
                slim = ms[(width, "slimmable")]
                mat = ms[(width, "materialized")]
                apps = ms.get((width, "applications"))
                slim_ratio = mat_ratio = None
                if apps is not None:
                    apps_times = times[(width, "applications")]
                    slim_ratio = paired_ratio(
                        times[(width, "slimmable")], apps_times
                    )
                    mat_ratio = paired_ratio(
                        times[(width, "materialized")], apps_times
                    )
                if apps is not None:
                    worst["slimmable"] = max(worst["slimmable"], slim_ratio)
                    worst["materialized"] = max(
                        worst["materialized"], mat_ratio
                    )
                rows.append(
                    [
                        width,
                        slim,
                        mat,
                        "-" if apps is None else apps,
                        "-" if apps is None else slim_ratio,
                        "-" if apps is None else mat_ratio,
                        slim / ms[(widest, "slimmable")],
                        macs[width] / macs[widest],
                    ]
                )
            print(
                f"\n{name}, {size}x{size}, batch {batch}, CPU, "
                f"{FLAGS.rounds} rounds in random order (median ms):"
            )
            print_table(
                [
                    "width",
                    "slimmable",
                    "materialized",
                    "keras.apps",
                    "slim/apps",
                    "mat/apps",
                    "lat/lat_max",
                    "MACs/MACs_max",
                ],
                rows,
            )
    print(
        f"\nworst slimmable/keras.applications: {worst['slimmable']:.3f} "
        f"(target <= {SLIMMABLE_TARGET}); worst materialized/"
        f"keras.applications: {worst['materialized']:.3f} "
        f"(target <= {MATERIALIZED_TARGET})"
    )


if __name__ == "__main__":
    app.run(main)
