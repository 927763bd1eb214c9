"""AutoSlim: the greedy one-shot search for channel numbers.

Given a trained universally slimmable model (one with a `width_range`),
`autoslim_search` finds, for each of a few MACs targets, one channel count
per layer, greedily: starting at full width, it repeatedly takes `divisor`
channels away from the layer whose loss hurts the held-out accuracy least
(Yu & Huang, AutoSlim: Towards One-Shot Architecture Search for Channel
Numbers, 2019). `autoslim_model` then builds a fixed-switch slimmable
model, one switch per configuration found, to train from scratch.

Layers whose channel counts must stay equal (a conv's output, the batch
norm after it, the depthwise conv and batch norm that follow, and every
layer joined to them by a residual add) form a *channel group*, found by
walking the model's functional graph (`channel_groups`); the search
changes whole groups.
"""

import collections
import math
import numbers

import keras
import numpy as np

from keras_slimmable import profiling
from keras_slimmable.layers import ScaledChannels
from keras_slimmable.layers import SlimmableConv2D
from keras_slimmable.layers import SlimmableLayer
from keras_slimmable.layers import SwitchableBatchNormalization
from keras_slimmable.layers import UniversalBatchNormalization
from keras_slimmable.layers.base import max_channels

ChannelGroup = collections.namedtuple(
    "ChannelGroup", ["name", "layers", "channels", "searchable"]
)
ChannelGroup.__doc__ = """Layers whose channel counts must be equal.

Attributes:
    name: the group's name, that of its first producing conv (or of its
        first layer if no conv produces it).
    layers: the names of its layers, in graph order.
    channels: their channel count at full width.
    searchable: whether the search may narrow it: every layer producing
        its channels is a (non-depthwise) `SlimmableConv2D` with a channel
        rule (`ScaledChannels`).
"""

SearchResult = collections.namedtuple(
    "SearchResult", ["target_macs", "macs", "error", "groups", "channels"]
)
SearchResult.__doc__ = """One configuration found by `autoslim_search`.

Attributes:
    target_macs: the MACs target it was found for.
    macs: its MACs per image (at or below the target).
    error: its top-1 error on the held-out batch (batch statistics).
    groups: `{group name: channel count}`.
    channels: `{layer name: channel count}`, a channel configuration to
        run the model at: `model(x, width=result.channels)`.
"""


def channel_groups(model):
    """The channel groups of a slimmable model, from its functional graph.

    Walks the graph at full width: a slimmable conv or dense layer whose
    output count changes with width starts a group; a layer that keeps its
    input's count (depthwise conv, batch norm, activation, pooling) joins
    its input's group; an element-wise op of several inputs (a residual
    `Add`) merges its inputs' groups. Layers with a fixed count (an int,
    e.g. the classifier's outputs) belong to no group. Layer names play no
    part.

    Args:
        model: a `SlimmableModel`.

    Returns:
        A tuple of `ChannelGroup`, in graph order. Every slimmable layer
        whose channels change with the width is in exactly one group.

    Raises:
        ValueError: if the layers of a group have different channel counts
            at full width.
    """
    active = _widest(model)
    calls = profiling.layer_calls(
        model, active, profiling._symbolic_inputs(model, None)
    )
    parent = {}  # Union-find over group ids.

    def find(group):
        while parent[group] != group:
            parent[group] = parent[parent[group]]
            group = parent[group]
        return group

    def new_group():
        parent[len(parent)] = len(parent)
        return len(parent) - 1

    output_group = {}  # id(call) -> group id or None.
    members = collections.defaultdict(list)  # group id -> [(layer, producer)]
    seen = set()
    for call in calls:
        layer = call.operation
        inputs = [
            None if source is None else output_group.get(id(source))
            for source in call.sources
        ]
        config = (
            layer.channel_config() if isinstance(layer, SlimmableLayer) else {}
        )
        rules = {k: v for k, v in config.items() if not isinstance(v, int)}
        if rules:
            produces = bool({"filters", "units"} & set(rules))
            group = inputs[0] if inputs and not produces else None
            if group is None:
                group = new_group()
            if id(layer) not in seen:
                seen.add(id(layer))
                members[group].append((layer, produces))
        elif config or isinstance(layer, keras.Model):
            group = None  # A fixed channel count.
        else:
            known = [g for g in inputs if g is not None]
            same_channels = (
                call.input_shapes
                and call.output_shapes
                and call.output_shapes[0][-1:] == call.input_shapes[0][-1:]
            )
            group = known[0] if known and same_channels else None
            if group is not None and len(call.input_shapes) > 1:
                if all(
                    s[-1:] == call.output_shapes[0][-1:]
                    for s in call.input_shapes
                ):
                    for other in known[1:]:
                        parent[find(other)] = find(group)
                else:
                    group = None  # E.g. a concatenation.
        output_group[id(call)] = group

    merged = collections.defaultdict(list)
    for group in sorted(members):
        merged[find(group)].extend(members[group])
    result = []
    for entries in merged.values():
        layers = [layer for layer, _ in entries]
        counts = {
            layer.name: max(
                max_channels(v)
                for v in layer.channel_config().values()
                if not isinstance(v, int)
            )
            for layer in layers
        }
        if len(set(counts.values())) > 1:
            raise ValueError(
                "The layers of a channel group must have equal channel "
                f"counts at full width. Received: {counts}"
            )
        producers = [layer for layer, produces in entries if produces]
        searchable = bool(producers) and all(
            type(layer) is SlimmableConv2D
            and isinstance(layer.filters, ScaledChannels)
            for layer in producers
        )
        result.append(
            ChannelGroup(
                name=(producers or layers)[0].name,
                layers=tuple(layer.name for layer in layers),
                channels=next(iter(counts.values())),
                searchable=searchable,
            )
        )
    return tuple(result)


