r"""LiteRT latency per layer and per width: where a narrow width loses time.

    python benchmarks/on_device_layers.py --model=s_mobilenet_v1 \
        [--image_size=224] [--threads=1] [--repeats=100] [--widths=0.25]

For every width of a zoo model (random weights, batch norm statistics
measured by `random_model.calibrate`), the width's plain model
`model.materialize(width, fold_batch_norm=True)` (batch norms folded into
the convolutions, as LiteRT fuses them) is cut into its `Conv2D`,
`DepthwiseConv2D` and `Dense` layers. Each becomes a one-layer Keras model
with the layer's config and weights on its real input shape (batch 1),
converted to a float32 LiteRT model (`TFLiteConverter.from_keras_model`).
Two neighbours go in with it, so that the op is the one the whole model
runs: a `ZeroPadding2D` whose only consumer is the layer (its input shape
is then the model's input shape; XNNPACK fuses the padding into the
convolution), and a `ReLU` (or `Activation("relu")`) that is the layer's
only consumer (the converter fuses it as the op's activation). Pooling,
additions and reshapes are not timed alone: they are part of the rest.

MACs are counted here from the shapes and configs: output pixels x kernel
area x input channels (per group) x output channels for a convolution,
output pixels x kernel area x channels x depth multiplier for a depthwise
convolution, inputs x units for a dense layer.

Channel-tile probe: XNNPACK's float32 kernels on this x86 CPU (FMA3) work
in tiles of 16 channels (8 on ARM64), so a layer with 8 channels may take
as long as one with 16. Every layer whose channel count (output channels
of a convolution or dense layer, channels of a depthwise convolution) is
not a multiple of `--tile` is also timed with that count rounded up to the
next multiple (its "twin", random weights; grouped convolutions are not
probed). The ESTIMATE then charges each such layer the per-channel cost of
its twin, `time(twin) * channels / rounded`, keeps every other layer's
time and the rest (whole model minus the sum of its layers) as measured:
a model of a device whose tile divides every channel count, not a
measurement.

Timing: `Interpreter.invoke()` alone (a random normal input set once; the
values do not change float32 speed, subnormals aside), XNNPACK,
`--threads`. Every one-layer model, twin and whole model of every width,
and a one-op model (the cost of an `invoke()` itself) are timed round robin
for `--repeats` rounds, after `--warmup` calls each; at each visit one
untimed call puts the model back in the caches, then one call is timed
(steady state, as in a loop of inferences:
`keras_slimmable.profiling.time_in_turns` with turns of two). Medians are
printed. The whole model of a width is
`export.export_tflite(model, path, width=w, fold_batch_norm=True)`.
"""

import contextlib
import io
import json
import math
import os
import shutil
import statistics
import tempfile
from collections import defaultdict

os.environ["KERAS_SLIMMABLE_DEFER_IMPORTS"] = "1"
from absl import flags  # noqa: E402

# benchmarks/ is on the path when this runs as a script.
from random_model import calibrate  # noqa: E402

from keras_slimmable import _cli  # noqa: E402

flags.DEFINE_string("model", "s_mobilenet_v1", "Zoo model name.")
flags.DEFINE_integer("image_size", 224, "Input height and width.")
flags.DEFINE_integer("threads", 1, "Interpreter threads.", lower_bound=1)
flags.DEFINE_integer(
    "repeats",
    100,
    "Timed rounds (median): each round calls every model twice, the "
    "second call timed.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "warmup", 5, "Untimed calls of every model first.", lower_bound=0
)
flags.DEFINE_list(
    "widths",
    None,
    "Only these widths of the model (the widest is always added: the "
    "ratios are to it); default all.",
)
flags.DEFINE_integer(
    "tile",
    16,
    "Channel tile of the probe: layers whose channel count is not a "
    "multiple of it are also timed with the count rounded up to one.",
    lower_bound=1,
)
flags.DEFINE_string(
    "json_out", None, "Also write the results to this JSON file."
)
FLAGS = flags.FLAGS


