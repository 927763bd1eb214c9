"""Width lists, channel rounding and the width scope that layers read.

A slimmable network runs at several widths. The model owns the width list
and, around its forward pass, makes one width *active* with `width_scope`:
an `ActiveWidth`, which holds the width itself (the multiplier, e.g. 0.5)
and its position in the model's list. Layers read it with `active_width`.
A layer's channel configuration (see `keras_slimmable.layers.base`) turns
it into channel counts: an explicit per-width tuple reads the position, a
channel rule (`ScaledChannels`) computes the count from the width itself,
so a width outside any list needs no change to the layers. The active width
is plain Python data read while tracing, so every width gets its own trace
and compiled functions never mix widths.

The scope is a `contextvars.ContextVar`: each thread (and each asyncio task)
sees its own value, so concurrent calls at different widths do not interfere.
"""

import collections
import contextlib
import contextvars
import math
import numbers
import struct

_ACTIVE_WIDTH = contextvars.ContextVar(
    "keras_slimmable_active_width", default=None
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


class ActiveWidth(
    collections.namedtuple(
        "ActiveWidth",
        ["width", "index", "sampled", "channels"],
        defaults=(None, None),
    )
):
    """The width a forward pass runs at.

    Attributes:
        width: the width multiplier (a float), or `None` where only the
            position is known (or for a sampled width).
        index: the position of the width in the model's width list (which
            selects a per-width channel tuple entry and a width's private
            batch norm), or `None` for a width outside the list.
        sampled: `None`, or a scalar float32 tensor: a width drawn at
            random inside a compiled training step (the sandwich rule),
            which the trainers pass as `width=`. Layers then compute at
            their widest and zero the channels beyond the width's count
            (`layers.base.mask_sampled`), so one trace serves every drawn
            width.
        channels: `None`, or per-layer channel counts that override the
            width: a tuple of `(layer name, count)` pairs (a non-uniform
            configuration, such as one AutoSlim finds). Layers not named
            follow `width`.
    """

    __slots__ = ()


@contextlib.contextmanager
def width_scope(index=None, width=None, sampled=None, channels=None):
    """Makes a width active for the layers called inside.

    Args:
        index: the position of the width in the model's width list, or
            `None` for a width outside it.
        width: the width multiplier itself, e.g. `0.5`. Optional when
            `index` is given (layers with per-width channel tuples need
            only the position); required when it is not (unless
            `sampled`).
        sampled: a scalar float32 tensor, a width drawn at run time (see
            `ActiveWidth.sampled`). Defaults to `None`.
        channels: per-layer channel counts, `(layer name, count)` pairs
            (see `ActiveWidth.channels`). Defaults to `None`.

    Example:

    >>> with keras_slimmable.width_scope(0):
    ...     y = layer(x)  # every slimmable layer at its first width
    >>> with keras_slimmable.width_scope(width=0.4):
    ...     y = layer(x)  # layers with a channel rule, at width 0.4
    """
    if index is not None and (
        not isinstance(index, int) or isinstance(index, bool) or index < 0
    ):
        raise ValueError(
            f"A width index must be a non-negative int. Received: {index!r}"
        )
    if width is not None:
        value = _real_number(width)
        if value is None or not math.isfinite(value) or value <= 0:
            raise ValueError(
                f"A width must be a positive number. Received: width={width!r}"
            )
        width = value
    elif index is None and sampled is None and channels is None:
        raise ValueError(
            "`width_scope` needs the width's `index` in the model's list, "
            "its `width`, or both. Received: index=None, width=None"
        )
    if channels is not None:
        channels = tuple(sorted(dict(channels).items()))
    token = _ACTIVE_WIDTH.set(ActiveWidth(width, index, sampled, channels))
    try:
        yield
    finally:
        _ACTIVE_WIDTH.reset(token)


def active_width():
    """The `ActiveWidth` of the innermost `width_scope`, or `None` outside
    any (layers then run at their widest)."""
    return _ACTIVE_WIDTH.get()


def active_width_index():
    """The active width's position in the model's list, or `None` outside
    any `width_scope` (or for a width outside the list)."""
    active = _ACTIVE_WIDTH.get()
    return None if active is None else active.index


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
