"""Profiling a slimmable model per width: MACs, parameters and latency.

- `profile(model)`: MACs and parameters of every width's subnetwork.
- `measure_latency(model)`: every width timed on this device (a Keras
  model or TFLite files); `select_width(model, latency_budget_ms)`: the
  widest width whose measured median fits a budget, the paper's "adjust
  its width on the fly according to on-device benchmarks".

`profile(model)` counts, for every width, what the subnetwork active at that
width computes and holds. Counting walks the model's functional graph
symbolically (shapes only, batch of one) inside each width's `width_scope`,
so every figure comes from the shapes and channel slices a layer really uses
at that width, never from the full-width variables.

Conventions, those of the reference implementation's profiler (so the zoo's
figures equal the published ones):

- MACs of a convolution: `out_h * out_w * kh * kw * in_per_group * out`
  (depthwise: `out_h * out_w * kh * kw * channels`); of a dense layer:
  `in * out`; of an average pooling, global or not: one per *input*
  element, `in_h * in_w * channels`. Batch norm, activations, additions and
  max pooling count zero.
- `conv_fc_params`: the active kernel and bias elements of the
  convolutions and dense layers.
- `bn_affine_params`: gamma + beta of the batch norms active at the width:
  that width's batch norm of a `SwitchableBatchNormalization` (the active
  prefix when `shared=True`), and the whole of an ordinary
  `keras.layers.BatchNormalization`, which every width shares.
"""

import logging
import math
import os
from pathlib import Path

import keras

from keras_slimmable.layers import SlimmableLayer
from keras_slimmable.widths import ActiveWidth
from keras_slimmable.widths import width_index
from keras_slimmable.widths import width_scope

_LOGGER = logging.getLogger("keras_slimmable.profiling")

_AVERAGE_POOLING = (
    keras.layers.AveragePooling1D,
    keras.layers.AveragePooling2D,
    keras.layers.AveragePooling3D,
    keras.layers.GlobalAveragePooling1D,
    keras.layers.GlobalAveragePooling2D,
    keras.layers.GlobalAveragePooling3D,
)
_ZERO_PADDING = (
    keras.layers.ZeroPadding1D,
    keras.layers.ZeroPadding2D,
    keras.layers.ZeroPadding3D,
)
_PLAIN_WEIGHTED = (
    keras.layers.Conv1D,
    keras.layers.Conv2D,
    keras.layers.Conv3D,
    keras.layers.DepthwiseConv2D,
)


def profile(model, input_shape=None, widths=None):
    """Counts MACs and parameters of a slimmable model at every width.

    Args:
        model: a `SlimmableModel` (any functional model whose layers read
            the width scope, with a `widths` attribute).
        input_shape: the shape of one input, without the batch axis, e.g.
            `(224, 224, 3)`; a list of shapes for a model with several
            inputs. Defaults to the model's input shape.
        widths: the widths to count. Defaults to `model.widths`; a model
            with a `width_range` is counted at any width in it. A per-layer
            configuration (`{layer name: channels}`) is counted too, keyed
            by its sorted `(layer name, channels)` pairs.

    Returns:
        A dict `{width: {"macs": int, "conv_fc_params": int,
        "bn_affine_params": int}}` with one entry per width, ascending.
        MACs are per image.

    Raises:
        ValueError: if an input shape is unknown (give `input_shape`), or a
            layer with trainable weights is of a kind this function cannot
            count.

    Example:

    ```python
    model = keras_slimmable.zoo.s_mobilenet_v1()
    for width, counts in keras_slimmable.profile(model).items():
        print(width, counts["macs"] / 1e6, "M MACs")
    ```
    """
    inputs = _symbolic_inputs(model, input_shape)
    if widths is None:
        actives = [ActiveWidth(w, i) for i, w in enumerate(model.widths)]
    elif hasattr(model, "_active_width"):
        actives = [model._active_width(w) for w in widths]
    else:
        indices = [width_index(model.widths, w) for w in widths]
        actives = [ActiveWidth(model.widths[i], i) for i in indices]
    result = {}
    # Widths ascending; per-layer configurations after them, in the order
    # given, keyed by their `(layer name, count)` pairs.
    for active in sorted(
        actives, key=lambda a: (a.width is None, a.width or 0.0)
    ):
        totals = {"macs": 0, "conv_fc_params": 0, "bn_affine_params": 0}
        for call in layer_calls(model, active, inputs):
            for key, value in _count(call, active).items():
                totals[key] += value
        result[
            active.width if active.width is not None else active.channels
        ] = totals
    return result