class Unit:
    """One MAC-bearing layer of a plain model and the neighbours timed with
    it: the zero padding before it and the activation after it, or None."""

    def __init__(self, layer, padding, activation):
        self.layer = layer
        self.padding = padding
        self.activation = activation

    @property
    def input_shape(self):
        """The unit's input shape with batch 1."""
        shape = (self.padding or self.layer).input.shape
        return (1,) + tuple(shape[1:])

    @property
    def depthwise(self):
        import keras

        return isinstance(self.layer, keras.layers.DepthwiseConv2D)

    @property
    def dense(self):
        import keras

        return isinstance(self.layer, keras.layers.Dense)

    @property
    def channels(self):
        """Output channels of a convolution or dense layer, channels of a
        depthwise convolution."""
        if self.depthwise:
            return self.layer.input.shape[-1]
        return self.layer.output.shape[-1]

    @property
    def probed(self):
        """Whether a twin with rounded channels can be built."""
        return self.dense or self.depthwise or self.layer.groups == 1

    @property
    def macs(self):
        config = self.layer.get_config()
        cin = self.layer.input.shape[-1]
        if self.dense:
            return math.prod(self.layer.input.shape[1:]) * config["units"]
        pixels = math.prod(self.layer.output.shape[1:-1])
        area = math.prod(config["kernel_size"])
        if self.depthwise:
            return pixels * area * cin * config["depth_multiplier"]
        return pixels * area * cin // config["groups"] * config["filters"]

    @property
    def operation(self):
        """`"conv 3x3"`, `"dw 3x3"`, `"dense"`, ...: what the layer
        computes, for the breakdown by kind."""
        config = self.layer.get_config()
        if self.dense:
            return "dense"
        kernel = "x".join(str(k) for k in config["kernel_size"])
        if self.depthwise:
            return f"dw {kernel}"
        if config["groups"] > 1:
            return f"conv {kernel} g{config['groups']}"
        return f"conv {kernel}"

    @property
    def kind(self):
        kind = self.operation
        if not self.dense:
            kind += f" /{self.layer.get_config()['strides'][0]}"
        if self.padding is not None:
            kind += " +pad"
        if self.activation is not None:
            kind += f" +{_activation_name(self.activation)}"
        return kind

    def keras_model(self, channels=None):
        """The one-layer model; with `channels`, the twin with that many
        channels and random weights."""
        import keras

        shape = self.input_shape
        config = self.layer.get_config()
        if channels is not None:
            if self.depthwise:
                shape = shape[:-1] + (channels,)
            elif self.dense:
                config["units"] = channels
            else:
                config["filters"] = channels
        inputs = keras.Input(batch_shape=shape)
        x = inputs
        if self.padding is not None:
            x = _clone(self.padding)(x)
        layer = type(self.layer).from_config(config)
        x = layer(x)
        if channels is None:
            layer.set_weights(self.layer.get_weights())
        if self.activation is not None:
            x = _clone(self.activation)(x)
        return keras.Model(inputs, x)


def _clone(layer):
    return type(layer).from_config(layer.get_config())


def _activation_name(layer):
    import keras

    if isinstance(layer, keras.layers.ReLU):
        max_value = layer.get_config()["max_value"]
        return "relu" if max_value is None else f"relu{max_value:g}"
    return layer.get_config()["activation"]


def _fusable_activation(layer):
    import keras

    if isinstance(layer, keras.layers.ReLU):
        config = layer.get_config()
        return (
            not config["negative_slope"]
            and not config["threshold"]
            and config["max_value"] in (None, 6.0)
        )
    if isinstance(layer, keras.layers.Activation):
        return layer.get_config()["activation"] in ("relu", "relu6")
    return False


def mac_units(plain):
    """The `Unit`s of a plain functional model's `Conv2D`,
    `DepthwiseConv2D` and `Dense` layers, in the model's order."""
    import keras

    import keras_slimmable as ks

    producer = {}
    consumers = defaultdict(list)
    for layer in plain.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        producer[id(layer.output)] = layer
        for tensor in keras.tree.flatten(layer.input):
            consumers[id(tensor)].append(layer)
    units = []
    for layer in plain.layers:
        if isinstance(layer, ks.SlimmableLayer):
            raise ValueError(
                f"Expected a plain model; layer '{layer.name}' is slimmable."
            )
        if not isinstance(
            layer,
            (
                keras.layers.Conv2D,
                keras.layers.DepthwiseConv2D,
                keras.layers.Dense,
            ),
        ):
            continue
        padding = producer.get(id(layer.input))
        if not (
            isinstance(padding, keras.layers.ZeroPadding2D)
            and len(consumers[id(padding.output)]) == 1
        ):
            padding = None
        after = consumers[id(layer.output)]
        activation = None
        if len(after) == 1 and _fusable_activation(after[0]):
            activation = after[0]
        units.append(Unit(layer, padding, activation))
    return units


def litert_bytes(keras_model):
    """A float32 LiteRT flatbuffer of a plain Keras model."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(keras_model)
    # The Keras export behind it prints its endpoints; the converter logs.
    with contextlib.redirect_stdout(io.StringIO()), _cli.quiet_stderr():
        return converter.convert()


def interpreter(content=None, path=None):
    """A ready interpreter with a random input set once."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    with _cli.quiet_stderr():
        result = Interpreter(
            model_content=content,
            model_path=None if path is None else str(path),
            num_threads=FLAGS.threads,
        )
        result.allocate_tensors()
    (detail,) = result.get_input_details()
    x = np.random.default_rng(0).normal(size=detail["shape"])
    result.set_tensor(detail["index"], x.astype("float32"))
    return result


