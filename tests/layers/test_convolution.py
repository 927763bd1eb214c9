"""SlimmableConv2D, SlimmableDepthwiseConv2D and SlimmableGroupedConv2D.

Golden outputs come from plain Keras layers or a naive numpy convolution on
the kernel sliced by hand, never from the layers under test.
"""

import json
import re

import keras
import numpy as np
import pytest

import keras_slimmable as ks
from keras_slimmable.widths import width_scope

IN_CHANNELS = (3, 6)
FILTERS = (4, 8)


def random_inputs(channels, size=8, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(2, size, size, channels)).astype("float32")


def randomize_weights(layer, seed=1):
    """Non-trivial values everywhere (the default bias is all zeros)."""
    rng = np.random.default_rng(seed)
    for variable in layer.weights:
        variable.assign(rng.normal(size=variable.shape).astype("float32"))


def numpy_conv(x, kernel, strides=(1, 1)):
    """A naive 'valid' NHWC convolution in float64."""
    x = np.asarray(x, "float64")
    kernel = np.asarray(kernel, "float64")
    kh, kw, _, out = kernel.shape
    sh, sw = strides
    oh = (x.shape[1] - kh) // sh + 1
    ow = (x.shape[2] - kw) // sw + 1
    outputs = np.zeros((x.shape[0], oh, ow, out))
    for a in range(kh):
        for b in range(kw):
            window = x[
                :,
                a : a + sh * (oh - 1) + 1 : sh,
                b : b + sw * (ow - 1) + 1 : sw,
            ]
            outputs += np.einsum("nhwc,co->nhwo", window, kernel[a, b])
    return outputs


def symmetric_pad(x, p):
    return np.pad(x, [(0, 0), (p, p), (p, p), (0, 0)])


def keras_conv(x, kernel, bias, strides, padding):
    """`keras.layers.Conv2D` with the given (already sliced) weights."""
    layer = keras.layers.Conv2D(
        kernel.shape[-1],
        kernel.shape[:2],
        strides=strides,
        padding=padding,
        use_bias=bias is not None,
    )
    layer.build(x.shape)
    layer.set_weights([kernel] if bias is None else [kernel, bias])
    return np.array(layer(x))


def keras_depthwise(x, kernel, bias, strides, padding):
    layer = keras.layers.DepthwiseConv2D(
        kernel.shape[:2],
        strides=strides,
        padding=padding,
        use_bias=bias is not None,
    )
    layer.build(x.shape)
    layer.set_weights([kernel] if bias is None else [kernel, bias])
    return np.array(layer(x))


def close(actual, expected):
    np.testing.assert_allclose(
        np.array(actual), np.array(expected), rtol=1e-5, atol=1e-5
    )


def _in_scope(layer, x, index):
    with width_scope(index):
        return layer(x)


# SlimmableConv2D ---------------------------------------------------------


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("padding", ["valid", "same", 1])
@pytest.mark.parametrize("strides", [1, 2])
@pytest.mark.parametrize("kernel_size", [1, 3])
def test_conv_equals_keras_conv_on_sliced_kernel(
    kernel_size, strides, padding, use_bias
):
    layer = ks.SlimmableConv2D(
        FILTERS,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=use_bias,
    )
    layer.build((None, 8, 8, IN_CHANNELS[-1]))
    randomize_weights(layer)
    kernel = np.array(layer.kernel)
    bias = np.array(layer.bias) if use_bias else None
    assert kernel.shape == (kernel_size, kernel_size, 6, 8)
    for index, (channels_in, channels_out) in enumerate(
        zip(IN_CHANNELS, FILTERS)
    ):
        x = random_inputs(channels_in, seed=index)
        sliced = kernel[:, :, :channels_in, :channels_out]
        sliced_bias = None if bias is None else bias[:channels_out]
        if padding == 1:
            expected = keras_conv(
                symmetric_pad(x, 1), sliced, sliced_bias, strides, "valid"
            )
        else:
            expected = keras_conv(x, sliced, sliced_bias, strides, padding)
        with width_scope(index):
            outputs = layer(x)
        assert outputs.shape[-1] == channels_out
        close(outputs, expected)
    # Outside any scope the layer runs at its widest width.
    x = random_inputs(IN_CHANNELS[-1], seed=1)
    close(layer(x), np.array(_in_scope(layer, x, 1)))


