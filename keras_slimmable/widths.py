"""Width lists, channel rounding and the width scope that layers read.

A slimmable network runs at several widths. The model owns the width list;
every slimmable layer holds one channel count per width, in the same order,
and at call time uses the entry of the *active width index*. The model sets
that index with `width_scope` around its forward pass; layers read it with
`active_width_index`. The index is a plain Python int read while tracing,
so every width gets its own trace and compiled functions never mix widths.

The scope is a `contextvars.ContextVar`: each thread (and each asyncio task)
sees its own value, so concurrent calls at different widths do not interfere.
"""

import contextlib
import contextvars
import math

_ACTIVE_WIDTH_INDEX = contextvars.ContextVar(
    "keras_slimmable_active_width_index", default=None
)


def make_divisible(value, divisor=8, min_value=1):
    """Rounds a channel count to the nearest multiple of `divisor`.

    The rounding of the reference MobileNets: never below `min_value`, and
    never more than 10% below `value` (one `divisor` is added back if so).

    Args:
        value: the unrounded channel count (a float is fine).
        divisor: the multiple to round to. Defaults to `8`.
        min_value: the smallest allowed result. Defaults to `1`.

    Returns:
        An int.
    """
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)


def scale_channels(channels, widths, rounding="int"):
    """Returns the channel count of a layer at every width.

    Args:
        channels: the channel count at width 1.0.
        widths: the width multipliers.
        rounding: `"int"` (truncate, as ShuffleNet and ResNet do),
            `"make_divisible"` (the MobileNets' rounding to multiples of 8),
            or a callable `f(float) -> int`. Defaults to `"int"`.

    Returns:
        A tuple of ints, one per width.
    """
    if rounding == "int":
        round_fn = int
    elif rounding == "make_divisible":
        round_fn = make_divisible
    elif callable(rounding):
        round_fn = rounding
    else:
        raise ValueError(
            "`rounding` must be 'int', 'make_divisible' or a callable. "
            f"Received: rounding={rounding!r}"
        )
    return tuple(int(round_fn(channels * w)) for w in widths)


def standardize_widths(widths):
    """Validates a width list and returns it as an ascending tuple of floats.

    Raises:
        ValueError: if `widths` is empty, not ascending, has duplicates or
            non-positive values.
    """
    try:
        result = tuple(float(w) for w in widths)
    except (TypeError, ValueError):
        raise ValueError(
            "`widths` must be a sequence of positive numbers. "
            f"Received: widths={widths!r}"
        ) from None
    if not result:
        raise ValueError("`widths` must not be empty. Received: widths=()")
    if any(not math.isfinite(w) or w <= 0 for w in result):
        raise ValueError(
            f"Every width must be a positive number. Received: widths={widths}"
        )
    if any(a >= b for a, b in zip(result, result[1:])):
        raise ValueError(
            "`widths` must be strictly ascending, e.g. (0.25, 0.5, 0.75, 1.0). "
            f"Received: widths={widths}"
        )
    return result


def width_index(widths, width):
    """Returns the position of `width` in the ascending tuple `widths`.

    Raises:
        ValueError: naming the bad value and the valid ones.
    """
    try:
        value = float(width)
    except (TypeError, ValueError):
        value = None
    if value is not None:
        for index, candidate in enumerate(widths):
            if math.isclose(candidate, value, rel_tol=0.0, abs_tol=1e-9):
                return index
    raise ValueError(
        f"Unknown width {width!r}: this model runs at widths "
        f"{tuple(widths)}. Pass one of those."
    )


def width_name(width, separator="."):
    """A short name for a width: `w0.25`, `w1.0` (or `w0_25` with `_`).

    Used in metric names (`w0.25_accuracy`) and, with `separator="_"`, in
    identifiers such as signature and folder names (`serving_w0_25`).
    """
    return "w" + repr(float(width)).replace(".", separator)


@contextlib.contextmanager
def width_scope(index):
    """Makes `index` the active width index for the layers called inside.

    Args:
        index: the position of the width in the model's width list.
    """
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise ValueError(
            f"A width index must be a non-negative int. Received: {index!r}"
        )
    token = _ACTIVE_WIDTH_INDEX.set(index)
    try:
        yield
    finally:
        _ACTIVE_WIDTH_INDEX.reset(token)


def active_width_index():
    """The active width index, or `None` outside any `width_scope`.

    Layers treat `None` as the widest width (the last entry of their
    per-width lists).
    """
    return _ACTIVE_WIDTH_INDEX.get()
