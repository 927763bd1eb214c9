"""Width lists, channel rounding, width names and the width scope.

The expected channel counts below were worked out by hand from the reference
definition in ARCHITECTURES.md:

    make_divisible(v, divisor=8, min_value=1):
        new = max(min_value, int(v + divisor / 2) // divisor * divisor)
        if new < 0.9 * v: new += divisor

and the per-width batch-norm parameter counts are the published figures of
counts.json (gamma + beta of the batch norms active at each width).
"""

import math
import re
import threading

import keras
import numpy as np
import pytest

import keras_slimmable as ks
from keras_slimmable.widths import active_width_index
from keras_slimmable.widths import make_divisible
from keras_slimmable.widths import scale_channels
from keras_slimmable.widths import standardize_widths
from keras_slimmable.widths import width_index
from keras_slimmable.widths import width_name
from keras_slimmable.widths import width_scope

V1_WIDTHS = (0.25, 0.5, 0.75, 1.0)
V2_WIDTHS = (0.35, 0.5, 0.75, 1.0)
SHUFFLENET_WIDTHS = (0.5, 1.0, 2.0)

# make_divisible ------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        # int(v + 4) // 8 * 8, no correction needed.
        (8.0, 8),  # 32 * 0.25
        (16.0, 16),
        (24.0, 24),  # 32 * 0.75
        (48.0, 48),  # 64 * 0.75
        (56.0, 56),  # 160 * 0.35
        (72.0, 72),  # 96 * 0.75
        (112.0, 112),  # 320 * 0.35
        (120.0, 120),  # 160 * 0.75
        (768.0, 768),  # 1024 * 0.75
        (1280.0, 1280),
        (4.0, 8),  # int(8) // 8 * 8 = 8: rounds half up
        (5.6, 8),  # 16 * 0.35: 9 // 8 * 8 = 8
        (8.4, 8),  # 24 * 0.35: 12 // 8 * 8 = 8, 8 >= 7.56
        (22.4, 24),  # 64 * 0.35: 26 // 8 * 8 = 24
        (33.6, 32),  # 96 * 0.35: 37 // 8 * 8 = 32, 32 >= 30.24
        (35.5, 32),  # 39 // 8 * 8 = 32, 32 >= 31.95
        (36.0, 40),  # 40 // 8 * 8 = 40
        # The 10% correction adds one divisor.
        (11.2, 16),  # 32 * 0.35: 15 // 8 * 8 = 8 < 10.08, so 16
        (18.0, 24),  # 24 * 0.75: 22 // 8 * 8 = 16 < 16.2, so 24
        (35.9, 40),  # 39 // 8 * 8 = 32 < 32.31, so 40
        (3.0, 9),  # max(1, 0) = 1 < 2.7, so 1 + 8 = 9
        (0.5, 1),  # max(1, 0) = 1, not below 0.45
    ],
)
def test_make_divisible_reference_values(value, expected):
    result = make_divisible(value)
    assert result == expected
    assert type(result) is int


@pytest.mark.parametrize(
    "value, divisor, min_value, expected",
    [
        (10, 4, 1, 12),  # int(12) // 4 * 4 = 12
        (13, 4, 1, 12),  # int(15) // 4 * 4 = 12, 12 >= 11.7
        (10, 4, 16, 16),  # max(16, 12)
        (20, 16, 1, 32),  # int(28) // 16 * 16 = 16 < 18, so 32
    ],
)
def test_make_divisible_divisor_and_min_value(
    value, divisor, min_value, expected
):
    assert make_divisible(value, divisor, min_value) == expected


# scale_channels ------------------------------------------------------------


@pytest.mark.parametrize(
    "channels, widths, expected",
    [
        (32, V1_WIDTHS, (8, 16, 24, 32)),
        (64, V1_WIDTHS, (16, 32, 48, 64)),
        (1024, V1_WIDTHS, (256, 512, 768, 1024)),
        (32, V2_WIDTHS, (16, 16, 24, 32)),
        (16, V2_WIDTHS, (8, 8, 16, 16)),
        (24, V2_WIDTHS, (8, 16, 24, 24)),
        (64, V2_WIDTHS, (24, 32, 48, 64)),
        (96, V2_WIDTHS, (32, 48, 72, 96)),
        (160, V2_WIDTHS, (56, 80, 120, 160)),
        (320, V2_WIDTHS, (112, 160, 240, 320)),
    ],
)
def test_scale_channels_make_divisible(channels, widths, expected):
    result = scale_channels(channels, widths, rounding="make_divisible")
    assert result == expected
    assert all(type(c) is int for c in result)


