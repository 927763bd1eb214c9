"""The sandwich rule does not retrace: steps per second against fixed widths.

Trains one universally slimmable model three ways, interleaved round robin
on the same batch:

- fixed: Algorithm 1 at four listed widths (0.25, 0.5, 0.75, 1.0);
- sandwich: the widest, the narrowest and two widths drawn at random every
  step (`compile(sandwich_rule=4)`);
- sandwich + inplace distillation.

It prints the median milliseconds per step, steps per second, the ratio to
the fixed widths, and how many times each training step was traced (the
Python `train_step` runs once per trace on TensorFlow and JAX; on PyTorch,
which runs eagerly, once per step). The drawn widths are computed at full
width with the channels beyond their count zeroed, so one trace serves
every width: a drawn width costs a full-width pass, where a listed width
costs its own.

Run: `python benchmarks/sandwich.py` (US-MobileNet v1, 64 px, batch 32;
`--backend jax` or `torch`).
"""

import numpy as np
from absl import app
from absl import flags
from common import keras  # imported after the backend is set
from common import ks
from common import median_ms
from common import paired_ratio
from common import print_table
from common import quiet
from common import time_call

flags.DEFINE_integer("image_size", 64, "Input size.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_integer("rounds", 15, "Timed steps per way of training.")
FLAGS = flags.FLAGS

LISTED = (0.25, 0.5, 0.75, 1.0)


def build(widths, **compile_arguments):
    size = FLAGS.image_size
    model = ks.zoo.us_mobilenet_v1(
        widths=widths,
        calibrated_widths=LISTED,
        input_shape=(size, size, 3),
        classes=10,
    )
    model.compile(
        keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        **compile_arguments,
    )
    traces = [0]
    step = model.train_step

    def counted(*args, **kwargs):
        traces[0] += 1
        return step(*args, **kwargs)

    model.train_step = counted
    return model, traces


def main(_):
    quiet()
    rng = np.random.default_rng(0)
    size, batch = FLAGS.image_size, FLAGS.batch_size
    x = rng.normal(size=(batch, size, size, 3)).astype("float32")
    y = rng.integers(0, 10, size=(batch,))
    ways = {
        "fixed (4 listed widths)": build(LISTED),
        "sandwich (4 widths, 2 drawn)": build(
            (0.25, 1.0), sandwich_rule=ks.SandwichRule(4, seed=0)
        ),
        "sandwich + distillation": build(
            (0.25, 1.0),
            sandwich_rule=ks.SandwichRule(4, seed=0),
            inplace_distillation=True,
        ),
    }
    for model, _ in ways.values():
        for _ in range(3):  # trace and warm up
            model.train_on_batch(x, y)
    times = {name: [] for name in ways}
    for _ in range(FLAGS.rounds):
        for name, (model, _) in ways.items():
            times[name].append(time_call(model.train_on_batch, x, y))
    steps = 3 + FLAGS.rounds
    fixed = times["fixed (4 listed widths)"]
    print(
        f"Training steps, us_mobilenet_v1 at {size}x{size}, batch {batch}, "
        f"{FLAGS.rounds} rounds (medians, interleaved), "
        f"{keras.backend.backend()}:"
    )
    rows = []
    for name, (_, traces) in ways.items():
        ms = median_ms(times[name])
        rows.append(
            [
                name,
                ms,
                1000.0 / ms,
                paired_ratio(times[name], fixed),
                f"{traces[0]} in {steps} steps",
            ]
        )
    print_table(
        ["training", "ms / step", "steps / s", "time / fixed", "traces"],
        rows,
    )


if __name__ == "__main__":
    app.run(main)
