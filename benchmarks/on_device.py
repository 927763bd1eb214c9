r"""One LiteRT file for every width against one file per width.

Exports a zoo model as one file per width, and as one multi-width file in
each layout (`materialized`, `sliced`, `shared`), with and without batch norm
folding, and in float16, dynamic range and int8 (calibrated on random
images: the latency does not depend on the ranges); prints every file's size
(deterministic) and each signature's median latency in `ai_edge_litert`'s
interpreter (XNNPACK, batch 1), all signatures timed in turns of
--calls_per_turn consecutive calls, round robin, one thread count after
the other: the steady latency (the calls after a turn's first) and the
latency right after a switch from another signature (a turn's first call)
are printed apart; each latency's ratio is to the same column's
widest width. With int8, the int8 per-width files are timed too. Random
weights with measured batch norm statistics: size and latency do not
depend on the values, as long as no activation is subnormal (see
`calibrate`).

    python benchmarks/on_device.py --model=s_mobilenet_v1 --threads=1,2 \
        --variants=materialized,int8
"""

import os
import statistics
import tempfile
from pathlib import Path

import numpy as np
from absl import app
from absl import flags
from random_model import calibrate

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

flags.DEFINE_string("model", "s_mobilenet_v1", "Zoo model name.")
flags.DEFINE_integer("image_size", 224, "Input height and width.")
flags.DEFINE_list(
    "threads", ["1"], "Interpreter threads; a list times each in turn."
)
flags.DEFINE_string(
    "folder",
    None,
    "Write the files here (default: a new temporary folder); files already "
    "there from an earlier run of the same --model are reused.",
)
flags.DEFINE_bool(
    "direct",
    False,
    "Time only set input / invoke / get output of each signature (the "
    "interpreter's own calls, private API), not the Python signature "
    "runner's per-call resize and allocate.",
)
flags.DEFINE_bool(
    "latest_features",
    False,
    "The interpreter's experimental_default_delegate_latest_features "
    "(XNNPACK's newest options).",
)
flags.DEFINE_integer(
    "repeats", 30, "Timed steady calls per signature (median)."
)
flags.DEFINE_integer(
    "calls_per_turn",
    5,
    "Consecutive calls of a signature per turn; the first one, right after "
    "another signature, is timed apart (after a switch).",
)
flags.DEFINE_bool("quantized", True, "Also float16, dynamic range, int8.")
flags.DEFINE_list(
    "variants",
    None,
    "Only these one-file variants (materialized, materialized_folded, "
    "sliced, shared, float16, dynamic_range, int8); default all.",
)
flags.DEFINE_bool(
    "saved_model",
    False,
    "Instead: SavedModel latency of each width's plain model with and "
    "without batch norm folding, batch 1 and 16.",
)
FLAGS = flags.FLAGS


def runner(path, signature, threads):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(
        model_path=str(path),
        num_threads=threads,
        experimental_default_delegate_latest_features=FLAGS.latest_features,
    )
    run = interpreter.get_signature_runner(signature)
    if not FLAGS.direct:
        return interpreter, run
    # What the signature runner does per call, less the resize and
    # allocation it repeats every call (private API, for measuring only).
    wrapper, subgraph = run._interpreter_wrapper, run._subgraph_index
    (input_index,) = run._inputs.values()
    (_, output_index), *_ = run._outputs
    run(images=np.zeros(run.get_input_details()["images"]["shape"], "f4"))

    def direct(images):
        wrapper.SetTensor(input_index, images, subgraph)
        wrapper.Invoke(subgraph)
        return wrapper.GetTensor(output_index, subgraph)

    return interpreter, direct