def test_conv_three_widths_and_activation():
    layer = ks.SlimmableConv2D((2, 4, 8), 3, padding=1, activation="relu")
    layer.build((None, 8, 8, 6))
    randomize_weights(layer)
    kernel, bias = np.array(layer.kernel), np.array(layer.bias)
    for index, (c_in, c_out) in enumerate(zip((2, 4, 6), (2, 4, 8))):
        x = random_inputs(c_in, seed=index)
        expected = numpy_conv(symmetric_pad(x, 1), kernel[:, :, :c_in, :c_out])
        expected = np.maximum(expected + bias[:c_out], 0.0)
        with width_scope(index):
            close(layer(x), expected)
    assert (np.array(layer(random_inputs(6))) >= 0).all()


def test_conv_int_filters_slices_only_the_input():
    layer = ks.SlimmableConv2D(5, 3, padding="same")
    layer.build((None, 8, 8, 6))
    randomize_weights(layer)
    kernel, bias = np.array(layer.kernel), np.array(layer.bias)
    assert kernel.shape == (3, 3, 6, 5)
    for index, channels_in in enumerate(IN_CHANNELS):
        x = random_inputs(channels_in, seed=index)
        expected = keras_conv(x, kernel[:, :, :channels_in], bias, 1, "same")
        with width_scope(index):
            outputs = layer(x)
        assert outputs.shape == (2, 8, 8, 5)
        close(outputs, expected)


def test_int_padding_is_symmetric_and_differs_from_keras_same_at_stride_2():
    layer = ks.SlimmableConv2D(FILTERS, 3, strides=2, padding=1, use_bias=False)
    layer.build((None, 8, 8, 6))
    randomize_weights(layer)
    kernel = np.array(layer.kernel)
    x = random_inputs(6)
    outputs = np.array(layer(x))
    # PyTorch's padding=1: one zero row/column on every side, then 'valid'.
    expected = numpy_conv(symmetric_pad(x, 1), kernel, strides=(2, 2))
    assert outputs.shape == expected.shape == (2, 4, 4, 8)
    close(outputs, expected)
    close(
        outputs,
        keras.ops.conv(symmetric_pad(x, 1), kernel, strides=2, padding="valid"),
    )
    # Keras 'same' at stride 2 pads only bottom/right: different numbers.
    keras_same = keras_conv(x, kernel, None, 2, "same")
    assert keras_same.shape == outputs.shape
    assert np.abs(keras_same - outputs).max() > 1e-2
    # At stride 1 a 3x3 'same' is symmetric, so there the two agree.
    layer_stride_1 = ks.SlimmableConv2D(8, 3, padding=1, use_bias=False)
    layer_stride_1.build((None, 8, 8, 6))
    layer_stride_1.kernel.assign(kernel)
    close(layer_stride_1(x), keras_conv(x, kernel, None, 1, "same"))


@pytest.mark.parametrize(
    "padding, pads",
    [
        ((1, 0), ((1, 1), (0, 0))),
        ((2, 1), ((2, 2), (1, 1))),
        (((1, 0), (0, 2)), ((1, 0), (0, 2))),
    ],
)
def test_pair_and_explicit_padding(padding, pads):
    layer = ks.SlimmableConv2D(FILTERS, 3, strides=2, padding=padding)
    layer.build((None, 8, 8, 6))
    randomize_weights(layer)
    kernel, bias = np.array(layer.kernel), np.array(layer.bias)
    x = random_inputs(3)
    padded = np.pad(x, [(0, 0), pads[0], pads[1], (0, 0)])
    expected = numpy_conv(padded, kernel[:, :, :3, :4], (2, 2)) + bias[:4]
    with width_scope(0):
        close(layer(x), expected)