def layer_channels(groups, counts):
    """The channel configuration `{layer name: count}` of group counts.

    Args:
        groups: the model's `channel_groups`.
        counts: `{group name: count}`; a group left out keeps its full
            count.

    Returns:
        A dict for `model(x, width=...)`.
    """
    names = {g.name for g in groups}
    unknown = sorted(set(counts) - names)
    if unknown:
        raise ValueError(
            f"Unknown channel groups {unknown}; the model's groups are "
            f"{sorted(names)}."
        )
    return {
        layer: int(counts.get(group.name, group.channels))
        for group in groups
        for layer in group.layers
    }


def configuration_macs(model, channels, input_shape=None):
    """The MACs per image of a model at a channel configuration.

    Counts as `keras_slimmable.profile` does (same conventions, the same
    per-layer counts), walking the graph at the configuration.

    Args:
        model: a `SlimmableModel`.
        channels: `{layer name: channel count}` (see `layer_channels`).
        input_shape: the shape of one input without the batch axis.
            Defaults to the model's.

    Returns:
        An int.
    """
    channels = dict(channels)
    key = model._active_width(channels).channels
    counted = profiling.profile(model, input_shape, widths=[channels])
    return counted[key]["macs"]


def autoslim_search(
    model,
    data,
    macs_targets,
    divisor=8,
    batch_size=None,
    input_shape=None,
    verbose="auto",
):
    """Searches per-layer channel counts for MACs targets (AutoSlim).

    The greedy one-shot search of AutoSlim on a trained universally
    slimmable model. Every channel group starts at full width. At each
    step, for each searchable group (see `channel_groups`), the search
    removes its last `divisor` channels, measures the top-1 error on one
    held-out batch (drawn once and reused), and restores them; then it
    removes them for good from the group whose removal gave the lowest
    error (the first one on ties). A group that would drop to 0 channels
    counts as error 1 and is never chosen. Whenever the MACs (per image,
    at the model's input size) reach a target or fall below it, the
    current configuration is recorded for that target; the largest target
    is reached first, and the search stops after the smallest.

    The model runs in inference mode; a configuration has no calibrated
    batch-norm statistics, so its universal batch norms normalize with the
    held-out batch's own statistics. The model itself is not changed.

    Args:
        model: a trained `SlimmableModel` with a `width_range` (e.g.
            `keras_slimmable.zoo.us_mobilenet_v1`), outputting one score
            per class.
        data: the held-out data: a tuple `(images, labels)` (one batch),
            or an iterable of such batches (a `tf.data.Dataset`, a list, a
            generator), of which only the first is used. Labels are class
            indices or one-hot. Use images the model was not trained on
            and that are not test images.
        macs_targets: a MACs budget (per image) or a list of them, each
            in `(0, full model's MACs]`.
        divisor: the channels removed per step. Defaults to `8`.
        batch_size: if given, only the first `batch_size` examples of the
            batch are used.
        input_shape: the input shape to count MACs at, without the batch
            axis. Defaults to the model's.
        verbose: `0` silent, `1` (or `"auto"`) a progress bar.

    Returns:
        A list of `SearchResult`, one per target, largest target first.

    Raises:
        ValueError: for a model without a width range, empty data, a
            target outside `(0, full MACs]` or below the MACs of the
            narrowest searchable configuration, or a bad `divisor`.

    Example:

    ```python
    model = keras_slimmable.zoo.us_mobilenet_v1(input_shape=(32, 32, 3),
                                               classes=10)
    ...  # train it
    results = keras_slimmable.search.autoslim_search(
        model, (held_out_images, held_out_labels), [8e6, 4e6]
    )
    autoslim = keras_slimmable.search.autoslim_model(model, results)
    ```
    """
    if getattr(model, "width_range", None) is None:
        raise ValueError(
            "The AutoSlim search needs a universally slimmable model (a "
            "SlimmableModel with a `width_range`, e.g. "
            "keras_slimmable.zoo.us_mobilenet_v1). Received: model="
            f"{getattr(model, 'name', model)!r} with width_range=None"
        )
    if (
        isinstance(divisor, bool)
        or not isinstance(divisor, numbers.Integral)
        or divisor < 1
    ):
        raise ValueError(
            f"`divisor` must be a positive int. Received: divisor={divisor!r}"
        )
    images, labels = _held_out_batch(data, batch_size)
    targets = _standardize_targets(macs_targets)
    groups = channel_groups(model)
    searchable = [g.name for g in groups if g.searchable]
    if not searchable:
        raise ValueError(
            f"Model '{model.name}' has no searchable channel group (a "
            "SlimmableConv2D with a channel rule)."
        )
    counts = {g.name: g.channels for g in groups}

    def macs_of(group_counts):
        return configuration_macs(
            model, layer_channels(groups, group_counts), input_shape
        )

    full_macs = macs_of(counts)
    narrowest = dict(counts)
    for g in groups:
        if g.searchable:
            narrowest[g.name] = (g.channels - 1) % divisor + 1
    least_macs = macs_of(narrowest)
    for target in targets:
        if not least_macs <= target <= full_macs:
            raise ValueError(
                f"Every MACs target must be in [{least_macs}, {full_macs}] "
                f"(the narrowest configuration the search can reach with "
                f"divisor={divisor}, and the full model). Received: "
                f"macs_targets={macs_targets!r} (bad: {target!r})"
            )

    def error_of(group_counts):
        active = model._active_width(layer_channels(groups, group_counts))
        # The forward pass, uncompiled: `model(x, width=...)` would compile
        # one function per configuration, i.e. per evaluation (as fast as
        # this on TensorFlow, measured; a full jit compile on JAX).
        logits = model._forward(images, active, training=False)
        predicted = np.argmax(keras.ops.convert_to_numpy(logits), axis=-1)
        return float(np.mean(predicted != labels))

    verbose = 1 if verbose == "auto" else verbose
    progress = (
        # Progress: percent of the way from the full MACs to the last target.
        keras.utils.Progbar(
            100,
            verbose=verbose,
            stateful_metrics=["MMACs", "error", "steps"],
        )
        if verbose
        else None
    )
    results = []
    pending = list(targets)
    macs = full_macs
    error = error_of(counts)
    steps = 0
    while pending:
        while pending and macs <= pending[0]:
            results.append(
                SearchResult(
                    target_macs=pending.pop(0),
                    macs=macs,
                    error=error,
                    groups=dict(counts),
                    channels=layer_channels(groups, counts),
                )
            )
        if not pending:
            break
        best = None
        for name in searchable:
            if counts[name] - divisor <= 0:
                continue
            counts[name] -= divisor
            candidate = error_of(counts)
            counts[name] += divisor
            if best is None or candidate < best[1]:
                best = (name, candidate)
        counts[best[0]] -= divisor
        error = best[1]
        macs = macs_of(counts)
        steps += 1
        if progress is not None:
            done = (full_macs - macs) / max(full_macs - targets[-1], 1)
            progress.update(
                min(int(100 * done), 100),
                values=[
                    ("MMACs", macs / 1e6),
                    ("error", error),
                    ("steps", steps),
                ],
            )
    return results


