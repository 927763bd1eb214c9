"""The zoo's one registry: every architecture and what belongs to it.

An architecture lives in one module of `keras_slimmable/zoo/`, which
declares, beside its builder, one `Architecture` record: the builder, the
key map of the reference implementation's checkpoints, the manifest of the
reference ImageNet weights and the training recipes. Everything that names
an architecture reads it from here: `list_models` and `create_model`,
`weights="imagenet"`, `keras_slimmable.load_reference_checkpoint`,
`keras_slimmable.recipes.get_recipe` and the conversion command
(`python -m keras_slimmable.zoo.convert`).

To add an architecture, write its module (see `keras_slimmable.zoo.common`
for what a builder shares with the others), end it with
`register(Architecture(...))`, add the module to `ARCHITECTURE_MODULES`
below and its builder to `keras_slimmable.zoo`'s exports, and give it its
tests; `tests/zoo/test_registry.py` then covers it with every other model.

The architecture modules are imported on the first question to the
registry, so importing `keras_slimmable.zoo` (or the conversion command's
`--help`) imports neither Keras nor TensorFlow.
"""

import dataclasses
import importlib
from collections.abc import Callable
from collections.abc import Mapping

# The modules that register architectures, imported on first use.
ARCHITECTURE_MODULES = (
    "keras_slimmable.zoo.autoslim.mnasnet",
    "keras_slimmable.zoo.autoslim.mobilenet_v1",
    "keras_slimmable.zoo.autoslim.mobilenet_v2",
    "keras_slimmable.zoo.autoslim.resnet50",
    "keras_slimmable.zoo.universal.mobilenet_v1",
    "keras_slimmable.zoo.universal.mobilenet_v2",
    "keras_slimmable.zoo.mobilenet_v1",
    "keras_slimmable.zoo.mobilenet_v2",
    "keras_slimmable.zoo.resnet",
    "keras_slimmable.zoo.shufflenet",
)

_ARCHITECTURES = {}


@dataclasses.dataclass(frozen=True)
class Architecture:
    """One zoo architecture: its builder and everything named after it.

    Args:
        name: the registered name, e.g. `"s_mobilenet_v1"`; also the
            default name of the models its builder builds.
        builder: the function building the model (keyword arguments as
            `keras_slimmable.zoo.s_mobilenet_v1`'s).
        widths: the builder's default widths (`widths=None`), or `None`
            if unknown.
        key_map: the key map of the reference implementation's
            checkpoints: `key_map(model)` returns, for every layer with
            weights, the reference module prefix it comes from (see
            `keras_slimmable.convert.reference`). `None` when reference
            checkpoints do not apply.
        weights: the manifest of the reference ImageNet weights (see
            `keras_slimmable.zoo.weights`), or `None` when there are none.
        recipes: the training recipes, by dataset: `"imagenet"` (the
            reference's, `keras_slimmable.recipes.RECIPES`) and
            `"cifar10"` (`keras_slimmable.recipes.CIFAR10_RECIPES`).
        reference_arguments: the builder arguments of the model the
            reference checkpoints load into, beyond the defaults (the US
            models' `calibrated_widths`).
    """

    name: str
    builder: Callable
    widths: tuple | None = None
    key_map: Callable | None = None
    weights: Mapping | None = None
    recipes: Mapping = dataclasses.field(default_factory=dict)
    reference_arguments: Mapping = dataclasses.field(default_factory=dict)


def register(architecture):
    """Adds an `Architecture` to the registry and returns it.

    Raises:
        ValueError: if an architecture of that name is already registered.
    """
    if not isinstance(architecture, Architecture):
        raise ValueError(
            "`register` takes an `Architecture`. Received: "
            f"{type(architecture).__name__} {architecture!r}"
        )
    if architecture.name in _ARCHITECTURES:
        raise ValueError(
            f"A zoo model named {architecture.name!r} already exists."
        )
    _ARCHITECTURES[architecture.name] = architecture
    return architecture


def register_model(name):
    """Registers a builder alone: `@register_model("my_model")`.

    The architecture then has no key map, weights or recipes; declare an
    `Architecture` to give it those.
    """

    def decorator(builder):
        register(Architecture(name, builder))
        return builder

    return decorator


def _architectures():
    for module in ARCHITECTURE_MODULES:
        importlib.import_module(module)
    return _ARCHITECTURES


def list_models():
    """The names of the zoo's models, sorted."""
    return sorted(_architectures())


def get_architecture(name):
    """The `Architecture` registered as `name`.

    Raises:
        ValueError: naming the unknown model and the known ones.
    """
    try:
        return _architectures()[name]
    except (KeyError, TypeError):
        raise ValueError(
            f"Unknown zoo model {name!r}. Available: {list_models()}"
        ) from None


def get_builder(name):
    """The builder function registered as `name`."""
    return get_architecture(name).builder


def create_model(name, **kwargs):
    """Builds the zoo model `name`: `create_model("s_mobilenet_v1",
    widths=(0.5, 1.0), classes=10)`. Keyword arguments go to the builder."""
    return get_builder(name)(**kwargs)