def test_conv_dilation_with_int_padding():
    layer = ks.SlimmableConv2D(FILTERS, 3, padding=2, dilation_rate=2)
    layer.build((None, 8, 8, 6))
    randomize_weights(layer)
    kernel, bias = np.array(layer.kernel), np.array(layer.bias)
    x = random_inputs(3)
    golden = keras.layers.Conv2D(4, 3, dilation_rate=2, padding="valid")
    golden.build((None, 12, 12, 3))
    golden.set_weights([kernel[:, :, :3, :4], bias[:4]])
    with width_scope(0):
        close(layer(x), golden(symmetric_pad(x, 2)))


# SlimmableDepthwiseConv2D ------------------------------------------------


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize(
    "strides, padding", [(1, "same"), (2, "same"), (1, "valid"), (2, 1)]
)
def test_depthwise_equals_keras_depthwise_on_sliced_kernel(
    strides, padding, use_bias
):
    layer = ks.SlimmableDepthwiseConv2D(
        3,
        strides=strides,
        padding=padding,
        use_bias=use_bias,
        channels=IN_CHANNELS,
    )
    layer.build((None, 8, 8, 6))
    randomize_weights(layer)
    kernel = np.array(layer.kernel)
    bias = np.array(layer.bias) if use_bias else None
    assert kernel.shape == (3, 3, 6, 1)
    for index, channels in enumerate(IN_CHANNELS):
        x = random_inputs(channels, seed=index)
        sliced_bias = None if bias is None else bias[:channels]
        sliced = kernel[:, :, :channels, :]
        if padding == 1:
            expected = keras_depthwise(
                symmetric_pad(x, 1), sliced, sliced_bias, strides, "valid"
            )
        else:
            expected = keras_depthwise(x, sliced, sliced_bias, strides, padding)
        with width_scope(index):
            outputs = layer(x)
        assert outputs.shape[-1] == channels
        close(outputs, expected)


def test_depthwise_without_channels_follows_its_input():
    layer = ks.SlimmableDepthwiseConv2D(3, padding=1)
    layer.build((None, 8, 8, 6))
    randomize_weights(layer)
    kernel, bias = np.array(layer.kernel), np.array(layer.bias)
    for channels in (1, 4, 6):
        x = random_inputs(channels)
        expected = keras_depthwise(
            symmetric_pad(x, 1),
            kernel[:, :, :channels],
            bias[:channels],
            1,
            "valid",
        )
        close(layer(x), expected)


def test_depthwise_channels_mismatch_at_build_names_expected_count():
    layer = ks.SlimmableDepthwiseConv2D(3, channels=(3, 6), name="dw")
    with pytest.raises(ValueError, match=r"'dw' expects 6 input channels"):
        layer.build((None, 8, 8, 5))


def test_depthwise_channels_mismatch_at_call_names_expected_count():
    layer = ks.SlimmableDepthwiseConv2D(3, channels=(3, 6), name="dw")
    layer.build((None, 8, 8, 6))
    with width_scope(0):
        with pytest.raises(
            ValueError, match=r"expects 3 channels.*Received an input with 4"
        ):
            layer(random_inputs(4))
    with pytest.raises(
        ValueError, match=r"expects 6 channels.*Received an input with 3"
    ):
        layer(random_inputs(3))


def test_depthwise_channels_must_be_a_list_per_width():
    with pytest.raises(ValueError, match=r"one channel count per width.*=6"):
        ks.SlimmableDepthwiseConv2D(3, channels=6)


def test_depthwise_input_wider_than_built():
    layer = ks.SlimmableDepthwiseConv2D(3, name="dw")
    layer.build((None, 8, 8, 6))
    with pytest.raises(
        ValueError, match=r"at most 6 input channels.*input with 7"
    ):
        layer(random_inputs(7))


# SlimmableGroupedConv2D ---------------------------------------------------


