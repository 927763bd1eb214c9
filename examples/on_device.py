"""One LiteRT file on the device: measure every width, run the widest that
fits the latency budget, switch when the budget changes.

What an app does with the file `export_tflite(model, path, widths="all")`
writes, in the few lines of `ai_edge_litert` an app needs (the app side
below imports nothing of keras-slimmable):

    python examples/on_device.py --tflite s_mobilenet_v1.tflite \
        --budgets_ms 40,8,15

Without `--tflite` it first exports a zoo model (`--model`, random weights
unless `--weights`) to a temporary one-file model. If a latency table was
saved beside the file (`<file>.latency.json`, written by
`keras_slimmable.measure_latency(path, save=True)` or by `--save_table`
here) and it matches the file (size, SHA-256, signatures) and this device,
it is read instead of timing again; otherwise the widths are timed (and the
reason printed). Only the Python
interpreter was run here; docs/on_device.md shows the same calls in Kotlin
and Swift.
"""

import datetime
import hashlib
import json
import os
import platform
import re
import statistics
import tempfile
import time

# TensorFlow prints start-up messages; `_cli.run` imports it quietly after
# parsing the flags (`--verbose` shows them).
os.environ["KERAS_SLIMMABLE_DEFER_IMPORTS"] = "1"
from absl import flags  # noqa: E402

from keras_slimmable import _cli  # noqa: E402

flags.DEFINE_string("tflite", None, "A one-file model with width signatures.")
flags.DEFINE_string("model", "s_mobilenet_v1", "Zoo model to export first.")
flags.DEFINE_string("weights", None, "Weights of that model; random if unset.")
flags.DEFINE_integer("image_size", 224, "Input size of the exported model.")
flags.DEFINE_list(
    "budgets_ms", ["40", "8", "15"], "Budgets, one after another."
)
flags.DEFINE_integer("runs", 20, "Timed calls per width.")
flags.DEFINE_integer("threads", 1, "Interpreter threads.")
flags.DEFINE_bool(
    "save_table",
    False,
    "Save the timings beside --tflite as <file>.latency.json, for the "
    "next start to read instead of timing again.",
)
FLAGS = flags.FLAGS


# The app side: ai_edge_litert and NumPy only ------------------------------


def width_signatures(interpreter):
    """`{width: signature runner}` of the file's `serving_w...` signatures."""
    runners = {}
    for name in interpreter.get_signature_list():
        match = re.fullmatch(r"serving_w(\d+)_(\d+)", name)
        if match:
            width = float(f"{match[1]}.{match[2]}")
            runners[width] = interpreter.get_signature_runner(name)
    return dict(sorted(runners.items()))


CALLS_PER_TURN = 5


def measure(runners, image, runs):
    """`(steady, after_switch)`: the times (ms) of every width.

    After a warm-up the widths take turns of CALLS_PER_TURN consecutive
    calls (as the app will call the width it picks, frame after frame),
    round robin so that noise slows every width alike. The first call of a
    turn comes right after another width and runs with colder caches: it
    is kept apart. `runs` steady calls per width.
    """
    steady = {width: [] for width in runners}
    after_switch = {width: [] for width in runners}
    for run in runners.values():
        run(images=image)
    while len(steady[min(runners)]) < runs:
        calls = min(CALLS_PER_TURN, runs - len(steady[min(runners)]) + 1)
        for width, run in runners.items():
            for call in range(calls):
                start = time.perf_counter()
                run(images=image)
                elapsed = 1000 * (time.perf_counter() - start)
                (after_switch if call == 0 else steady)[width].append(elapsed)
    return steady, after_switch


def table_path(path):
    return path + ".latency.json"


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def this_device():
    # As keras_slimmable.profiling records it.
    return {
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
    }


def read_table(path, signatures, threads):
    """`({width: median ms}, None)` from the table saved beside the file,
    or `(None, why not)`: missing, damaged, or measured on another file,
    signature set, device or thread count."""
    try:
        with open(table_path(path), "rb") as file:
            table = json.load(file)
        if table["version"] != 2:
            return None, (
                f"the saved latency table is of version {table['version']}, "
                "not 2"
            )
        latency = {
            float(w): float(t["median_ms"])
            for w, t in table["latency_ms"].items()
        }
        recorded = table["file"], table["signatures"], table["device"]
    except FileNotFoundError:
        return None, "no saved latency table"
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        return None, f"the saved latency table is damaged ({error!r})"
    (file, names, device), size = recorded, os.path.getsize(path)
    if file.get("size") != size or file.get("sha256") != sha256(path):
        return None, "the saved latency table is of another file"
    if set(names) != set(signatures) or set(latency) != set(
        signatures.values()
    ):
        return None, "the saved latency table has other signatures"
    if device != this_device():
        return None, "the saved latency table is of another device"
    if table.get("num_threads") not in (None, threads):
        return None, (
            f"the saved latency table is of {table.get('num_threads')} "
            "thread(s)"
        )
    return latency, None


def deciles(times):
    return statistics.quantiles(times, n=10) if len(times) > 1 else times


