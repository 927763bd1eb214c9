"""What the AutoSlim models share: switches, their names, their channels.

AutoSlim (Yu & Huang, 2019) searched, in a trained slimmable network, one
channel count per layer for each of a few MACs budgets. Each published
AutoSlim model is a fixed-switch slimmable network: one set of weights,
sliced per layer to the searched count of the active switch, with
switchable batch norms. Its "widths" are switch labels, as in the
reference (`1.0`, `2.0`, `3.0` and, for ResNet-50, `4.0`; ascending
budget), and each switch has a name, its MACs budget as the reference's
model zoo gives it (`"150M"`, ..., `"3.0G"`):

```python
model = keras_slimmable.zoo.autoslim_mobilenet_v2()
keras_slimmable.zoo.autoslim_mobilenet_v2.switches
# {1.0: '207M', 2.0: '305M', 3.0: '505M'}
width = keras_slimmable.zoo.autoslim_switch("autoslim_mobilenet_v2", "305M")
logits = model(images, width=width)  # width == 2.0
```

The models are built from the blocks of the S-Nets
(`keras_slimmable.zoo.mobilenet_v1.features`, ...), given the searched
per-layer channel lists instead of uniformly scaled ones. One submodule per
model (`keras_slimmable.zoo.autoslim.mobilenet_v1`, `.mobilenet_v2`,
`.mnasnet`, `.resnet50`) holds its lists, switch names, builder, key map
and manifest; this package holds what they share.
"""

import importlib

from keras_slimmable.zoo.common import batch_norm_factory
from keras_slimmable.zoo.common import builder_arguments

# The architecture modules, by model name: each has `SWITCHES`.
_MODULES = {
    "autoslim_mobilenet_v1": "keras_slimmable.zoo.autoslim.mobilenet_v1",
    "autoslim_mobilenet_v2": "keras_slimmable.zoo.autoslim.mobilenet_v2",
    "autoslim_mnasnet": "keras_slimmable.zoo.autoslim.mnasnet",
    "autoslim_resnet50": "keras_slimmable.zoo.autoslim.resnet50",
}


def switches(architecture):
    """The switches of an AutoSlim model: `{label: budget name}`.

    Args:
        architecture: the model's name, e.g. `"autoslim_mobilenet_v2"`.

    Returns:
        A dict from switch label (the model's width, `1.0`, `2.0`, ...) to
        its name, the MACs budget of the reference (`"207M"`, ...).
    """
    if architecture not in _MODULES:
        raise ValueError(
            f"Unknown AutoSlim model {architecture!r}. Available: "
            f"{sorted(_MODULES)}"
        )
    return dict(importlib.import_module(_MODULES[architecture]).SWITCHES)


def autoslim_switch(architecture, budget):
    """The width (switch label) of an AutoSlim model's switch, by name.

    Args:
        architecture: the model's name, e.g. `"autoslim_mobilenet_v2"`.
        budget: the switch's name, its MACs budget (`"305M"`), or its
            label (`2.0`), returned as it is when it is one.

    Returns:
        The switch label, a float: the `width` to run the model at.

    Raises:
        ValueError: naming the unknown model or switch and the available
            ones.

    Example:

    ```python
    model = keras_slimmable.zoo.autoslim_resnet50()
    model.set_width(keras_slimmable.zoo.autoslim_switch(
        "autoslim_resnet50", "1.0G"
    ))
    ```
    """
    names = switches(architecture)
    for label, name in names.items():
        if budget == name or (
            not isinstance(budget, (str, bool)) and budget == label
        ):
            return label
    raise ValueError(
        f"{architecture} has the switches {names} (label: MACs budget). "
        f"Received: budget={budget!r}"
    )


def switch_columns(name, channel_lists, widths):
    """The channel configuration of every layer: one count per switch.

    Args:
        name: the model's name, for errors.
        channel_lists: the published lists, `{label: [count per layer]}`.
        widths: the switches to build, ascending labels.

    Returns:
        A list with, for every position of the lists, a tuple of that
        position's counts at `widths`.

    Raises:
        ValueError: a width that is not a switch label.
    """
    unknown = [w for w in widths if w not in channel_lists]
    if unknown:
        raise ValueError(
            f"The widths of {name} are its switch labels, "
            f"{tuple(sorted(channel_lists))} (or None for all): "
            f"{unknown} is not one. Received: widths={tuple(widths)}"
        )
    return [
        tuple(channel_lists[w][i] for w in widths)
        for i in range(len(channel_lists[widths[0]]))
    ]