class LayerCall:
    """One call of an operation in a width's forward pass, with shapes.

    Attributes:
        operation: the layer (or other Keras operation) called.
        input_shapes: the shapes of its tensor inputs, flattened, with the
            batch axis.
        output_shapes: the shapes of its outputs, flattened.
        sources: for each tensor input, the `LayerCall` that produced it
            (`None` for a model input).
    """

    def __init__(self, operation, inputs, outputs, sources):
        self.operation = operation
        self.input_shapes = [tuple(x.shape) for x in inputs]
        self.output_shapes = [tuple(x.shape) for x in outputs]
        self.sources = sources

    def __repr__(self):
        return (
            f"LayerCall({self.operation.name!r}, inputs={self.input_shapes}, "
            f"outputs={self.output_shapes})"
        )


def layer_calls(model, active, inputs):
    """The calls of the model's operations at a width, in order.

    Runs the functional graph on symbolic `inputs` (`keras.KerasTensor`s)
    inside the width scope of `active` (an `ActiveWidth`, or an int: the
    position of a width in `model.widths`), computing only output shapes,
    and records
    every operation call with its input and output shapes. Nested
    functional models are walked into.
    """
    calls = []
    producers = {}

    def visit(operation):
        def run(*args, **kwargs):
            if isinstance(operation, keras.Model) and hasattr(
                operation, "_run_through_graph"
            ):
                outputs = _walk(operation, args[0], visit)
            else:
                outputs = operation.compute_output_spec(*args, **kwargs)
            inputs = _tensors((args, kwargs))
            call = LayerCall(
                operation,
                inputs,
                _tensors(outputs),
                [producers.get(id(x)) for x in inputs],
            )
            for x in _tensors(outputs):
                producers[id(x)] = call
            calls.append(call)
            return outputs

        return run

    if not isinstance(active, ActiveWidth):
        active = ActiveWidth(model.widths[active], active)
    with width_scope(
        active.index, active.width, active.sampled, active.channels
    ):
        _walk(model, inputs, visit)
    return calls


def _walk(functional, inputs, visit):
    # `compute_output_spec` of a functional model returns the recorded
    # (full-width) shapes when the input shapes match, so the graph is
    # walked node by node instead.
    # Private Keras API (checked by tests/test_keras_private_api.py): the
    # functional graph walker, the one way to visit every call in order.
    return functional._run_through_graph(inputs, operation_fn=visit)


def _tensors(structure):
    return [
        x
        for x in keras.tree.flatten(structure)
        if isinstance(x, keras.KerasTensor)
    ]


def _symbolic_inputs(model, input_shape):
    references = model.inputs
    if input_shape is None:
        shapes = [tuple(x.shape[1:]) for x in references]
    elif len(references) == 1 and not isinstance(input_shape[0], (list, tuple)):
        shapes = [tuple(input_shape)]
    else:
        shapes = [tuple(s) for s in input_shape]
    if len(shapes) != len(references):
        raise ValueError(
            f"The model has {len(references)} inputs; give one shape for "
            f"each. Received: input_shape={input_shape!r}"
        )
    for shape, reference in zip(shapes, references):
        if len(shape) != len(reference.shape) - 1 or any(
            d is None for d in shape
        ):
            raise ValueError(
                "Profiling needs a fully known input shape without the "
                f"batch axis, like {tuple(reference.shape[1:])} with every "
                f"size given. Received: input_shape={input_shape!r}"
            )
    inputs = [
        keras.KerasTensor((1,) + shape, dtype=reference.dtype)
        for shape, reference in zip(shapes, references)
    ]
    return inputs[0] if len(inputs) == 1 else inputs