def median_latencies(runners, images, repeats, calls_per_turn):
    """`({key: steady median ms}, {key: after-switch median ms})`.

    The runners take turns of `calls_per_turn` consecutive calls, round
    robin in a fixed order (so every turn follows another runner): a
    turn's first call is the latency right after a switch, the others the
    steady latency an app sees calling one width frame after frame
    (`keras_slimmable.profiling.time_in_turns`, as `measure_latency`)."""
    from keras_slimmable.profiling import time_in_turns

    for run in runners.values():
        for _ in range(3):
            run(images=images)  # warm up (XNNPACK packs the weights)
    steady, after_switch = time_in_turns(
        {key: _with(run, images) for key, run in runners.items()},
        repeats,
        max(calls_per_turn, 2),
    )
    return tuple(
        {key: 1000 * statistics.median(t) for key, t in times.items()}
        for times in (steady, after_switch)
    )


def _with(run, images):
    return lambda: run(images=images)


def main(argv):
    del argv
    import numpy as np

    from keras_slimmable import export
    from keras_slimmable import profile
    from keras_slimmable import zoo

    size = FLAGS.image_size
    model = zoo.create_model(FLAGS.model, input_shape=(size, size, 3))
    calibrate(model, size)
    if FLAGS.saved_model:
        saved_model_folding(model, size)
        return
    widths = tuple(model.widths)
    macs = {w: counts["macs"] for w, counts in profile(model).items()}
    folder = FLAGS.folder or tempfile.mkdtemp(prefix="on_device_")

    def export_tflite(model, path, **kwargs):
        # An earlier run's file in --folder is timed again as it is.
        if FLAGS.folder and os.path.exists(path):
            return Path(path)
        return export.export_tflite(model, path, **kwargs)

    files = {}
    for w in widths:
        files["per_width", w] = export_tflite(
            model, os.path.join(folder, f"w{w}.tflite"), width=w
        )
    calibration = np.random.default_rng(1).normal(size=(16, size, size, 3))
    calibration = calibration.astype("float32")
    variants = {
        "materialized": {},
        "materialized_folded": {"fold_batch_norm": True},
        "sliced": {"layout": "sliced"},
        "shared": {"layout": "shared"},
    }
    if FLAGS.quantized:
        variants["float16"] = {"quantization": "float16"}
        variants["dynamic_range"] = {"quantization": "dynamic_range"}
        variants["int8"] = {
            "quantization": "int8",
            "representative_dataset": calibration,
        }
    if FLAGS.variants:
        unknown = set(FLAGS.variants) - set(variants)
        if unknown:
            raise ValueError(
                f"Unknown --variants {sorted(unknown)}; choose from "
                f"{sorted(variants)}."
            )
        variants = {k: v for k, v in variants.items() if k in FLAGS.variants}
    per_width = ["per_width"]
    if "int8" in variants:
        per_width.append("per_width_int8")
        for w in widths:
            files["per_width_int8", w] = export_tflite(
                model,
                os.path.join(folder, f"w{w}_int8.tflite"),
                width=w,
                quantization="int8",
                representative_dataset=calibration,
            )
    for name, kwargs in variants.items():
        files[name] = export_tflite(
            model,
            os.path.join(folder, f"{name}.tflite"),
            widths="all",
            **kwargs,
        )
    mb = 1e6
    per_width_total = sum(files["per_width", w].stat().st_size for w in widths)
    print(f"{FLAGS.model}, {size} px, widths {widths}")
    print("File sizes (MB):")
    for kind in per_width:
        for w in widths:
            nbytes = files[kind, w].stat().st_size
            print(f"  {kind} file {w}: {nbytes / mb:.2f}")
        total = sum(files[kind, w].stat().st_size for w in widths)
        print(f"  {kind} files together: {total / mb:.2f}")
    for name in variants:
        print(
            f"  one file, {name}: {files[name].stat().st_size / mb:.2f} "
            f"({files[name].stat().st_size / per_width_total:.3f} of the "
            "per-width files together)"
        )
    images = np.random.default_rng(0).normal(size=(1, size, size, 3))
    images = images.astype("float32")
    threads = [int(t) for t in FLAGS.threads]
    latency, after_switch = {}, {}
    for t in threads:
        # One thread count at a time: a 2-thread pool's worker spinning
        # after a call would slow the 1-thread call that follows it.
        keep = []
        runners = {}
        for kind in per_width:
            for w in widths:
                interpreter, run = runner(files[kind, w], "serving_default", t)
                keep.append(interpreter)
                runners[kind, w, t] = run
        for name in variants:
            for w in widths:
                signature = export.signature_name(w)
                interpreter, run = runner(files[name], signature, t)
                keep.append(interpreter)
                runners[name, w, t] = run
        steady, switched = median_latencies(
            runners, images, FLAGS.repeats, FLAGS.calls_per_turn
        )
        latency.update(steady)
        after_switch.update(switched)
        del keep, runners
    header = per_width + list(variants)
    how = (
        (", direct invoke" if FLAGS.direct else "")
        + (", latest XNNPACK features" if FLAGS.latest_features else "")
        + "; in brackets the ratio to the same column's widest; MACs ratio:"
    )
    for t in threads:
        print(
            f"Steady median latency (ms), {t} thread(s), batch 1, "
            f"{FLAGS.repeats} calls, turns of {FLAGS.calls_per_turn} "
            "consecutive calls round robin, each turn's first call left out"
            + how
        )
        print_latency_table(latency, header, widths, macs, t)
        print(
            f"Median latency right after a switch (ms), {t} thread(s): the "
            "first call of each turn" + how
        )
        print_latency_table(after_switch, header, widths, macs, t)