def median_ms(interpreters, repeats, warmup):
    """`{key: median ms of invoke()}`, timed in turns of two calls round
    robin, the second timed (see the module docstring)."""
    from keras_slimmable.profiling import time_in_turns

    for model in interpreters.values():
        for _ in range(warmup):
            model.invoke()
    steady, _ = time_in_turns(
        {key: model.invoke for key, model in interpreters.items()},
        repeats,
        calls_per_turn=2,
    )
    return {key: 1000 * statistics.median(t) for key, t in steady.items()}


def _widths(model):
    if not FLAGS.widths:
        return tuple(model.widths)
    chosen = set()
    for text in FLAGS.widths:
        try:
            width = float(text)
        except ValueError:
            width = None
        if width not in model.widths:
            raise ValueError(
                f"--widths must list widths of {FLAGS.model}, "
                f"{tuple(model.widths)}. Received: --widths="
                f"{','.join(FLAGS.widths)}"
            )
        chosen.add(width)
    chosen.add(max(model.widths))
    return tuple(sorted(chosen))


def _round_up(channels):
    return -(-channels // FLAGS.tile) * FLAGS.tile


def measure(model, widths, folder):
    """Converts and times everything; returns the results per width."""
    from keras_slimmable import export

    interpreters = {}
    layers = {}
    for width in widths:
        plain = model.materialize(width, fold_batch_norm=True)
        layers[width] = []
        for index, unit in enumerate(mac_units(plain)):
            row = {
                "name": unit.layer.name,
                "kind": unit.kind,
                "operation": unit.operation,
                "input_shape": list(unit.input_shape),
                "channels": unit.channels,
                "macs": unit.macs,
                "rounded_channels": None,
            }
            interpreters[width, index] = interpreter(
                litert_bytes(unit.keras_model())
            )
            if unit.probed and unit.channels % FLAGS.tile:
                row["rounded_channels"] = _round_up(unit.channels)
                twin = unit.keras_model(row["rounded_channels"])
                interpreters[width, index, "twin"] = interpreter(
                    litert_bytes(twin)
                )
            layers[width].append(row)
        with contextlib.redirect_stdout(io.StringIO()), _cli.quiet_stderr():
            path = export.export_tflite(
                model,
                os.path.join(folder, f"w{width}.tflite"),
                width=width,
                fold_batch_norm=True,
            )
        interpreters[width, "whole"] = interpreter(path=path)
    null = _null_model()
    interpreters["null"] = interpreter(litert_bytes(null))
    ms = median_ms(interpreters, FLAGS.repeats, FLAGS.warmup)
    results = {"null_ms": ms["null"], "widths": {}}
    for width in widths:
        for index, row in enumerate(layers[width]):
            row["ms"] = ms[width, index]
            row["rounded_ms"] = ms.get((width, index, "twin"))
        rows = layers[width]
        layers_ms = sum(row["ms"] for row in rows)
        whole = ms[width, "whole"]
        saved = sum(
            row["ms"]
            - row["rounded_ms"] * row["channels"] / row["rounded_channels"]
            for row in rows
            if row["rounded_channels"]
        )
        results["widths"][width] = {
            "layers": rows,
            "layers_ms": layers_ms,
            "whole_ms": whole,
            "macs": sum(row["macs"] for row in rows),
            "estimate_ms": whole - saved,
        }
    return results


def _null_model():
    import keras

    inputs = keras.Input(batch_shape=(1, 8))
    return keras.Model(inputs, keras.layers.ReLU()(inputs))


def _shape(shape):
    return "x".join(str(s) for s in shape[1:])


def _by_operation(result):
    """Per operation kind: MACs, time and their shares, ms per GMAC."""
    macs = defaultdict(int)
    ms = defaultdict(float)
    for row in result["layers"]:
        macs[row["operation"]] += row["macs"]
        ms[row["operation"]] += row["ms"]
    return [
        f"{name}: {macs[name] / 1e6:.2f} M MACs "
        f"({macs[name] / result['macs']:.1%}), {ms[name]:.3f} ms "
        f"({ms[name] / result['layers_ms']:.1%}), "
        f"{ms[name] / (macs[name] / 1e9):.1f} ms/GMAC"
        for name in sorted(macs, key=macs.get, reverse=True)
    ]


def print_report(results, widths):
    tile = FLAGS.tile
    print(
        f"{FLAGS.model}, {FLAGS.image_size} px, batch 1, float32 LiteRT "
        f"(XNNPACK), {FLAGS.threads} thread(s), median of {FLAGS.repeats} "
        "round-robin invoke() calls, steady state."
    )
    print(
        f"invoke() of a one-op model: {results['null_ms']:.4f} ms (every "
        "layer's time includes one such call; the whole model's, one)."
    )
    all_multiples_of_half = True
    for width in widths:
        result = results["widths"][width]
        print()
        print(
            f"## width {width}: {len(result['layers'])} conv/depthwise/"
            f"dense layers, {result['macs'] / 1e6:.2f} M MACs"
        )
        print()
        print(
            "| layer | kind | input | channels | M MACs | ms | ms/GMAC | "
            f"channels to {tile} | ms at {tile}-rounded | "
            f"twin ms x channels/rounded |"
        )
        print("|---" * 10 + "|")
        for row in result["layers"]:
            if row["channels"] % (tile // 2 or 1):
                all_multiples_of_half = False
            cells = [
                row["name"],
                row["kind"],
                _shape(row["input_shape"]),
                str(row["channels"]),
                f"{row['macs'] / 1e6:.3f}",
                f"{row['ms']:.4f}",
                f"{row['ms'] / (row['macs'] / 1e9):.1f}",
            ]
            if row["rounded_channels"]:
                share = row["channels"] / row["rounded_channels"]
                cells += [
                    str(row["rounded_channels"]),
                    f"{row['rounded_ms']:.4f}",
                    f"{row['rounded_ms'] * share:.4f}",
                ]
            else:
                cells += ["", "", ""]
            print("| " + " | ".join(cells) + " |")
        rest = result["whole_ms"] - result["layers_ms"]
        print()
        print("- by kind: " + "; ".join(_by_operation(result)))
        print(f"- sum of the layers: {result['layers_ms']:.3f} ms")
        print(
            f"- whole model (export_tflite, width={width}, batch norm "
            f"folded): {result['whole_ms']:.3f} ms"
        )
        print(
            f"- rest (whole - sum: pooling, additions, reshapes, cache "
            f"effects; negative where the layers alone cost more): "
            f"{rest:+.3f} ms"
        )
        print(
            f"- ESTIMATE, not a measurement: if every layer ran its "
            f"channels at the per-channel cost of its {tile}-rounded twin: "
            f"{result['estimate_ms']:.3f} ms (twins' shares + other "
            "layers + rest)"
        )
    widest = max(widths)
    top = results["widths"][widest]
    print()
    print("## Summary")
    print()
    label = f"no {tile}-channel padding"
    if all_multiples_of_half and tile % 2 == 0:
        label = f"{tile // 2}-channel tile"
    print(
        "| width | whole model ms | ratio to widest | MACs ratio | "
        "latency ratio / MACs ratio | ESTIMATED ratio "
        f"({label}) / MACs ratio |"
    )
    print("|---" * 6 + "|")
    for width in widths:
        result = results["widths"][width]
        ratio = result["whole_ms"] / top["whole_ms"]
        macs = result["macs"] / top["macs"]
        estimate = result["estimate_ms"] / top["estimate_ms"]
        print(
            f"| {width} | {result['whole_ms']:.3f} | {ratio:.3f} | "
            f"{macs:.3f} | {ratio / macs:.3f}x | {estimate / macs:.3f}x |"
        )
    print()
    print(
        "MACs: the conv/depthwise/dense layers' (pooling's few left out). "
        "The ESTIMATED column is a model of a device without the tile's "
        "padding, computed from this CPU's twins, not a measurement"
        + (
            f"; every channel count here is a multiple of {tile // 2}, so "
            f"it stands for a tile of {tile // 2} channels (ARM64 XNNPACK)."
            if label != f"no {tile}-channel padding"
            else "."
        )
    )


def main(argv):
    if len(argv) > 1:
        raise _cli.CommandLineError(f"Unexpected arguments: {argv[1:]}")
    import keras

    from keras_slimmable import zoo

    keras.utils.set_random_seed(0)
    size = FLAGS.image_size
    model = zoo.create_model(FLAGS.model, input_shape=(size, size, 3))
    widths = _widths(model)
    calibrate(model, size)
    folder = tempfile.mkdtemp(prefix="on_device_layers_")
    try:
        results = measure(model, widths, folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print_report(results, widths)
    if FLAGS.json_out:
        saved = {
            "model": FLAGS.model,
            "image_size": size,
            "threads": FLAGS.threads,
            "repeats": FLAGS.repeats,
            "tile": FLAGS.tile,
            "null_ms": results["null_ms"],
            "widths": {str(w): r for w, r in results["widths"].items()},
        }
        with open(FLAGS.json_out, "w") as file:
            json.dump(saved, file, indent=1)


if __name__ == "__main__":
    _cli.run(main, "benchmarks/on_device_layers.py")