def _count(call, width):
    """The MACs and parameters of one layer call at `width`: a slimmable
    layer counts itself (`SlimmableLayer.count`); Keras's own layers are
    counted here."""
    layer = call.operation
    counts = {"macs": 0, "conv_fc_params": 0, "bn_affine_params": 0}
    if isinstance(layer, keras.Model):
        return counts  # Its own layers were recorded while walking it.
    input_shape = call.input_shapes[0] if call.input_shapes else ()
    output_shape = call.output_shapes[0] if call.output_shapes else ()
    if isinstance(layer, SlimmableLayer):
        return layer.count(input_shape, output_shape, width)
    if isinstance(layer, keras.layers.BatchNormalization):
        counts["bn_affine_params"] = sum(
            math.prod(v.shape)
            for v in (
                getattr(layer, "gamma", None),
                getattr(layer, "beta", None),
            )
            if v is not None
        )
    elif isinstance(layer, _AVERAGE_POOLING):
        # PyTorch pads inside the pooling op; here the zeros that make a
        # padded pool count them in the average (`count_include_pad`) come
        # from a separate ZeroPadding layer, which the reference's count
        # (one MAC per input element) does not see.
        source = call.sources[0] if call.sources else None
        if source is not None and isinstance(source.operation, _ZERO_PADDING):
            input_shape = source.input_shapes[0]
        counts["macs"] = math.prod(input_shape[1:])
    elif isinstance(layer, keras.layers.Dense):
        units = output_shape[-1]
        kernel = input_shape[-1] * units
        counts["macs"] = math.prod(output_shape[1:-1]) * kernel
        counts["conv_fc_params"] = kernel + (units if layer.use_bias else 0)
    elif isinstance(layer, _PLAIN_WEIGHTED):
        # An ordinary Keras convolution: its whole kernel.
        shape = tuple(layer.kernel.shape)
        if isinstance(layer, keras.layers.DepthwiseConv2D):
            out = shape[-2] * shape[-1]
        else:
            out = shape[-1]
        kernel = math.prod(shape)
        counts["macs"] = math.prod(output_shape[1:-1]) * kernel
        counts["conv_fc_params"] = kernel + (out if layer.use_bias else 0)
    elif layer.trainable_weights:
        raise ValueError(
            f"`profile` does not know how to count layer '{layer.name}' of "
            f"type {type(layer).__name__}, which has trainable weights."
        )
    return counts


# Latency per width -----------------------------------------------------------


def measure_latency(
    model,
    widths=None,
    batch_size=1,
    runs=50,
    warmup=5,
    num_threads=None,
    save=False,
    calls_per_turn=5,
):
    """Times inference at every width on this device.

    The widths take turns. A turn is `calls_per_turn` consecutive calls of
    one width, as an app runs the width it chose frame after frame; the
    turns go round robin over the widths, ascending, so a burst of noise
    from the rest of the machine slows every width alike instead of
    whichever width happened to be running. The first call of a turn comes
    right after another width ran (the next narrower one; the widest before
    the narrowest), finds less of this width's weights and activations in
    the CPU's caches, and is slower (S-MobileNet v1 at width 0.25 in
    LiteRT: 1.21 ms against 1.06 ms). It is reported apart, as
    `after_switch_median_ms`; the median and percentiles are those of the
    turns' other calls, the steady latency a width runs at. The first
    `warmup` calls of each width (tracing, memory allocation) are not
    timed.

    Args:
        model: what to time. A `SlimmableModel`, called as
            `model(x, width=w)` (each width's compiled inference function);
            a path to a TFLite file; or a dict `{width: path to a TFLite
            file}` (see `keras_slimmable.export.export_tflite`), run with
            `ai_edge_litert`'s interpreter. A file with a signature per
            width (`export_tflite(..., widths=...)`) has each signature
            timed, keyed by its width.
        widths: the widths to time. Defaults to all of `model.widths`, or
            every key of the dict, or every width signature of a file. For
            a file of one width: a list of the one width the file holds,
            used as the key of the result (which defaults to the path, as a
            string).
        batch_size: images per call, random normal of the model's input
            shape. Defaults to `1`.
        runs: timed steady calls per width (not counting the first call
            of each turn). Defaults to `50`.
        warmup: untimed calls per width, before the timed ones. Defaults
            to `5`.
        num_threads: the LiteRT interpreter's threads, for TFLite files.
            Defaults to `None` (the interpreter's default).
        save: for a TFLite file with a signature per width: also write the
            result beside it, as `<file>.latency.json`
            (`save_latency_table`), which `select_width(path, ...)` then
            reads instead of timing again. Defaults to `False`.
        calls_per_turn: consecutive calls of a width per turn, the first
            of them right after another width. Defaults to `5`. With `1`,
            every call follows another width: the median is then the
            latency right after a switch.

    Returns:
        A dict `{width: {"median_ms": float, "p10_ms": float,
        "p90_ms": float, "runs": int, "after_switch_median_ms": float}}`,
        widths ascending: the median and the 10th and 90th percentiles of
        the steady calls' wall-clock time, their number, and the median
        of the first call after another width (only when more than one
        width is timed).

    Raises:
        ValueError: for a width the model does not have, or a bad
            `batch_size`, `runs`, `warmup` or `calls_per_turn`.
        TypeError: if `model` is none of the above.
        FileNotFoundError: for a TFLite path that does not exist.

    Example:

    ```python
    model = keras_slimmable.zoo.s_mobilenet_v1()
    for width, t in keras_slimmable.measure_latency(model).items():
        print(f"{width}: {t['median_ms']:.2f} ms")
    ```
    """
    import statistics

    _check_count("batch_size", batch_size, minimum=1)
    _check_count("runs", runs, minimum=1)
    _check_count("warmup", warmup, minimum=0)
    _check_count("calls_per_turn", calls_per_turn, minimum=1)
    if num_threads is not None:
        _check_count("num_threads", num_threads, minimum=1)
    if save and not isinstance(model, (str, os.PathLike)):
        raise ValueError(
            "`save=True` stores the table beside a TFLite file: `model` "
            f"must be its path. Received: model={model!r}"
        )
    runners = _latency_runners(model, widths, batch_size, num_threads)
    for run in runners.values():
        for _ in range(warmup):
            run()
    steady, after_switch = time_in_turns(runners, runs, calls_per_turn)
    order = list(runners)
    result = {key: _latency_summary(steady[key]) for key in order}
    if len(order) > 1:
        for key in order:
            result[key]["after_switch_median_ms"] = float(
                1000.0 * statistics.median(after_switch[key])
            )
    if save:
        save_latency_table(
            model,
            result,
            batch_size=batch_size,
            num_threads=num_threads,
            calls_per_turn=calls_per_turn,
        )
    return result


