"""Key map of S-MobileNet v1 (`keras_slimmable.zoo.s_mobilenet_v1`).

The reference numbers its modules `features.0` (the stem: conv `0`, batch
norm `1`), `features.{1..13}` (the depthwise separable blocks: depthwise
conv `body.0`, its batch norm `body.1`, pointwise conv `body.3`, its batch
norm `body.4`), then `classifier.0`.
"""

NUM_BLOCKS = 13


def key_map(model):
    """Maps the weighted layers of an S-MobileNet v1 to reference prefixes.

    Args:
        model: a model built by `keras_slimmable.zoo.s_mobilenet_v1`.

    Returns:
        A dict from Keras layer name to the reference prefix (no
        `module.`).
    """
    del model  # The layout is fixed.
    mapping = {
        "stem_conv": "features.0.0",
        "stem_bn": "features.0.1",
        "predictions": "classifier.0",
    }
    for block in range(1, NUM_BLOCKS + 1):
        body = f"features.{block}.body"
        mapping[f"block{block}_depthwise"] = f"{body}.0"
        mapping[f"block{block}_depthwise_bn"] = f"{body}.1"
        mapping[f"block{block}_pointwise"] = f"{body}.3"
        mapping[f"block{block}_pointwise_bn"] = f"{body}.4"
    return mapping