def write_table(path, signatures, times, after_switch, threads):
    """Saves the timings beside the file, in keras_slimmable's format:
    written to a temporary file, synced, then renamed over the old one."""
    table = {
        "format": "keras_slimmable.latency_table",
        "version": 2,
        "file": {
            "name": os.path.basename(path),
            "size": os.path.getsize(path),
            "sha256": sha256(path),
        },
        "signatures": signatures,
        "device": this_device(),
        "batch_size": 1,
        "num_threads": threads,
        "calls_per_turn": CALLS_PER_TURN,
        "measured_at": datetime.datetime.now(datetime.timezone.utc)
        .replace(microsecond=0)
        .isoformat(),
        "latency_ms": {
            repr(width): {
                "median_ms": statistics.median(t),
                "p10_ms": deciles(t)[0],
                "p90_ms": deciles(t)[-1],
                "runs": len(t),
                "after_switch_median_ms": statistics.median(
                    after_switch[width]
                ),
            }
            for width, t in times.items()
        },
    }
    target = table_path(path)
    partial = f"{target}.{os.getpid()}.partial"
    with open(partial, "w") as file:
        json.dump(table, file, indent=1)
        file.flush()
        os.fsync(file.fileno())
    os.replace(partial, target)
    return target


def widest_within(latency, budget_ms):
    """The widest width whose median fits the budget, or None."""
    fitting = [w for w, ms in latency.items() if ms <= budget_ms]
    return max(fitting) if fitting else None


def run_on_device(path, budgets, runs, threads, save_table=False):
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    with _cli.quiet_stderr(not FLAGS.verbose):  # LiteRT's delegate line
        interpreter = Interpreter(model_path=path, num_threads=threads)
        runners = width_signatures(interpreter)
    if not runners:
        raise _cli.CommandLineError(
            f"{path} has no width signatures (serving_w0_25, ...): export "
            "it with export_tflite(model, path, widths='all')."
        )
    (details,) = runners[max(runners)].get_input_details().values()
    image = np.random.default_rng(0).normal(size=details["shape"])
    image = image.astype(details["dtype"])
    signatures = {
        name: float(f"{m[1]}.{m[2]}")
        for name in interpreter.get_signature_list()
        if (m := re.fullmatch(r"serving_w(\d+)_(\d+)", name))
    }
    print(f"{os.path.basename(path)}: {len(runners)} widths in one file")
    latency, why_not = read_table(path, signatures, threads)
    if latency is not None:
        print(f"Read the latency table {os.path.basename(table_path(path))}")
        for width, ms in latency.items():
            print(f"  width {width:<5} {ms:7.2f} ms (saved)")
    else:
        print(f"Timing every width: {why_not}.")
        with _cli.quiet_stderr(not FLAGS.verbose):
            times, after_switch = measure(runners, image, runs)
        latency = {w: statistics.median(t) for w, t in times.items()}
        for width, ms in latency.items():
            switch_ms = statistics.median(after_switch[width])
            print(
                f"  width {width:<5} {ms:7.2f} ms (median of {runs}; "
                f"{switch_ms:.2f} ms right after a switch)"
            )
        if save_table:
            saved = write_table(path, signatures, times, after_switch, threads)
            print(f"Saved the latency table {os.path.basename(saved)}")
    current = None
    for budget in budgets:
        width = widest_within(latency, budget)
        note = ""
        if width is None:
            width = min(latency)
            note = " (nothing fits: the narrowest)"
        action = "keeps" if width == current else "switches to"
        logits = runners[width](images=image)["output_0"]
        print(
            f"budget {budget:g} ms: {action} width {width}{note}, "
            f"{latency[width]:.2f} ms; class {int(np.argmax(logits))}"
        )
        current = width


# Preparing the file (the workstation side) ----------------------------------


def export_zoo_model(folder):
    from keras_slimmable import export
    from keras_slimmable import zoo

    size = FLAGS.image_size
    model = zoo.create_model(
        FLAGS.model, weights=FLAGS.weights, input_shape=(size, size, 3)
    )
    path = os.path.join(folder, f"{FLAGS.model}.tflite")
    with _cli.quiet_stderr(not FLAGS.verbose):  # the converter's logs
        export.export_tflite(model, path, widths="all")
    weights = FLAGS.weights or "random weights"
    print(f"Exported {FLAGS.model} ({weights}) at every width to one file.")
    return path


def main(argv):
    if len(argv) > 1:
        raise _cli.CommandLineError(f"Unexpected arguments: {argv[1:]}")
    try:
        budgets = [float(b) for b in FLAGS.budgets_ms]
    except ValueError:
        raise _cli.CommandLineError(
            "--budgets_ms must be numbers of milliseconds, e.g. 40,8,15. "
            f"Received: {','.join(FLAGS.budgets_ms)}"
        ) from None
    if not budgets or any(b <= 0 for b in budgets):
        raise _cli.CommandLineError(
            "--budgets_ms must be positive. Received: "
            f"{','.join(FLAGS.budgets_ms)}"
        )
    if FLAGS.tflite:
        if not os.path.isfile(FLAGS.tflite):
            raise _cli.CommandLineError(f"No file at --tflite={FLAGS.tflite}")
        run_on_device(
            FLAGS.tflite, budgets, FLAGS.runs, FLAGS.threads, FLAGS.save_table
        )
        return
    if FLAGS.save_table:
        raise _cli.CommandLineError(
            "--save_table saves beside --tflite; without it the model is a "
            "temporary file."
        )
    with tempfile.TemporaryDirectory() as folder:
        path = export_zoo_model(folder)
        run_on_device(path, budgets, FLAGS.runs, FLAGS.threads)


if __name__ == "__main__":
    _cli.run(main, "examples/on_device.py")