def time_in_turns(runners, runs, calls_per_turn):
    """Times `runners` (`{key: function of no argument}`) in turns.

    Each turn is `calls_per_turn` consecutive calls of one runner, the
    turns round robin in the dict's order, until every runner has `runs`
    steady calls (the last round's turns only as long as that needs).
    A turn's first call, right after another runner, is kept apart;
    with `calls_per_turn=1` every call is both steady and after a switch.
    Garbage collection is off while timing, as `timeit` does.

    Returns:
        `(steady, after_switch)`: `{key: [seconds, ...]}` each.
    """
    import gc
    import time

    steady = {key: [] for key in runners}
    after_switch = {key: [] for key in runners}
    first_key = next(iter(runners))
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        while len(steady[first_key]) < runs:
            missing = runs - len(steady[first_key])
            calls = min(calls_per_turn, missing + 1)
            for key, run in runners.items():
                for call in range(calls):
                    start = time.perf_counter()
                    run()
                    elapsed = time.perf_counter() - start
                    if call == 0:
                        after_switch[key].append(elapsed)
                    if call > 0 or calls_per_turn == 1:
                        steady[key].append(elapsed)
    finally:
        if gc_was_enabled:
            gc.enable()
    return steady, after_switch


def select_width(
    model,
    latency_budget_ms,
    widths=None,
    batch_size=1,
    runs=50,
    measurements=None,
    saved_table="auto",
):
    """The widest width whose measured median latency fits a budget.

    On a TFLite file with a signature per width, a latency table saved
    beside it (`measure_latency(path, save=True)`, `<file>.latency.json`)
    is read instead of timing again, if it matches the file (its size, its
    SHA-256 and its signatures), this device, `batch_size` and the widths
    asked for. Which one was used is logged (logger
    `"keras_slimmable.profiling"`, level INFO); a table that is present
    but damaged or does not match is ignored with a warning, and the
    widths are timed.

    Args:
        model: as for `measure_latency`; unused (may be `None`) when
            `measurements` is given.
        latency_budget_ms: the budget per call, in milliseconds; a width
            fits if its median latency is at most this.
        widths: the widths to choose from. Defaults to every measured one.
        batch_size: images per call when measuring. Defaults to `1`.
        runs: timed calls per width when measuring. Defaults to `50`.
        measurements: the result of `measure_latency`, to choose from
            without timing again. Defaults to the saved table, if any
            (see above), else measuring `model` now.
        saved_table: for a TFLite file: `"auto"` reads a matching saved
            table if present; `True` requires one (a `ValueError` if it is
            missing, damaged or does not match); `False` always times.
            Defaults to `"auto"`.

    Returns:
        The width (a float).

    Raises:
        ValueError: if no width fits, naming the budget and the fastest
            measured median; for a bad budget, or a width not measured.

    Example:

    ```python
    timings = keras_slimmable.measure_latency(model)
    width = keras_slimmable.select_width(model, 5.0, measurements=timings)
    model.set_width(width)
    ```
    """
    if (
        isinstance(latency_budget_ms, bool)
        or not isinstance(latency_budget_ms, (int, float))
        or not math.isfinite(latency_budget_ms)
        or latency_budget_ms <= 0
    ):
        raise ValueError(
            "`latency_budget_ms` must be a positive number of milliseconds. "
            f"Received: latency_budget_ms={latency_budget_ms!r}"
        )
    if saved_table not in ("auto", True, False):
        raise ValueError(
            "`saved_table` must be 'auto', True or False. Received: "
            f"saved_table={saved_table!r}"
        )
    if measurements is None and isinstance(model, (str, os.PathLike)):
        measurements = _saved_measurements(
            model, saved_table, batch_size, widths
        )
    if measurements is None:
        measurements = measure_latency(
            model, widths=widths, batch_size=batch_size, runs=runs
        )
        _LOGGER.info("select_width: timed %s now.", _describe(model))
    measured = {}
    for key, timing in measurements.items():
        if isinstance(key, bool) or not isinstance(key, (int, float)):
            raise ValueError(
                "`measurements` must be keyed by width (a number), as "
                "`measure_latency` returns for a model or a dict of TFLite "
                f"files. Received the key {key!r}"
            )
        measured[float(key)] = timing
    if widths is not None:
        chosen = {}
        for width in widths:
            matches = [w for w in measured if math.isclose(w, float(width))]
            if not matches:
                raise ValueError(
                    f"Width {width!r} was not measured; measured widths: "
                    f"{sorted(measured)}. Received: widths={widths!r}"
                )
            chosen[matches[0]] = measured[matches[0]]
        measured = chosen
    if not measured:
        raise ValueError(
            "Nothing to choose from. Received: "
            f"measurements={measurements!r}, widths={widths!r}"
        )
    fitting = [
        w for w, t in measured.items() if t["median_ms"] <= latency_budget_ms
    ]
    if not fitting:
        fastest = min(measured, key=lambda w: measured[w]["median_ms"])
        raise ValueError(
            f"No width fits latency_budget_ms={latency_budget_ms}: the "
            f"fastest measured median is "
            f"{measured[fastest]['median_ms']:.3f} ms (width {fastest})."
        )
    return max(fitting)


