"""Key map of S-ResNet (`keras_slimmable.zoo.s_resnet`) to the reference.

The reference numbers its modules `features.0` (the stem: conv `0`, batch
norm `1`) and `features.{1..n}` (the bottleneck blocks, in order over all
stages: convs `body.{0,3,6}`, batch norms `body.{1,4,7}`, projection
`shortcut.{0,1}`), then `classifier.0`.
"""

import re

_BLOCK_LAYER = re.compile(
    r"^stage(\d+)_block(\d+)_(conv[123]|bn[123]|shortcut_conv|shortcut_bn)$"
)
_BLOCK_MODULES = {
    "conv1": "body.0",
    "bn1": "body.1",
    "conv2": "body.3",
    "bn2": "body.4",
    "conv3": "body.6",
    "bn3": "body.7",
    "shortcut_conv": "shortcut.0",
    "shortcut_bn": "shortcut.1",
}
_FIXED = {
    "stem_conv": "features.0.0",
    "stem_bn": "features.0.1",
    "predictions": "classifier.0",
}


def key_map(model):
    """Maps the weighted layers of an S-ResNet to reference module prefixes.

    Works for any depth: the block numbering is read from the layer names.

    Args:
        model: a model built by `keras_slimmable.zoo.s_resnet`.

    Returns:
        A dict from Keras layer name to the reference prefix (no
        `module.`).
    """
    names = [layer.name for layer in model.layers]
    blocks = sorted(
        {
            (int(match[1]), int(match[2]))
            for match in map(_BLOCK_LAYER.match, names)
            if match
        }
    )
    feature_index = {block: i for i, block in enumerate(blocks, start=1)}
    mapping = {}
    for name in names:
        if name in _FIXED:
            mapping[name] = _FIXED[name]
            continue
        match = _BLOCK_LAYER.match(name)
        if match:
            block = (int(match[1]), int(match[2]))
            mapping[name] = (
                f"features.{feature_index[block]}.{_BLOCK_MODULES[match[3]]}"
            )
    return mapping
