"""The three Keras backends side by side: training step and inference.

Runs one worker process per backend (a process has one Keras backend) and
prints one table, same machine, same run:

- training step (small convnet, 64 px, batch 32): the slimmable step over
  all widths vs the sum of one step of each width as a separate plain Keras
  model on the same backend (target: at most 1.05x);
- inference, S-MobileNet v1 at 224 px, batch 1 and 16, each width: the
  slimmable model, `model(x, width=w)`, vs its `materialize`d plain model
  run the same way on the same backend (target: at most 1.10x). TensorFlow
  runs both as compiled functions (`tf.function`), JAX as `jax.jit`,
  PyTorch eagerly under `torch.no_grad()`.

Contenders are timed in a random order every round; ratios are medians of
the per-round ratios. Outputs are read back to NumPy, so JAX's
asynchronous dispatch is timed to the end.

Run: `python benchmarks/backends.py` (`--backends jax,torch`, `--rounds`).
"""

import json
import os
import random
import subprocess
import sys

from absl import app
from absl import flags

flags.DEFINE_list("backends", ["tensorflow", "jax", "torch"], "Backends.")
flags.DEFINE_list("batch_sizes", ["1", "16"], "Inference batch sizes.")
flags.DEFINE_integer("rounds", 20, "Timed rounds per measurement.")
flags.DEFINE_string("worker", None, "Internal: run one backend, print JSON.")
FLAGS = flags.FLAGS

TRAIN_TARGET = 1.05
INFERENCE_TARGET = 1.10
HERE = os.path.dirname(os.path.abspath(__file__))


def _worker(backend):
    os.environ["KERAS_BACKEND"] = backend
    sys.path.insert(0, HERE)
    import keras
    import numpy as np
    from common import median_ms
    from common import paired_ratio
    from common import quiet
    from common import small_convnet
    from common import time_call

    from keras_slimmable import zoo

    quiet()
    rng = np.random.default_rng(0)
    results = {"train": {}, "inference": {}}

    # The training step.
    slimmable = small_convnet()
    plain = [small_convnet(index=i) for i in range(len(slimmable.widths))]
    x = rng.normal(size=(32, 64, 64, 3)).astype("float32")
    y = rng.integers(0, 10, size=(32,))
    for model in [slimmable, *plain]:
        model.compile(
            keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True),
            keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
        for _ in range(3):
            model.train_on_batch(x, y)
    slimmable_times, plain_sums = [], []
    for _ in range(FLAGS.rounds):
        slimmable_times.append(time_call(slimmable.train_on_batch, x, y))
        plain_sums.append(sum(time_call(m.train_on_batch, x, y) for m in plain))
    results["train"] = {
        "slimmable_ms": median_ms(slimmable_times),
        "plain_sum_ms": median_ms(plain_sums),
        "ratio": paired_ratio(slimmable_times, plain_sums),
    }

    # Inference.
    model = zoo.s_mobilenet_v1(input_shape=(224, 224, 3))
    compile_plain = _plain_runner(backend)
    for batch in [int(b) for b in FLAGS.batch_sizes]:
        images = rng.normal(size=(batch, 224, 224, 3)).astype("float32")
        for width in model.widths:
            narrow = compile_plain(model.materialize(width))
            contenders = {
                "slimmable": lambda w=width, x=images: model(x, width=w),
                "materialized": lambda n=narrow, x=images: n(x),
            }
            with _no_grad(backend):
                for run in contenders.values():
                    for _ in range(3):
                        keras.ops.convert_to_numpy(run())
                times = {name: [] for name in contenders}
                for _ in range(FLAGS.rounds):
                    order = list(contenders)
                    random.shuffle(order)
                    for name in order:
                        times[name].append(
                            time_call(
                                lambda r=contenders[name]: (
                                    keras.ops.convert_to_numpy(r())
                                )
                            )
                        )
            results["inference"][f"{batch}/{width}"] = {
                "slimmable_ms": median_ms(times["slimmable"]),
                "materialized_ms": median_ms(times["materialized"]),
                "ratio": paired_ratio(
                    times["slimmable"], times["materialized"]
                ),
            }
    print(json.dumps(results))


def _plain_runner(backend):
    """Compiles a plain Keras model's inference as the backend would."""
    if backend == "tensorflow":
        import tensorflow as tf

        return lambda m: tf.function(
            lambda x: m(x, training=False), jit_compile=False
        )
    if backend == "jax":
        import jax

        def compile_jax(m):
            function = jax.jit(
                lambda t, n, x: m.stateless_call(t, n, x, training=False)[0]
            )
            return lambda x: function(
                [v.value for v in m.trainable_variables],
                [v.value for v in m.non_trainable_variables],
                x,
            )

        return compile_jax
    return lambda m: lambda x: m(x, training=False)


def _no_grad(backend):
    import contextlib

    if backend == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()


def main(argv):
    del argv
    if FLAGS.worker:
        _worker(FLAGS.worker)
        return
    measured = {}
    for backend in FLAGS.backends:
        command = [
            sys.executable,
            os.path.abspath(__file__),
            f"--worker={backend}",
            f"--rounds={FLAGS.rounds}",
            f"--batch_sizes={','.join(FLAGS.batch_sizes)}",
        ]
        environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        output = subprocess.run(
            command, capture_output=True, text=True, env=environment
        )
        if output.returncode != 0:
            sys.exit(f"{backend} failed:\n{output.stderr[-3000:]}")
        measured[backend] = json.loads(output.stdout.strip().splitlines()[-1])

    print(
        f"Training step, small convnet at 64x64, batch 32, {FLAGS.rounds} "
        "rounds (medians; ratio: median of paired rounds):"
    )
    print("backend      slimmable ms  sum of plain ms  ratio  <= 1.05")
    for backend, result in measured.items():
        t = result["train"]
        verdict = "ok" if t["ratio"] <= TRAIN_TARGET else "OVER"
        print(
            f"{backend:11s}  {t['slimmable_ms']:12.1f}  "
            f"{t['plain_sum_ms']:15.1f}  {t['ratio']:5.3f}  {verdict}"
        )
    print()
    print(
        f"Inference, s_mobilenet_v1 at 224x224, {FLAGS.rounds} rounds, "
        "slimmable / materialized ms (ratio):"
    )
    keys = list(next(iter(measured.values()))["inference"])
    print("batch/width  " + "  ".join(f"{b:>26s}" for b in measured))
    worst = 0.0
    for key in keys:
        cells = []
        for result in measured.values():
            r = result["inference"][key]
            worst = max(worst, r["ratio"])
            cells.append(
                f"{r['slimmable_ms']:7.2f} / {r['materialized_ms']:7.2f}"
                f" ({r['ratio']:5.3f})"
            )
        print(f"{key:>11s}  " + "  ".join(f"{c:>26s}" for c in cells))
    verdict = "ok" if worst <= INFERENCE_TARGET else "OVER"
    print(f"worst inference ratio: {worst:.3f} (target <= 1.10): {verdict}")


if __name__ == "__main__":
    app.run(main)