# A latency table saved beside a file ----------------------------------------

LATENCY_TABLE_SUFFIX = ".latency.json"
_TABLE_FORMAT = "keras_slimmable.latency_table"
_TABLE_VERSION = 2
_TABLE_FIELDS = ("median_ms", "p10_ms", "p90_ms", "runs")
_OPTIONAL_TABLE_FIELDS = ("after_switch_median_ms",)


class LatencyTableError(ValueError):
    """A saved latency table that is damaged or does not match its file."""


def latency_table_path(path):
    """Where the latency table of the TFLite file `path` is saved:
    `<path>.latency.json`, beside it."""
    path = Path(path)
    return path.with_name(path.name + LATENCY_TABLE_SUFFIX)


def save_latency_table(
    path, measurements, batch_size=1, num_threads=None, calls_per_turn=None
):
    """Saves the measured latency of a one-file model beside it.

    Writes `<path>.latency.json` (`latency_table_path`) atomically: to a
    hidden file beside it, synced, then renamed over it, so a reader sees
    the old table or the whole new one, never a part; what a killed
    writer left is removed by the next save. The table names the file it
    was measured on (size and SHA-256), its width signatures, this device
    (`platform.machine()`, `platform.processor()`, `os.cpu_count()`), the
    batch size and the threads: `load_latency_table` refuses it for any
    other file or device. The format is plain JSON, for an app to read
    without this package (`examples/on_device.py`):

    ```
    {"format": "keras_slimmable.latency_table", "version": 2,
     "file": {"name": ..., "size": ..., "sha256": ...},
     "signatures": {"serving_w0_25": 0.25, ...},
     "device": {...}, "batch_size": 1, "num_threads": null,
     "calls_per_turn": 5, "measured_at": "2026-11-29T14:00:00+00:00",
     "latency_ms": {"0.25": {"median_ms": ..., "p10_ms": ..., "p90_ms":
     ..., "runs": ..., "after_switch_median_ms": ...}, ...}}
    ```

    Version 2 (this one) holds the steady latency of each width (see
    `measure_latency`); version 1 timed every call right after another
    width, and is read no more.

    Args:
        path: the TFLite file with a signature per width.
        measurements: `measure_latency(path)`'s result, keyed by width.
        batch_size: the batch size it was measured at. Defaults to `1`.
        num_threads: the interpreter threads it was measured with.
            Defaults to `None` (the interpreter's default).
        calls_per_turn: `measure_latency`'s, recorded for the reader.
            Defaults to `None` (not known).

    Returns:
        The `Path` of the table.

    Raises:
        FileNotFoundError: if `path` does not exist.
        ValueError: if the file has no width signatures, or
            `measurements` are not keyed by its widths.
    """
    import datetime
    import json

    from keras_slimmable.export import _files

    path = Path(path)
    signatures = _width_signatures(path)
    if not signatures:
        raise ValueError(
            f"{path} has no width signatures (serving_w0_25, ...): a saved "
            "latency table is for a file with a signature per width "
            "(export_tflite(..., widths='all'))."
        )
    latency = {}
    for key, timing in measurements.items():
        if isinstance(key, bool) or not isinstance(key, (int, float)):
            raise ValueError(
                "`measurements` must be keyed by width, as measure_latency("
                f"path) returns. Received the key {key!r}"
            )
        matches = [w for w in signatures if math.isclose(w, float(key))]
        if not matches:
            raise ValueError(
                f"{path} has no signature for width {key}: its widths are "
                f"{sorted(signatures)}."
            )
        latency[repr(matches[0])] = {
            name: (int(timing[name]) if name == "runs" else float(timing[name]))
            for name in _TABLE_FIELDS + _OPTIONAL_TABLE_FIELDS
            if name in timing or name in _TABLE_FIELDS
        }
    table = {
        "format": _TABLE_FORMAT,
        "version": _TABLE_VERSION,
        "file": _file_identity(path),
        "signatures": {
            name: width for width, name in sorted(signatures.items())
        },
        "device": _device(),
        "batch_size": batch_size,
        "num_threads": num_threads,
        "calls_per_turn": calls_per_turn,
        "measured_at": datetime.datetime.now(datetime.timezone.utc)
        .replace(microsecond=0)
        .isoformat(),
        "latency_ms": dict(sorted(latency.items(), key=lambda x: float(x[0]))),
    }
    target = latency_table_path(path)
    _files.remove_leftovers(target.parent, targets={target.name})
    text = json.dumps(table, indent=1) + "\n"
    _files.atomic_write_bytes(target, text.encode())
    return target