def grouped_golden(x, kernel, bias, groups, channels_out, split_inputs):
    """g separate numpy convolutions, outputs concatenated.

    Group k uses kernel columns [k*G, k*G + channels_out/g) where G is the
    full-width group size; with `split_inputs` it reads the k-th contiguous
    part of the input.
    """
    group_size = kernel.shape[-1] // groups
    active = channels_out // groups
    channels_in = x.shape[-1]
    part = channels_in // groups
    outputs = []
    for k in range(groups):
        columns = slice(k * group_size, k * group_size + active)
        if split_inputs:
            group_input = x[..., k * part : (k + 1) * part]
            group_kernel = kernel[:, :, :part, columns]
        else:
            group_input = x
            group_kernel = kernel[:, :, :channels_in, columns]
        group_output = numpy_conv(group_input, group_kernel)
        if bias is not None:
            group_output = group_output + bias[columns]
        outputs.append(group_output)
    return np.concatenate(outputs, axis=-1)


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("kernel_size", [1, 3])
@pytest.mark.parametrize("split_inputs", [True, False])
def test_grouped_equals_separate_convs(split_inputs, kernel_size, use_bias):
    groups = 3
    in_channels, filters = (3, 6, 12), (6, 12, 24)
    layer = ks.SlimmableGroupedConv2D(
        filters,
        kernel_size,
        groups=groups,
        split_inputs=split_inputs,
        use_bias=use_bias,
    )
    layer.build((None, 8, 8, 12))
    randomize_weights(layer)
    kernel = np.array(layer.kernel)
    bias = np.array(layer.bias) if use_bias else None
    kernel_in = 4 if split_inputs else 12
    assert kernel.shape == (kernel_size, kernel_size, kernel_in, 24)
    for index, (c_in, c_out) in enumerate(zip(in_channels, filters)):
        x = random_inputs(c_in, seed=index)
        expected = grouped_golden(x, kernel, bias, groups, c_out, split_inputs)
        with width_scope(index):
            outputs = layer(x)
        assert outputs.shape == (
            2,
            8 - kernel_size + 1,
            8 - kernel_size + 1,
            c_out,
        )
        close(outputs, expected)


def test_grouped_with_stride_2_and_symmetric_padding():
    layer = ks.SlimmableGroupedConv2D((4, 8), 3, groups=2, strides=2, padding=1)
    layer.build((None, 8, 8, 8))
    randomize_weights(layer)
    kernel, bias = np.array(layer.kernel), np.array(layer.bias)
    x = symmetric_pad(random_inputs(4), 1)
    parts = [
        numpy_conv(x[..., 0:2], kernel[:, :, :2, 0:2], (2, 2)) + bias[0:2],
        numpy_conv(x[..., 2:4], kernel[:, :, :2, 4:6], (2, 2)) + bias[4:6],
    ]
    with width_scope(0):
        close(layer(random_inputs(4)), np.concatenate(parts, axis=-1))


def test_grouped_narrow_width_is_a_prefix_within_each_group():
    """At width 0 the active channels are 0, 1 (group 0) and 4, 5 (group 1).

    The layer is 1x1 and the wide input is zero outside the active input
    channels of each group, so the narrow output must equal the wide output
    at channels [0, 1, 4, 5], and not at the whole-tensor prefix [0..3].
    """
    layer = ks.SlimmableGroupedConv2D((4, 8), 1, groups=2)
    layer.build((None, 8, 8, 8))
    randomize_weights(layer)
    rng = np.random.default_rng(3)
    wide_x = rng.normal(size=(2, 8, 8, 8)).astype("float32")
    wide_x[..., [2, 3, 6, 7]] = 0.0
    narrow_x = wide_x[..., [0, 1, 4, 5]]
    wide = np.array(layer(wide_x))
    with width_scope(0):
        narrow = np.array(layer(narrow_x))
    close(narrow, wide[..., [0, 1, 4, 5]])
    assert np.abs(narrow - wide[..., :4]).max() > 1e-2
    # The whole-tensor-prefix reading (kernel columns 0..3) differs too.
    kernel, bias = np.array(layer.kernel), np.array(layer.bias)
    whole_prefix = (
        np.concatenate(
            [
                numpy_conv(narrow_x[..., :2], kernel[:, :, :2, 0:2]),
                numpy_conv(narrow_x[..., 2:], kernel[:, :, :2, 2:4]),
            ],
            axis=-1,
        )
        + bias[:4]
    )
    assert np.abs(narrow - whole_prefix).max() > 1e-2


