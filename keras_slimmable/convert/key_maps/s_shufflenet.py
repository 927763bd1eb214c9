"""Key map of S-ShuffleNet (`keras_slimmable.zoo.s_shufflenet`).

The reference's three parallel stem convs are `head_{k}.0` with batch norms
`head_{k}.1`; the units are `features.{0..15}` in order, each with group
convs `a_{k}.0` / `c_{k}.0` and their batch norms `a_{k}.1` / `c_{k}.1`
(one module per group `k`), and the depthwise conv `b.1` with its batch norm
`b.2` (`b.0` is the channel shuffle). The classifier is `classifier.0`.

A Keras grouped conv and the batch norm after it each stand for one
reference module per group, so they map to a list of prefixes, group 0
first.
"""

import re

_UNIT_LAYER = re.compile(r"^stage(\d+)_unit(\d+)_(gconv[12]|bn[123]|dwconv)$")
# Per layer: the reference module, with `{k}` for one module per group.
_UNIT_MODULES = {
    "gconv1": "a_{k}.0",
    "bn1": "a_{k}.1",
    "dwconv": "b.1",
    "bn2": "b.2",
    "gconv2": "c_{k}.0",
    "bn3": "c_{k}.1",
}


def key_map(model):
    """Maps the weighted layers of an S-ShuffleNet to reference prefixes.

    Args:
        model: a model built by `keras_slimmable.zoo.s_shufflenet`.

    Returns:
        A dict from Keras layer name to the reference prefix (no
        `module.`), or to the list of per-group prefixes for the grouped
        convs and their batch norms.
    """
    groups = model.get_layer("stem_conv").groups
    names = [layer.name for layer in model.layers]
    units = sorted(
        {
            (int(match[1]), int(match[2]))
            for match in map(_UNIT_LAYER.match, names)
            if match
        }
    )
    feature_index = {unit: i for i, unit in enumerate(units)}
    mapping = {
        "stem_conv": [f"head_{k}.0" for k in range(groups)],
        "stem_bn": [f"head_{k}.1" for k in range(groups)],
    }
    if "predictions" in names:
        mapping["predictions"] = "classifier.0"
    for name in names:
        match = _UNIT_LAYER.match(name)
        if not match:
            continue
        prefix = f"features.{feature_index[(int(match[1]), int(match[2]))]}"
        module = _UNIT_MODULES[match[3]]
        if "{k}" in module:
            mapping[name] = [
                f"{prefix}.{module.format(k=k)}" for k in range(groups)
            ]
        else:
            mapping[name] = f"{prefix}.{module}"
    return mapping