def load_latency_table(path, batch_size=None, num_threads=None):
    """Reads the latency table saved beside a one-file model.

    Args:
        path: the TFLite file (not the table).
        batch_size: if given, the table must have been measured at it.
        num_threads: if given, the table must have been measured with it.

    Returns:
        `(measurements, table)`: `{width: {"median_ms": ..., ...}}` as
        `measure_latency` returns, and the whole table (a dict).

    Raises:
        FileNotFoundError: if there is no table beside `path`.
        LatencyTableError (a `ValueError`): the table is not valid JSON of
            this format, or it was measured on another file (size or
            SHA-256), with other signatures, on another device, or at
            another batch size or thread count; the message says which.
    """
    import json

    path = Path(path)
    table_path = latency_table_path(path)
    if not table_path.is_file():
        raise FileNotFoundError(f"No latency table at {str(table_path)!r}")
    try:
        table = json.loads(table_path.read_bytes())
        if (
            table.get("format") != _TABLE_FORMAT
            or table.get("version") != _TABLE_VERSION
        ):
            raise LatencyTableError(
                f"{table_path} is not a latency table of version "
                f"{_TABLE_VERSION}. Received: format="
                f"{table.get('format')!r}, version={table.get('version')!r}"
                "; measure again with measure_latency(path, save=True)."
            )
        measurements = {
            float(width): {
                name: int(t[name]) if name == "runs" else float(t[name])
                for name in _TABLE_FIELDS + _OPTIONAL_TABLE_FIELDS
                if name in t or name in _TABLE_FIELDS
            }
            for width, t in table["latency_ms"].items()
        }
        recorded_file = dict(table["file"])
        recorded_signatures = {
            str(k): float(v) for k, v in table["signatures"].items()
        }
        recorded_device = dict(table["device"])
    except LatencyTableError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as error:
        raise LatencyTableError(
            f"{table_path} is damaged ({type(error).__name__}: {error}); "
            "delete it or measure again with measure_latency(path, "
            "save=True)."
        ) from None
    if not measurements:
        raise LatencyTableError(f"{table_path} holds no measurement.")
    actual = _file_identity(path, with_hash=False)
    if recorded_file.get("size") != actual["size"]:
        raise LatencyTableError(
            f"{table_path} was measured on another file: "
            f"{recorded_file.get('size')} bytes, {path} has "
            f"{actual['size']}."
        )
    if recorded_file.get("sha256") != _sha256(path):
        raise LatencyTableError(
            f"{table_path} was measured on another file of the same size "
            f"(its SHA-256 differs from {path}'s)."
        )
    signatures = {
        name: width for width, name in _width_signatures(path).items()
    }
    if recorded_signatures != signatures:
        raise LatencyTableError(
            f"{table_path} names the signatures {recorded_signatures}; "
            f"{path} has {signatures}."
        )
    if recorded_device != _device():
        raise LatencyTableError(
            f"{table_path} was measured on another device: "
            f"{recorded_device}; this one is {_device()}."
        )
    for name, value in (
        ("batch_size", batch_size),
        ("num_threads", num_threads),
    ):
        if value is not None and table.get(name) != value:
            raise LatencyTableError(
                f"{table_path} was measured with {name}="
                f"{table.get(name)!r}. Received: {name}={value!r}"
            )
    return measurements, table