def test_grouped_without_split_every_group_reads_the_whole_input():
    layer = ks.SlimmableGroupedConv2D(
        (4, 8), 1, groups=2, split_inputs=False, use_bias=False
    )
    layer.build((None, 8, 8, 6))
    randomize_weights(layer)
    kernel = np.array(layer.kernel)
    x = random_inputs(3)
    with width_scope(0):
        outputs = np.array(layer(x))
    expected = np.einsum("nhwc,co->nhwo", x, kernel[0, 0, :3, [0, 1, 4, 5]].T)
    close(outputs, expected)
    # Zeroing the second half of the input changes group 0's output: it is
    # not restricted to the first half.
    half = x.copy()
    half[..., 1:] = 0.0
    with width_scope(0):
        changed = np.array(layer(half))
    assert np.abs(changed[..., :2] - outputs[..., :2]).max() > 1e-2


def test_grouped_int_filters_keeps_every_column():
    layer = ks.SlimmableGroupedConv2D(6, 1, groups=3)
    layer.build((None, 8, 8, 6))
    randomize_weights(layer)
    kernel, bias = np.array(layer.kernel), np.array(layer.bias)
    x = random_inputs(3)
    with width_scope(0):
        outputs = layer(x)
    close(outputs, grouped_golden(x, kernel, bias, 3, 6, True))


# Errors ------------------------------------------------------------------


@pytest.mark.parametrize(
    "filters, message",
    [
        ((8, 4), "must not decrease"),
        ((4.5, 8), "positive ints"),
        ((0, 4), "positive ints"),
        ((-4, 4), "positive ints"),
        (0, "must be positive"),
        (-3, "must be positive"),
        ((), "positive ints"),
        ("abc", "an int or a sequence of ints"),
        (4.0, "an int or a sequence of ints"),
        (None, "an int or a sequence of ints"),
    ],
)
@pytest.mark.parametrize(
    "make",
    [
        lambda f: ks.SlimmableConv2D(f, 3),
        lambda f: ks.SlimmableGroupedConv2D(f, 1, groups=1),
    ],
    ids=["conv", "grouped"],
)
def test_bad_filters(make, filters, message):
    with pytest.raises(ValueError, match=message) as info:
        make(filters)
    assert f"filters={filters!r}" in str(info.value)


def test_numpy_integer_filters_are_accepted():
    assert ks.SlimmableConv2D(np.int64(4), 3).filters == 4


def test_bools_inside_filters_are_rejected():
    with pytest.raises(ValueError, match="filters="):
        ks.SlimmableConv2D((True, 2), 3)


@pytest.mark.parametrize(
    "padding",
    ["full", "causal", -1, 1.5, True, (1, 2, 3), (1, -1), ((1,), (1,))],
)
@pytest.mark.parametrize(
    "make",
    [
        lambda p: ks.SlimmableConv2D(4, 3, padding=p),
        lambda p: ks.SlimmableDepthwiseConv2D(3, padding=p),
        lambda p: ks.SlimmableGroupedConv2D(4, 1, groups=2, padding=p),
    ],
    ids=["conv", "depthwise", "grouped"],
)
def test_bad_padding(make, padding):
    with pytest.raises(ValueError, match=re.escape(f"padding={padding!r}")):
        make(padding)


def test_padding_strings_are_case_insensitive():
    assert ks.SlimmableConv2D(4, 3, padding="SAME").padding == "same"


@pytest.mark.parametrize(
    "argument, value",
    [("kernel_size", 0), ("kernel_size", (3, 3, 3)), ("strides", (1, 0))],
)
def test_bad_kernel_size_and_strides(argument, value):
    with pytest.raises(ValueError, match=re.escape(f"{argument}=")):
        ks.SlimmableConv2D(4, **{"kernel_size": 3, argument: value})