@pytest.mark.parametrize(
    "channels, widths, expected",
    [
        (24, SHUFFLENET_WIDTHS, (12, 24, 48)),
        (240, SHUFFLENET_WIDTHS, (120, 240, 480)),
        (960, SHUFFLENET_WIDTHS, (480, 960, 1920)),
        (64, V1_WIDTHS, (16, 32, 48, 64)),
        (2048, V1_WIDTHS, (512, 1024, 1536, 2048)),
        (10, (0.35, 0.99), (3, 9)),  # truncates: 3.5 -> 3, 9.9 -> 9
    ],
)
def test_scale_channels_int_truncates(channels, widths, expected):
    assert scale_channels(channels, widths) == expected
    assert scale_channels(channels, widths, rounding="int") == expected


def test_scale_channels_callable_rounding():
    assert scale_channels(10, (0.35, 0.99), rounding=round) == (4, 10)
    assert scale_channels(10, (0.35, 0.99), rounding=math.ceil) == (4, 10)


@pytest.mark.parametrize("rounding", ["floor", None, 8])
def test_scale_channels_bad_rounding(rounding):
    with pytest.raises(ValueError, match=re.escape(f"rounding={rounding!r}")):
        scale_channels(32, V1_WIDTHS, rounding=rounding)


def _mobilenet_v1_batch_norm_params(width):
    channels = lambda c: scale_channels(c, (width,), "make_divisible")[0]  # noqa: E731
    previous = channels(32)
    total = previous
    for out, repeats in ((64, 1), (128, 2), (256, 2), (512, 6), (1024, 2)):
        for _ in range(repeats):
            total += previous + channels(out)  # depthwise BN, pointwise BN
            previous = channels(out)
    return 2 * total


def _mobilenet_v2_batch_norm_params(width):
    channels = lambda c: scale_channels(c, (width,), "make_divisible")[0]  # noqa: E731
    previous = channels(32)
    total = previous
    blocks = (
        (1, 16, 1),
        (6, 24, 2),
        (6, 32, 3),
        (6, 64, 4),
        (6, 96, 3),
        (6, 160, 3),
        (6, 320, 1),
    )
    for expansion, out, repeats in blocks:
        for _ in range(repeats):
            hidden = expansion * previous
            total += (hidden if expansion != 1 else 0) + hidden
            total += channels(out)
            previous = channels(out)
    return 2 * (total + 1280)  # the tail's shared batch norm