def _saved_measurements(path, saved_table, batch_size, widths):
    """`select_width`'s saved table, or `None` to time (see there)."""
    import warnings

    if saved_table is False:
        return None
    table_path = latency_table_path(path)
    if saved_table == "auto" and not table_path.exists():
        return None
    try:
        measurements, table = load_latency_table(path, batch_size=batch_size)
        for width in widths or ():
            if not any(math.isclose(w, float(width)) for w in measurements):
                raise LatencyTableError(
                    f"{table_path} has no measurement for width {width}: "
                    f"it has {sorted(measurements)}."
                )
    except (LatencyTableError, FileNotFoundError) as error:
        if saved_table is True:
            raise
        warnings.warn(
            f"Ignoring the saved latency table: {error} Timing the widths now.",
            stacklevel=3,
        )
        return None
    _LOGGER.info(
        "select_width: read the latency table %s (measured %s).",
        table_path,
        table.get("measured_at"),
    )
    return measurements


def _file_identity(path, with_hash=True):
    identity = {"name": path.name, "size": path.stat().st_size}
    if with_hash:
        identity["sha256"] = _sha256(path)
    return identity


def _sha256(path):
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _device():
    import platform

    return {
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
    }


def _describe(model):
    if isinstance(model, (str, os.PathLike)):
        return os.fspath(model)
    return type(model).__name__


def _check_count(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"`{name}` must be an int >= {minimum}. Received: {name}={value!r}"
        )


def _latency_summary(seconds):
    import numpy as np

    p10, median, p90 = np.percentile(1000.0 * np.asarray(seconds), [10, 50, 90])
    return {
        "median_ms": float(median),
        "p10_ms": float(p10),
        "p90_ms": float(p90),
        "runs": len(seconds),
    }


