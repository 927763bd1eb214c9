"""A small registry of the zoo's builders (`list_models`, `create_model`)."""

_BUILDERS = {}


def register_model(name):
    """Registers a builder under `name`: `@register_model("s_resnet50")`."""

    def decorator(builder):
        if name in _BUILDERS:
            raise ValueError(f"A zoo model named {name!r} already exists.")
        _BUILDERS[name] = builder
        return builder

    return decorator


def list_models():
    """The names of the zoo's models, sorted."""
    return sorted(_BUILDERS)


def get_builder(name):
    """The builder function registered as `name`."""
    try:
        return _BUILDERS[name]
    except KeyError:
        raise ValueError(
            f"Unknown zoo model {name!r}. Available: {list_models()}"
        ) from None


def create_model(name, **kwargs):
    """Builds the zoo model `name`: `create_model("s_mobilenet_v1",
    widths=(0.5, 1.0), classes=10)`. Keyword arguments go to the builder."""
    return get_builder(name)(**kwargs)