@pytest.mark.parametrize(
    "filters, groups",
    [((3, 8), 2), ((4, 8), 3), (9, 2)],
)
def test_grouped_groups_must_divide_filters(filters, groups):
    with pytest.raises(ValueError, match="divisible") as info:
        ks.SlimmableGroupedConv2D(filters, 1, groups=groups)
    assert f"groups={groups}" in str(info.value)
    assert f"filters={filters!r}" in str(info.value)


@pytest.mark.parametrize("groups", [0, -2, 1.5, "2"])
def test_grouped_bad_groups(groups):
    with pytest.raises(ValueError, match=re.escape(f"groups={groups!r}")):
        ks.SlimmableGroupedConv2D(4, 1, groups=groups)


def test_grouped_input_not_divisible_by_groups():
    layer = ks.SlimmableGroupedConv2D((4, 8), 1, groups=2, name="g")
    with pytest.raises(ValueError, match=r"divisible by 2.*with 5 channels"):
        layer.build((None, 8, 8, 5))
    layer.build((None, 8, 8, 8))
    with width_scope(0):
        with pytest.raises(ValueError, match=r"with 3 channels"):
            layer(random_inputs(3))


def test_conv_input_wider_than_built():
    layer = ks.SlimmableConv2D(FILTERS, 3, name="c")
    layer.build((None, 8, 8, 6))
    with pytest.raises(
        ValueError,
        match=r"'c' was built for at most 6 input channels.*input with 7",
    ):
        layer(random_inputs(7))


def test_grouped_without_split_input_wider_than_built():
    layer = ks.SlimmableGroupedConv2D((4, 8), 1, groups=2, split_inputs=False)
    layer.build((None, 8, 8, 6))
    with pytest.raises(ValueError, match=r"at most 6 input channels.*with 8"):
        layer(random_inputs(8))


def test_grouped_split_input_wider_than_built_names_the_input_channels():
    layer = ks.SlimmableGroupedConv2D((4, 8), 1, groups=2)
    layer.build((None, 8, 8, 8))
    with pytest.raises(ValueError) as info:
        layer(random_inputs(10))
    # Keras appends the call arguments (an input shape holding 10 and 8):
    # look at the layer's own sentence only.
    message = str(info.value).split("Arguments received")[0]
    assert re.search(r"at most 8 input channels", message), message
    assert re.search(r"input with 10\b", message), message


def test_grouped_split_input_wider_than_built_is_an_error():
    layer = ks.SlimmableGroupedConv2D((4, 8), 1, groups=2)
    layer.build((None, 8, 8, 8))
    with pytest.raises(ValueError, match="at most"):
        layer(random_inputs(10))


@pytest.mark.parametrize(
    "make",
    [
        lambda: ks.SlimmableConv2D(FILTERS, 1, name="layer"),
        lambda: ks.SlimmableGroupedConv2D(FILTERS, 1, groups=2, name="layer"),
        lambda: ks.SlimmableDepthwiseConv2D(
            1, channels=IN_CHANNELS, name="layer"
        ),
    ],
    ids=["conv", "grouped", "depthwise"],
)
def test_width_index_beyond_the_layers_widths(make):
    layer = make()
    layer.build((None, 8, 8, 6))
    with width_scope(2):
        with pytest.raises(
            ValueError, match=r"'layer' has 2 widths, but width index 2"
        ):
            layer(random_inputs(6))


# Config and serialization ------------------------------------------------


CONFIGURED_LAYERS = {
    "conv_int_padding": lambda: ks.SlimmableConv2D(
        FILTERS,
        3,
        strides=2,
        padding=1,
        activation="relu",
        kernel_initializer="he_normal",
        kernel_regularizer=keras.regularizers.L2(1e-4),
        name="conv",
    ),
    "conv_explicit_padding": lambda: ks.SlimmableConv2D(
        5, (3, 1), padding=((1, 0), (0, 0)), use_bias=False, dilation_rate=1
    ),
    "conv_same": lambda: ks.SlimmableConv2D(FILTERS, 3, padding="same"),
    "depthwise": lambda: ks.SlimmableDepthwiseConv2D(
        3,
        channels=IN_CHANNELS,
        strides=2,
        padding=1,
        depthwise_initializer="he_uniform",
        depthwise_regularizer=keras.regularizers.L2(1e-3),
        activation="relu6",
    ),
    "depthwise_no_channels": lambda: ks.SlimmableDepthwiseConv2D(
        3, padding="same", use_bias=False
    ),
    "grouped_split": lambda: ks.SlimmableGroupedConv2D(
        (4, 8), 3, groups=2, padding=1, bias_initializer="ones"
    ),
    "grouped_whole": lambda: ks.SlimmableGroupedConv2D(
        (4, 8), 1, groups=2, split_inputs=False, use_bias=False
    ),
}