def _shufflenet_batch_norm_params(width, groups=3):
    stem = 3 * (scale_channels(24, (width,))[0] // groups)
    previous, total = stem, stem
    for out, repeats in ((240, 4), (480, 8), (960, 4)):
        out = scale_channels(out, (width,))[0]
        for unit in range(repeats):
            bottleneck = out // 4
            branch = out - previous if unit == 0 else out
            total += 2 * bottleneck + branch
            previous = out
    return 2 * total


def _resnet50_batch_norm_params(width):
    total = scale_channels(64, (width,))[0]
    for f, blocks in ((64, 3), (128, 4), (256, 6), (512, 3)):
        out = scale_channels(f * 4, (width,))[0]
        total += blocks * (out // 4 + out // 4 + out) + out  # + shortcut BN
    return 2 * total


@pytest.mark.parametrize(
    "count, widths, expected",
    [
        (
            _mobilenet_v1_batch_norm_params,
            V1_WIDTHS,
            (5472, 10944, 16416, 21888),
        ),
        (
            _mobilenet_v2_batch_norm_params,
            V2_WIDTHS,
            (14080, 18544, 26640, 34112),
        ),
        (
            _shufflenet_batch_norm_params,
            SHUFFLENET_WIDTHS,
            (12240, 24480, 48960),
        ),
        (_resnet50_batch_norm_params, V1_WIDTHS, (13280, 26560, 39840, 53120)),
    ],
    ids=["s_mobilenet_v1", "s_mobilenet_v2", "s_shufflenet", "s_resnet50"],
)
def test_scaled_channels_reproduce_counts_json_batch_norm_params(
    count, widths, expected
):
    assert tuple(count(w) for w in widths) == expected


# width_name ----------------------------------------------------------------


@pytest.mark.parametrize(
    "width, separator, expected",
    [
        (0.25, ".", "w0.25"),
        (0.35, ".", "w0.35"),
        (1.0, ".", "w1.0"),
        (1, ".", "w1.0"),
        (2.0, ".", "w2.0"),
        (0.25, "_", "w0_25"),
        (1.0, "_", "w1_0"),
    ],
)
def test_width_name(width, separator, expected):
    assert width_name(width, separator) == expected


def test_width_name_default_separator_is_a_dot():
    assert width_name(0.75) == "w0.75"


# standardize_widths and width_index ----------------------------------------


def test_standardize_widths_returns_a_tuple_of_floats():
    result = standardize_widths([0.25, 0.5, 1])
    assert result == (0.25, 0.5, 1.0)
    assert all(type(w) is float for w in result)
    assert standardize_widths(np.array([0.5, 2.0])) == (0.5, 2.0)


@pytest.mark.parametrize(
    "widths, message",
    [
        ((), "must not be empty"),
        ([], "must not be empty"),
        ((1.0, 0.5), "strictly ascending"),
        ((0.5, 0.5, 1.0), "strictly ascending"),
        ((0.0, 1.0), "positive"),
        ((-0.5, 1.0), "positive"),
        ((0.5, float("nan")), "positive"),
        ((0.5, float("inf")), "positive"),
        ("abc", "positive numbers"),
        (None, "positive numbers"),
        (0.5, "positive numbers"),
    ],
)
def test_standardize_widths_errors(widths, message):
    with pytest.raises(ValueError, match=message) as info:
        standardize_widths(widths)
    if widths:
        assert str(widths) in str(info.value) or repr(widths) in str(info.value)


def test_width_index():
    widths = (0.25, 0.5, 1.0)
    assert width_index(widths, 0.25) == 0
    assert width_index(widths, 1) == 2
    assert width_index(widths, 0.5 + 1e-12) == 1
    assert width_index(widths, np.float64(0.5)) == 1


def test_width_index_matches_at_float32_precision():
    # 0.35 is not a float32: np.float32(0.35) == 0.3499999940395355, which
    # a float64 comparison calls a different width.
    widths = standardize_widths((0.25, 0.35, 1.0))
    assert float(np.float32(0.35)) != 0.35
    assert width_index(widths, np.float32(0.35)) == 1
    assert width_index(widths, np.array(0.35, "float32").item()) == 1
    assert width_index(widths, np.float16(1.0)) == 2
    # One float32 step away is another width.
    neighbour = np.nextafter(np.float32(0.35), np.float32(1.0))
    with pytest.raises(ValueError, match="Unknown width"):
        width_index(widths, neighbour)


def test_widths_equal_at_float32_are_duplicates():
    with pytest.raises(ValueError, match="strictly ascending"):
        standardize_widths((0.35, float(np.float32(0.35)), 1.0))


@pytest.mark.parametrize("bad", [0.3, 0.0, 2.0, 0.5 + 1e-6, float("nan")])
def test_width_index_unknown_width_names_it_and_the_valid_ones(bad):
    with pytest.raises(ValueError) as info:
        width_index((0.25, 0.5, 1.0), bad)
    message = str(info.value)
    assert f"Unknown width {bad!r}" in message
    assert "(0.25, 0.5, 1.0)" in message


@pytest.mark.parametrize(
    "bad", [True, False, np.bool_(True), "0.5", "wide", None, b"1", [0.5]]
)
def test_width_index_refuses_what_is_not_a_real_number(bad):
    # float() accepts True and "0.5"; a width must be a number.
    with pytest.raises(ValueError) as info:
        width_index((0.5, 1.0), bad)
    message = str(info.value)
    assert "must be a real number" in message
    assert f"width={bad!r}" in message
    assert "(0.5, 1.0)" in message


@pytest.mark.parametrize("bad", [(0.5, True), ("0.5", 1.0), (0.5, "1")])
def test_standardize_widths_refuses_bools_and_strings(bad):
    with pytest.raises(ValueError, match="positive numbers"):
        standardize_widths(bad)


# width_scope -----------------------------------------------------------------


def test_width_scope_sets_nests_and_restores():
    assert active_width_index() is None
    with width_scope(2):
        assert active_width_index() == 2
        with width_scope(0):
            assert active_width_index() == 0
        assert active_width_index() == 2
    assert active_width_index() is None


def test_width_scope_restores_after_an_exception():
    with pytest.raises(RuntimeError):
        with width_scope(1):
            raise RuntimeError("boom")
    assert active_width_index() is None


@pytest.mark.parametrize("bad", [-1, True, 1.0, "1", None])
def test_width_scope_rejects_bad_indices(bad):
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        with width_scope(bad):
            pass
    assert active_width_index() is None


def test_width_scope_is_private_to_each_thread():
    seen = {}
    entered, release = threading.Event(), threading.Event()

    def worker():
        seen["before"] = active_width_index()
        with width_scope(0):
            entered.set()
            release.wait(10)
            seen["inside"] = active_width_index()

    with width_scope(3):
        thread = threading.Thread(target=worker)
        thread.start()
        assert entered.wait(10)
        # The worker's scope does not leak into this thread.
        assert active_width_index() == 3
        release.set()
        thread.join(10)
    assert seen == {"before": None, "inside": 0}


# SlimmableModel width lists ------------------------------------------------


def tiny_model(widths=(0.5, 1.0), filters=(2, 4), **kwargs):
    inputs = keras.Input((4, 4, 3))
    x = ks.SlimmableConv2D(filters, 1, name="conv")(inputs)
    outputs = ks.SwitchableBatchNormalization((2, 4), name="bn")(x)
    return ks.SlimmableModel(inputs, outputs, widths=widths, **kwargs)


@pytest.mark.parametrize(
    "widths, message",
    [
        ((), "must not be empty"),
        ((1.0, 0.5), r"strictly ascending.*\(1\.0, 0\.5\)"),
        ((0.0, 1.0), r"positive.*\(0\.0, 1\.0\)"),
        ((-0.5, 1.0), r"positive.*\(-0\.5, 1\.0\)"),
    ],
)
def test_model_rejects_bad_widths(widths, message):
    with pytest.raises(ValueError, match=message):
        tiny_model(widths=widths)


@pytest.mark.parametrize(
    "make_layer, attribute, value",
    [
        (lambda: ks.SlimmableConv2D((2, 3, 4), 1), "filters", (2, 3, 4)),
        (
            lambda: ks.SlimmableGroupedConv2D((2, 4, 6), 1, groups=2),
            "filters",
            (2, 4, 6),
        ),
        (
            lambda: ks.SlimmableDepthwiseConv2D(1, channels=(2, 3, 4)),
            "channels",
            (2, 3, 4),
        ),
        (
            lambda: ks.SwitchableBatchNormalization((2, 3, 4)),
            "channels",
            (2, 3, 4),
        ),
        (lambda: ks.SlimmableDense((1, 2, 3)), "units", (1, 2, 3)),
    ],
    ids=["conv", "grouped", "depthwise", "batch_norm", "dense"],
)
def test_model_rejects_a_layer_with_another_number_of_widths(
    make_layer, attribute, value
):
    inputs = keras.Input((4, 4, 4))
    layer = make_layer()
    outputs = layer(inputs)
    with pytest.raises(ValueError) as info:
        ks.SlimmableModel(inputs, outputs, widths=(0.5, 1.0))
    message = str(info.value)
    assert f"'{layer.name}'" in message
    assert f"{attribute}={value}" in message
    assert "3 entries" in message and "2 widths" in message


@pytest.mark.parametrize("bad", [0.3, 0.75, 2.0, "half", None])
def test_set_width_unknown_width_changes_nothing(bad):
    model = tiny_model()
    model.set_width(0.5)
    with pytest.raises(ValueError) as info:
        model.set_width(bad)
    message = str(info.value)
    assert repr(bad) in message
    assert "(0.5, 1.0)" in message
    assert model.width == 0.5
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        model.width = bad
    assert model.width == 0.5


def test_set_width_to_a_valid_width():
    model = tiny_model()
    assert model.widths == (0.5, 1.0)
    assert model.width == 1.0
    model.set_width(0.5)
    assert model.width == 0.5
    model.width = 1
    assert model.width == 1.0 and type(model.width) is float


def test_model_rejects_an_unknown_default_width():
    with pytest.raises(ValueError, match=r"Unknown width 0\.3.*\(0\.5, 1\.0\)"):
        tiny_model(width=0.3)