def _held_out_batch(data, batch_size):
    batch = data
    if not (isinstance(data, tuple) and len(data) == 2):
        iterator = iter(data)
        try:
            batch = next(iterator)
        except StopIteration:
            raise ValueError(
                "The held-out data is empty: give (images, labels) or "
                f"batches of them. Received: data={data!r}"
            ) from None
    if not (isinstance(batch, (tuple, list)) and len(batch) == 2):
        raise ValueError(
            "The held-out data must be (images, labels), or yield such "
            f"batches. Received a batch of type {type(batch).__name__}"
        )
    images, labels = (keras.ops.convert_to_numpy(x) for x in batch)
    if batch_size is not None:
        images, labels = images[:batch_size], labels[:batch_size]
    if labels.ndim > 1 and labels.shape[-1] > 1:
        labels = np.argmax(labels, axis=-1)
    labels = labels.reshape(-1)
    if len(images) == 0 or len(images) != len(labels):
        raise ValueError(
            "The held-out batch must hold at least one image and one label "
            f"per image. Received: {len(images)} images and {len(labels)} "
            "labels"
        )
    return images, labels


def _standardize_targets(macs_targets):
    values = (
        list(macs_targets)
        if isinstance(macs_targets, (list, tuple, np.ndarray))
        else [macs_targets]
    )
    if not values:
        raise ValueError(
            "Give at least one MACs target. Received: macs_targets="
            f"{macs_targets!r}"
        )
    for value in values:
        if (
            isinstance(value, bool)
            or not isinstance(value, numbers.Real)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ValueError(
                "Every MACs target must be a positive number. Received: "
                f"macs_targets={macs_targets!r} (bad: {value!r})"
            )
    return sorted((float(v) for v in values), reverse=True)


def _widest(model):
    if getattr(model, "width_range", None) is not None:
        return model._active_width(model.width_range[1])
    return model._active_width(model.widths[-1])


def autoslim_model(model, configurations, name=None):
    """A fixed-switch slimmable model with one switch per configuration.

    The AutoSlim model to train from scratch: the graph of `model` (a
    universally slimmable model) with every layer of a channel group given
    one channel count per switch, `(count at switch 1, count at switch 2,
    ...)`, and switchable batch norms instead of universal ones, as the
    zoo's AutoSlim models are built. The switches are labelled `1.0`,
    `2.0`, ... in ascending MACs (the reference's labels); the model's
    widths are these labels. Weights are freshly initialized.

    Args:
        model: the `SlimmableModel` the configurations were found in.
        configurations: `SearchResult`s (from `autoslim_search`) or
            channel configurations `{layer name: count}`; every layer's
            counts must not decrease with the MACs (true of the nested
            configurations the search finds).
        name: the new model's name. Defaults to `"autoslim_" + model.name`.

    Returns:
        A `keras_slimmable.SlimmableModel` with widths `(1.0, 2.0, ...)`;
        `keras_slimmable.profile(new_model)[k]["macs"]` is the MACs of the
        k-th configuration in ascending order.

    Raises:
        ValueError: for no configurations, or ones that do not name every
            layer of the model's channel groups, or counts that decrease.
    """
    from keras_slimmable.model import SlimmableModel

    configurations = [
        dict(c.channels) if isinstance(c, SearchResult) else dict(c)
        for c in configurations
    ]
    if not configurations:
        raise ValueError(
            "Give at least one configuration. Received: configurations=[]"
        )
    for channels in configurations:
        model._active_width(channels)  # Validates the configuration.
    macs = [configuration_macs(model, c) for c in configurations]
    order = sorted(range(len(configurations)), key=lambda i: macs[i])
    configurations = [configurations[i] for i in order]
    columns = {
        layer: tuple(c[layer] for c in configurations)
        for layer in configurations[0]
    }
    for layer, column in columns.items():
        if any(a > b for a, b in zip(column, column[1:])):
            raise ValueError(
                f"Layer '{layer}' would have {column} channels at switches "
                "of ascending MACs; a slimmable layer's count must not "
                "decrease (give nested configurations, as the search "
                "finds)."
            )
    widths = tuple(float(k) for k in range(1, len(configurations) + 1))

    def clone(layer):
        if isinstance(layer, keras.layers.InputLayer):
            return layer
        config = layer.get_config()
        if layer.name in columns:
            column = columns[layer.name]
            if isinstance(layer, UniversalBatchNormalization):
                return SwitchableBatchNormalization(
                    column,
                    momentum=layer.momentum,
                    epsilon=layer.epsilon,
                    center=layer.center,
                    scale=layer.scale,
                    unbiased_moving_variance=layer.unbiased_moving_variance,
                    name=layer.name,
                )
            key = next(
                k
                for k, v in layer.channel_config().items()
                if not isinstance(v, int)
            )
            config[key] = column
        elif isinstance(layer, UniversalBatchNormalization):
            raise ValueError(
                f"Layer '{layer.name}' has a fixed channel count: an "
                "AutoSlim model cannot convert it."
            )
        return layer.__class__.from_config(config)

    clones = {}

    def visit(operation):
        def run(*args, **kwargs):
            if id(operation) not in clones:
                clones[id(operation)] = clone(operation)
            return clones[id(operation)](*args, **kwargs)

        return run

    inputs = [
        keras.Input(shape=tuple(x.shape[1:]), dtype=x.dtype, name=x.name)
        for x in model.inputs
    ]
    outputs = profiling._walk(
        model, inputs[0] if len(inputs) == 1 else inputs, visit
    )
    return SlimmableModel(
        inputs[0] if len(inputs) == 1 else inputs,
        outputs,
        widths=widths,
        name=name or f"autoslim_{model.name}",
    )
