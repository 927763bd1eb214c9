"""Switching width is instant: first call after a switch vs steady state.

For every width, compares the latency of the first call after switching to
that (already used) width from another one with a steady-state call at
that width (the same width called again), through `model(x, width=w)`,
`set_width` + `model(x)` and `set_width` + `predict`. Target: at most
1.2x. Run: `python benchmarks/switching.py [--model s_mobilenet_v1]
[--backend jax]`. Every call's outputs are read back to NumPy, so JAX's
asynchronous dispatch is timed to the end of the computation.
"""

import collections

import numpy as np
from absl import app
from absl import flags
from common import keras  # imported after the backend is set
from common import median_ms
from common import print_table
from common import quiet
from common import small_convnet
from common import time_call

flags.DEFINE_string(
    "model",
    None,
    "A zoo model name (e.g. s_mobilenet_v1); defaults to a small convnet.",
)
flags.DEFINE_integer("image_size", 128, "Input size for zoo models.")
flags.DEFINE_integer("batch_size", 1, "Batch size.")
flags.DEFINE_integer("rounds", 40, "Timed calls per width and mode.")
FLAGS = flags.FLAGS

TARGET = 1.2


def build():
    if FLAGS.model is None:
        return small_convnet(), 64
    from keras_slimmable import zoo

    size = FLAGS.image_size
    return zoo.create_model(FLAGS.model, input_shape=(size, size, 3)), size


def modes(model, x):
    """name -> function(width) running one inference at that width."""

    def call_with_width(width):
        keras.ops.convert_to_numpy(model(x, width=width))

    def set_width_then_call(width):
        model.set_width(width)
        keras.ops.convert_to_numpy(model(x))

    def set_width_then_predict(width):
        model.set_width(width)
        model.predict(x, verbose=0)

    return {
        "model(x, width=w)": call_with_width,
        "set_width + model(x)": set_width_then_call,
        "set_width + predict": set_width_then_predict,
    }


def main(_):
    quiet()
    model, size = build()
    widths = model.widths
    x = np.random.default_rng(0).normal(size=(FLAGS.batch_size, size, size, 3))
    x = x.astype("float32")
    rows = []
    worst = 0.0
    for name, run in modes(model, x).items():
        for w in widths * 3:  # warm up: trace every width once
            run(w)
        steady = collections.defaultdict(list)
        switched = collections.defaultdict(list)
        for round_ in range(FLAGS.rounds):
            for i, w in enumerate(widths):
                # Arrive at w from another width: the switch.
                other = widths[(i + 1 + round_) % len(widths)]
                if other == w:
                    other = widths[(i + 1) % len(widths)]
                run(other)
                switched[w].append(time_call(run, w))
                steady[w].append(time_call(run, w))
        for w in widths:
            ratio = median_ms(switched[w]) / median_ms(steady[w])
            worst = max(worst, ratio)
            rows.append(
                [
                    name,
                    w,
                    median_ms(steady[w]),
                    median_ms(switched[w]),
                    ratio,
                    "ok" if ratio <= TARGET else "OVER",
                ]
            )
    print(
        f"Switching, {FLAGS.model or 'small convnet'} at {size}x{size}, "
        f"batch {FLAGS.batch_size}, {FLAGS.rounds} rounds (medians), "
        f"{keras.backend.backend()}:"
    )
    print_table(
        [
            "mode",
            "width",
            "steady ms",
            "after switch ms",
            "ratio",
            f"<= {TARGET}x",
        ],
        rows,
    )
    print(f"worst ratio: {worst:.3f} (target <= {TARGET})")


if __name__ == "__main__":
    app.run(main)