def print_latency_table(latency, header, widths, macs, threads):
    """A markdown table: each cell's latency and its ratio to its column's
    widest width, the MACs ratio, and the issue's target column."""
    widest = max(widths)
    print(
        "| width | " + " | ".join(header) + " | MACs ratio | "
        "float32 one file: latency ratio / MACs ratio |"
    )
    print("|---" * (len(header) + 3) + "|")
    for w in widths:
        cells = [
            f"{latency[h, w, threads]:.2f} "
            f"({latency[h, w, threads] / latency[h, widest, threads]:.3f})"
            for h in header
        ]
        column = "materialized" if "materialized" in header else header[0]
        ratio = latency[column, w, threads] / latency[column, widest, threads]
        mac_ratio = macs[w] / macs[widest]
        print(
            f"| {w} | "
            + " | ".join(cells)
            + f" | {mac_ratio:.3f} | {ratio / mac_ratio:.2f}x |"
        )


def _by_keyword(function):
    return lambda images: function(images)


def saved_model_folding(model, size):
    """Prints SavedModel latency with and without batch norm folding."""
    import keras
    import numpy as np
    import tensorflow as tf

    folder = tempfile.mkdtemp(prefix="on_device_sm_")
    functions = {}
    loaded = []  # the functions need their objects alive
    for w in model.widths:
        for fold in (False, True):
            plain = model.materialize(w, fold_batch_norm=fold)
            archive = keras.export.ExportArchive()
            archive.add_endpoint(
                "serve",
                plain.call,
                input_signature=[
                    tf.TensorSpec((None, size, size, 3), tf.float32)
                ],
            )
            path = os.path.join(folder, f"w{w}_{fold}")
            archive.write_out(path, verbose=False)
            loaded.append(tf.saved_model.load(path))
            functions[w, fold] = loaded[-1].serve
    print(
        f"SavedModel steady median latency (ms), {FLAGS.repeats} calls in "
        f"turns of {FLAGS.calls_per_turn}, unfolded / folded (ratio):"
    )
    for batch in (1, 16):
        images = np.random.default_rng(0).normal(size=(batch, size, size, 3))
        images = tf.constant(images.astype("float32"))
        runners = {key: _by_keyword(f) for key, f in functions.items()}
        latency, _ = median_latencies(
            runners, images, FLAGS.repeats, FLAGS.calls_per_turn
        )
        for w in model.widths:
            plain, folded = latency[w, False], latency[w, True]
            print(
                f"  batch {batch:2d}, width {w}: {plain:8.2f} / "
                f"{folded:8.2f} ({folded / plain:.3f})"
            )


if __name__ == "__main__":
    app.run(main)