def input_channels_of(layer, index):
    if isinstance(layer, ks.SlimmableGroupedConv2D):
        return (4, 6)[index] if layer.split_inputs else IN_CHANNELS[index]
    return IN_CHANNELS[index]


@pytest.mark.parametrize("key", sorted(CONFIGURED_LAYERS))
def test_get_config_round_trip_and_equal_outputs(key):
    layer = CONFIGURED_LAYERS[key]()
    layer.build((None, 8, 8, 6))
    randomize_weights(layer)
    config = layer.get_config()
    copy = type(layer).from_config(config)
    assert copy.get_config() == config
    copy.build((None, 8, 8, 6))
    copy.set_weights(layer.get_weights())
    for index in range(2):
        x = random_inputs(input_channels_of(layer, index), seed=index)
        with width_scope(index):
            np.testing.assert_array_equal(np.array(copy(x)), np.array(layer(x)))


@pytest.mark.parametrize("key", sorted(CONFIGURED_LAYERS))
def test_registered_serializable(key):
    layer = CONFIGURED_LAYERS[key]()
    serialized = keras.saving.serialize_keras_object(layer)
    assert serialized["registered_name"] == (
        f"keras_slimmable>{type(layer).__name__}"
    )
    # Through JSON, as a `.keras` file stores it (tuples become lists).
    restored = keras.saving.deserialize_keras_object(
        json.loads(json.dumps(serialized))
    )
    assert type(restored) is type(layer)
    assert json.dumps(restored.get_config()) == json.dumps(layer.get_config())


# Saving a model with every layer type --------------------------------------


def tiny_model():
    inputs = keras.Input((8, 8, 3))
    x = ks.SlimmableConv2D((4, 8), 3, strides=2, padding=1, use_bias=False)(
        inputs
    )
    x = ks.SwitchableBatchNormalization((4, 8))(x)
    x = keras.layers.ReLU()(x)
    x = ks.SlimmableDepthwiseConv2D(3, channels=(4, 8), padding=1)(x)
    x = ks.SwitchableBatchNormalization((4, 8), shared=True)(x)
    x = ks.SlimmableGroupedConv2D((6, 12), 1, groups=2)(x)
    x = ks.SwitchableBatchNormalization((6, 12))(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = ks.SlimmableDense((5, 10), activation="relu")(x)
    outputs = ks.SlimmableDense(3)(x)
    return ks.SlimmableModel(inputs, outputs, widths=(0.5, 1.0))


def test_keras_file_round_trip_of_every_layer_type(tmp_path):
    model = tiny_model()
    rng = np.random.default_rng(0)
    for variable in model.weights:
        if "variance" in variable.path:
            value = rng.uniform(0.5, 2.0, variable.shape)
        else:
            value = rng.normal(size=variable.shape)
        variable.assign(value.astype("float32"))
    model.set_width(0.5)
    path = tmp_path / "tiny.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is ks.SlimmableModel
    assert loaded.widths == (0.5, 1.0)
    assert loaded.width == 0.5
    assert sorted(type(layer).__name__ for layer in loaded.layers) == sorted(
        type(layer).__name__ for layer in model.layers
    )
    x = rng.normal(size=(2, 8, 8, 3)).astype("float32")
    outputs = {}
    for width in (0.5, 1.0):
        outputs[width] = np.array(model(x, width=width))
        np.testing.assert_array_equal(
            np.array(loaded(x, width=width)), outputs[width]
        )
    assert np.abs(outputs[0.5] - outputs[1.0]).max() > 1e-3
