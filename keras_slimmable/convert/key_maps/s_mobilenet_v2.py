"""Key map of S-MobileNet v2 (`keras_slimmable.zoo.s_mobilenet_v2`).

The reference numbers its modules `features.0` (the stem: conv `0`, batch
norm `1`), `features.{1..17}` (the inverted residual blocks: expand conv
`body.0` and batch norm `body.1`, depthwise conv `body.3` and `body.4`,
project conv `body.6` and `body.7`; a block without expansion starts at the
depthwise conv, `body.0`), `features.18` (the tail: conv `0`, plain batch
norm `1`), then `classifier.0`.
"""

NUM_BLOCKS = 17


def key_map(model):
    """Maps the weighted layers of an S-MobileNet v2 to reference prefixes.

    Whether a block has an expansion is read from the model's layer names.

    Args:
        model: a model built by `keras_slimmable.zoo.s_mobilenet_v2`.

    Returns:
        A dict from Keras layer name to the reference prefix (no
        `module.`).
    """
    names = {layer.name for layer in model.layers}
    mapping = {
        "stem_conv": "features.0.0",
        "stem_bn": "features.0.1",
        "last_conv": f"features.{NUM_BLOCKS + 1}.0",
        "last_bn": f"features.{NUM_BLOCKS + 1}.1",
        "predictions": "classifier.0",
    }
    for block in range(1, NUM_BLOCKS + 1):
        body = f"features.{block}.body"
        parts = ("depthwise", "project")
        if f"block{block}_expand" in names:
            parts = ("expand",) + parts
        for position, part in enumerate(parts):
            mapping[f"block{block}_{part}"] = f"{body}.{3 * position}"
            mapping[f"block{block}_{part}_bn"] = f"{body}.{3 * position + 1}"
    return mapping