def build(
    builder,
    channel_lists,
    manifest,
    key_map,
    features,
    head_dense=None,
    pyramid_levels=None,
    **builder_kwargs,
):
    """Builds an AutoSlim model: the steps every AutoSlim builder shares.

    Args:
        builder: the builder itself (to load weights into models of its
            own, see `keras_slimmable.zoo.common.BuilderArguments.model`).
        channel_lists: its published lists, `{label: [count per layer]}`.
        manifest: its weights manifest.
        key_map: its reference key map.
        features: `features(images, columns, batch_norm)`, the layers from
            the images to the last feature map, `columns` being
            `switch_columns` of the built switches.
        head_dense: the classifier's layer class (default
            `SlimmableDense`).
        pyramid_levels: `pyramid_levels(columns)`, the feature pyramid
            levels of `features` (see
            `keras_slimmable.zoo.common.pyramid_levels`), which the model
            exposes without its classifier; `None` for none.
        **builder_kwargs: the builder's arguments (`widths`, `weights`,
            ...).
    """
    arguments = builder_arguments(
        tuple(sorted(channel_lists)), manifest, **builder_kwargs
    )
    columns = switch_columns(
        arguments.name, channel_lists, tuple(arguments.widths)
    )
    images = arguments.images()
    x = features(
        images, columns, batch_norm_factory(arguments.shared_batch_norm)
    )
    x = arguments.head(x, dense=head_dense)
    return arguments.model(
        images,
        x,
        builder,
        manifest,
        key_map,
        pyramid_levels=None
        if pyramid_levels is None
        else (pyramid_levels(columns)),
    )


def published_manifest(architecture, model_id, switch_names, top1_error):
    """The weights manifest of an AutoSlim model (see
    `keras_slimmable.zoo.weights`)."""
    from keras_slimmable.zoo.weights import weights_file_name

    return {
        "architecture": architecture,
        "reference_model_id": model_id,
        # The reference's model zoo names its checkpoints by model ID; any
        # file name works with `weights=` and the conversion command.
        "reference_file": f"{architecture}.pt",
        "reference_url": (
            "https://github.com/JiahuiYu/slimmable_networks#slimmable-model-zoo"
        ),
        "license": "CC BY-NC 4.0",
        "widths": tuple(sorted(switch_names)),
        "switches": dict(switch_names),
        "classes": 1000,
        # Published ImageNet top-1 error (%), per switch.
        "top1_error": dict(top1_error),
        "keras_file": weights_file_name(architecture),
    }


def _inverted_residual_blocks(columns, strides, kernel_sizes):
    blocks = [(columns[0], columns[1], strides[0], kernel_sizes[0])]
    for b in range(2, 18):
        blocks.append(
            (columns[2 * b - 2], columns[2 * b - 1], strides[b - 1],
             kernel_sizes[b - 1])
        )  # fmt: skip
    return blocks


def inverted_residual_pyramid_levels(columns, strides, kernel_sizes):
    """The feature pyramid levels of `inverted_residual_features`
    (`keras_slimmable.zoo.mobilenet_v2.pyramid_levels`)."""
    from keras_slimmable.zoo import mobilenet_v2

    return mobilenet_v2.pyramid_levels(
        columns[0], _inverted_residual_blocks(columns, strides, kernel_sizes)
    )


def inverted_residual_features(
    images, columns, batch_norm, strides, kernel_sizes
):
    """The layers of AutoSlim-MobileNet v2 and AutoSlim-MNasNet.

    Their 36-entry lists: [0] the stem's output; [1] block 1's output (its
    depthwise conv on [0], no expansion); [2b-2] the middle (expanded) and
    [2b-1] the output of block b = 2..17; [34] the tail conv's output;
    [35] (the classes) never read. The tail's batch norm is switchable.

    Args:
        images: the input tensor.
        columns: `switch_columns` of the lists.
        batch_norm: the batch-norm factory.
        strides: the stride of blocks 1..17.
        kernel_sizes: the depthwise kernel size of blocks 1..17.
    """
    from keras_slimmable.zoo import mobilenet_v2

    blocks = _inverted_residual_blocks(columns, strides, kernel_sizes)
    x = mobilenet_v2.features(images, columns[0], blocks, batch_norm)
    return mobilenet_v2.tail(x, columns[34], batch_norm)
