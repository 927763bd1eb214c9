"""The slimmable training step costs what training each width costs.

Compares, in one run:
- time: one slimmable training step over all widths vs the sum of one step
  of each width trained as a separate plain Keras model of the same shape
  (target: at most 1.05x);
- memory (TensorFlow only): the peak memory the slimmable step allocates vs
  one step of the widest plain model alone (target: at most 1.15x), read
  from TensorFlow's CPU allocator (`tf.config.experimental.get_memory_info`).

Run: `python benchmarks/train_step.py` (a small convnet, 64 px, batch 32),
or `--model s_mobilenet_v1 --image_size 128` for a zoo model, whose plain
per-width models are its `materialize`d widths; `--backend jax` or `torch`
for another Keras backend (both sides on that backend).
"""

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
    "model", None, "A zoo model name; defaults to a small convnet."
)
flags.DEFINE_integer("image_size", 64, "Input size.")
flags.DEFINE_integer("batch_size", 32, "Batch size.")
flags.DEFINE_integer("classes", 10, "Number of classes.")
flags.DEFINE_integer("rounds", 15, "Timed steps per model.")
FLAGS = flags.FLAGS

TIME_TARGET = 1.05
MEMORY_TARGET = 1.15


def build_models():
    """The slimmable model and one plain model per width."""
    size = FLAGS.image_size
    if FLAGS.model is None:
        slimmable = small_convnet(input_size=size, classes=FLAGS.classes)
        plain = [
            small_convnet(index=i, input_size=size, classes=FLAGS.classes)
            for i in range(len(slimmable.widths))
        ]
        return slimmable, plain
    from keras_slimmable import zoo

    slimmable = zoo.create_model(
        FLAGS.model, input_shape=(size, size, 3), classes=FLAGS.classes
    )
    plain = [slimmable.materialize(w) for w in slimmable.widths]
    return slimmable, plain


def compile_for_training(model):
    model.compile(
        keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )


def peak_step_bytes(model, x, y):
    """Bytes the allocator's peak rises above its level before the step."""
    import tensorflow as tf

    tf.config.experimental.reset_memory_stats("CPU:0")
    before = tf.config.experimental.get_memory_info("CPU:0")["current"]
    model.train_on_batch(x, y)
    return tf.config.experimental.get_memory_info("CPU:0")["peak"] - before


def main(_):
    quiet()
    slimmable, plain = build_models()
    widths = slimmable.widths
    size, batch = FLAGS.image_size, FLAGS.batch_size
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, size, size, 3)).astype("float32")
    y = rng.integers(0, FLAGS.classes, size=(batch,))
    for model in [slimmable, *plain]:
        compile_for_training(model)
        for _ in range(3):  # trace and warm up
            model.train_on_batch(x, y)

    slimmable_times = []
    plain_times = [[] for _ in plain]
    for _ in range(FLAGS.rounds):
        slimmable_times.append(time_call(slimmable.train_on_batch, x, y))
        for times, model in zip(plain_times, plain):
            times.append(time_call(model.train_on_batch, x, y))
    slimmable_ms = median_ms(slimmable_times)
    plain_ms = [median_ms(t) for t in plain_times]
    time_ratio = slimmable_ms / sum(plain_ms)

    backend = keras.backend.backend()
    name = FLAGS.model or "small convnet"
    print(
        f"Training step, {name} at {size}x{size}, batch {batch}, "
        f"{FLAGS.rounds} rounds (medians, interleaved), {backend}:"
    )
    rows = [[f"plain w={w}", ms] for w, ms in zip(widths, plain_ms)]
    rows.append(["sum of plain widths", sum(plain_ms)])
    rows.append(["slimmable (all widths)", slimmable_ms])
    print_table(["model", "ms / step"], rows)
    print()
    rows = [
        [
            "time: slimmable / sum of plain",
            f"{slimmable_ms:.1f} ms",
            f"{sum(plain_ms):.1f} ms",
            time_ratio,
            f"<= {TIME_TARGET}",
            "ok" if time_ratio <= TIME_TARGET else "OVER",
        ]
    ]
    if backend == "tensorflow":
        slimmable_bytes = min(
            peak_step_bytes(slimmable, x, y) for _ in range(3)
        )
        widest_bytes = min(peak_step_bytes(plain[-1], x, y) for _ in range(3))
        memory_ratio = slimmable_bytes / widest_bytes
        rows.append(
            [
                "peak memory: slimmable / widest",
                f"{slimmable_bytes / 2**20:.1f} MiB",
                f"{widest_bytes / 2**20:.1f} MiB",
                memory_ratio,
                f"<= {MEMORY_TARGET}",
                "ok" if memory_ratio <= MEMORY_TARGET else "OVER",
            ]
        )
    print_table(
        ["measure", "slimmable", "reference", "ratio", "target", "verdict"],
        rows,
    )


if __name__ == "__main__":
    app.run(main)
