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
import numbers
import struct

_ACTIVE_WIDTH_INDEX = contextvars.ContextVar(
    "keras_slimmable_active_width_index", default=None
)
# Set while the package traces a call whose compiled function belongs to
# one width (Keras's predict function, kept per width): there a model call
# without `width=` may read the model's default width.
_IMPLICIT_WIDTH = contextvars.ContextVar(
    "keras_slimmable_implicit_width", default=False
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


def _float32(value):
    """`value` rounded to float32 (what a float32 tensor of it would hold)."""
    try:
        return struct.unpack("f", struct.pack("f", value))[0]
    except OverflowError:
        return math.copysign(math.inf, value)


def _real_number(value):
    """`value` as a Python float, or `None` unless it is a real number.

    Bools (Python's and NumPy's) and strings are not widths, though
    `float()` would take them.
    """
    # numpy.bool_ is no numbers.Real either.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    return float(value)


def standardize_widths(widths):
    """Validates a width list and returns it as an ascending tuple of floats.

    Raises:
        ValueError: if `widths` is empty, not ascending, has duplicates
            (equal at float32 precision), non-positive values, or entries
            that are not real numbers (strings and bools are refused).
    """
    try:
        result = tuple(_real_number(w) for w in widths)
    except TypeError:
        result = (None,)
    if None in result:
        raise ValueError(
            "`widths` must be a sequence of positive numbers. "
            f"Received: widths={widths!r}"
        )
    if not result:
        raise ValueError("`widths` must not be empty. Received: widths=()")
    if any(not math.isfinite(w) or w <= 0 for w in result):
        raise ValueError(
            f"Every width must be a positive number. Received: widths={widths}"
        )
    rounded = [_float32(w) for w in result]
    if any(a >= b for a, b in zip(rounded, rounded[1:])):
        raise ValueError(
            "`widths` must be strictly ascending (and distinct at float32 "
            "precision), e.g. (0.25, 0.5, 0.75, 1.0). "
            f"Received: widths={widths}"
        )
    return result


def width_index(widths, width):
    """Returns the position of `width` in the ascending tuple `widths`.

    A width matches when it equals an entry at float32 precision, so
    `np.float32(0.35)` and `0.35` name the same width; bools and strings
    never match.

    Raises:
        ValueError: naming the bad value and the valid ones.
    """
    value = _real_number(width)
    if value is None:
        raise ValueError(
            "A width must be a real number, one of the widths "
            f"{tuple(widths)}. Received: width={width!r} of type "
            f"{type(width).__name__}"
        )
    value = _float32(value)
    for index, candidate in enumerate(widths):
        if _float32(candidate) == value:
            return index
    raise ValueError(
        f"Unknown width {width!r}: this model runs at widths "
        f"{tuple(widths)}. Pass one of those (a number)."
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


@contextlib.contextmanager
def implicit_width_scope():
    """Lets model calls without `width=` read the default width while a
    compiled function is traced (for functions kept per width)."""
    token = _IMPLICIT_WIDTH.set(True)
    try:
        yield
    finally:
        _IMPLICIT_WIDTH.reset(token)


def implicit_width_allowed():
    """Whether an `implicit_width_scope` is active."""
    return _IMPLICIT_WIDTH.get()