def _latency_runners(model, widths, batch_size, num_threads=None):
    """`{width: function running one call}`, widths ascending."""
    import numpy as np

    from keras_slimmable.widths import width_index

    if isinstance(model, (str, os.PathLike)):
        signatures = _width_signatures(model)
        if signatures:
            return _signature_runners(
                model, signatures, widths, batch_size, num_threads
            )
        if widths is None:
            return {
                os.fspath(model): _tflite_runner(model, batch_size, num_threads)
            }
        widths = list(widths)
        if len(widths) != 1:
            raise ValueError(
                "A single TFLite file holds one width: give at most one in "
                f"`widths`. Received: widths={widths!r}"
            )
        return {
            float(widths[0]): _tflite_runner(model, batch_size, num_threads)
        }
    if isinstance(model, dict):
        try:
            files = {float(width): path for width, path in model.items()}
        except (TypeError, ValueError):
            raise ValueError(
                "A dict of TFLite files must be keyed by width. Received: "
                f"model={model!r}"
            ) from None
        if widths is None:
            widths = files
        runners = {}
        for width in sorted(float(w) for w in widths):
            if width not in files:
                raise ValueError(
                    f"No TFLite file for width {width}: the files are for "
                    f"widths {sorted(files)}. Received: widths={widths!r}"
                )
            runners[width] = _tflite_runner(
                files[width], batch_size, num_threads
            )
        return runners
    if not hasattr(model, "widths"):
        raise TypeError(
            "`model` must be a SlimmableModel, a TFLite file path or a dict "
            "{width: TFLite file path}. Received: "
            f"model={model!r} of type {type(model).__name__}"
        )
    if widths is None:
        widths = model.widths
    chosen = sorted(
        {model.widths[width_index(model.widths, w)] for w in widths}
    )

    shape = tuple(model.input.shape[1:])
    if any(dim is None for dim in shape):
        raise ValueError(
            "`measure_latency` needs the model's input shape to be known. "
            f"Received a model with input shape {(None,) + shape}"
        )
    rng = np.random.default_rng(0)
    x = keras.ops.convert_to_tensor(
        rng.normal(size=(batch_size,) + shape).astype(model.input.dtype)
    )

    def runner(width):
        def run():
            keras.ops.convert_to_numpy(model(x, width=width))

        return run

    return {width: runner(width) for width in chosen}


def _width_signatures(path):
    """`{width: signature name}` of a TFLite file's width signatures
    (`serving_w0_25`, ...; see `keras_slimmable.export`), maybe empty."""
    import re

    from ai_edge_litert.interpreter import Interpreter

    if not os.path.isfile(path):
        raise FileNotFoundError(f"No TFLite file at {os.fspath(path)!r}")
    names = Interpreter(model_path=os.fspath(path)).get_signature_list()
    found = {}
    for name in names:
        match = re.fullmatch(r"serving_w(\d+)_(\d+)", name)
        if match:
            found[float(f"{match[1]}.{match[2]}")] = name
    return found


def _signature_runners(path, signatures, widths, batch_size, num_threads):
    """Runners of a multi-width TFLite file's signatures, by width."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    if batch_size != 1:
        raise ValueError(
            "The signatures of a multi-width TFLite file take one image. "
            f"Received: batch_size={batch_size!r}"
        )
    chosen = sorted(signatures) if widths is None else []
    for width in [] if widths is None else widths:
        matches = [w for w in signatures if math.isclose(w, float(width))]
        if not matches:
            raise ValueError(
                f"The file has no signature for width {width}: its widths "
                f"are {sorted(signatures)}. Received: widths={widths!r}"
            )
        chosen.append(matches[0])
    interpreter = Interpreter(
        model_path=os.fspath(path), num_threads=num_threads
    )
    runners = {}
    for width in sorted(set(chosen)):
        runner = interpreter.get_signature_runner(signatures[width])
        (name, details), *_ = runner.get_input_details().items()
        x = np.random.default_rng(0).normal(size=details["shape"])
        x = x.astype(details["dtype"])

        def run(runner=runner, name=name, x=x):
            runner(**{name: x})

        runners[width] = run
    return runners


def _tflite_runner(path, batch_size, num_threads=None):
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    if not os.path.isfile(path):
        raise FileNotFoundError(f"No TFLite file at {os.fspath(path)!r}")
    interpreter = Interpreter(
        model_path=os.fspath(path), num_threads=num_threads
    )
    (source,) = interpreter.get_input_details()
    shape = (batch_size,) + tuple(int(d) for d in source["shape"][1:])
    if tuple(source["shape"]) != shape:
        interpreter.resize_tensor_input(source["index"], shape)
    interpreter.allocate_tensors()
    x = np.random.default_rng(0).normal(size=shape).astype(source["dtype"])
    (target,) = interpreter.get_output_details()

    def run():
        interpreter.set_tensor(source["index"], x)
        interpreter.invoke()
        interpreter.get_tensor(target["index"])

    return run
