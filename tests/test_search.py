"""The AutoSlim search (`keras_slimmable.search`, issue 13)."""

import keras
import numpy as np
import pytest

import keras_slimmable as ks
from keras_slimmable import search
from keras_slimmable.layers import ScaledChannels
from keras_slimmable.layers import UniversalBatchNormalization
from keras_slimmable.profiling import profile


def tiny(first=16, second=32, seed=1):
    """conv a (rule) -> BN -> ReLU -> depthwise -> BN -> ReLU -> conv b
    (rule) -> BN -> ReLU -> pool -> dense, on 8 x 8 x 3 images."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    x = ks.SlimmableConv2D(ScaledChannels(first), 3, padding=1, name="a")(
        inputs
    )
    x = UniversalBatchNormalization(ScaledChannels(first), name="a_bn")(x)
    x = keras.layers.ReLU()(x)
    x = ks.SlimmableDepthwiseConv2D(
        3, padding=1, channels=ScaledChannels(first), name="dw"
    )(x)
    x = UniversalBatchNormalization(ScaledChannels(first), name="dw_bn")(x)
    x = keras.layers.ReLU()(x)
    x = ks.SlimmableConv2D(ScaledChannels(second), 1, name="b")(x)
    x = UniversalBatchNormalization(ScaledChannels(second), name="b_bn")(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = ks.SlimmableDense(10, name="fc")(x)
    return ks.SlimmableModel(
        inputs, outputs, widths=(0.25, 1.0), width_range=(0.25, 1.0)
    )


def images(count=64, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(count, 8, 8, 3)).astype("float32")


def predictions(model, x, channels):
    return np.argmax(
        keras.ops.convert_to_numpy(model(x, width=channels)), axis=-1
    )


def weights_of(model):
    return [keras.ops.convert_to_numpy(v).copy() for v in model.weights]


def full_channels(model):
    return search.layer_channels(search.channel_groups(model), {})


def test_groups_of_a_conv_and_what_follows_it():
    groups = search.channel_groups(tiny())
    assert [(g.name, g.layers, g.channels, g.searchable) for g in groups] == [
        ("a", ("a", "a_bn", "dw", "dw_bn"), 16, True),
        ("b", ("b", "b_bn"), 32, True),
    ]


def test_groups_of_us_mobilenet_v1_follow_the_graph():
    model = ks.zoo.us_mobilenet_v1(input_shape=(32, 32, 3), classes=10)
    groups = {g.name: g for g in search.channel_groups(model)}
    # The stem and the 13 pointwise convs, each with its batch norm and the
    # next block's depthwise conv and batch norm.
    assert list(groups) == ["stem_conv"] + [
        f"block{b}_pointwise" for b in range(1, 14)
    ]
    assert groups["block3_pointwise"].layers == (
        "block3_pointwise",
        "block3_pointwise_bn",
        "block4_depthwise",
        "block4_depthwise_bn",
    )
    assert groups["block13_pointwise"].channels == 1024
    assert all(g.searchable for g in groups.values())
    named = {layer for g in groups.values() for layer in g.layers}
    assert "predictions" not in named  # The classifier's outputs: fixed.


def test_a_residual_add_links_groups_in_us_mobilenet_v2():
    model = ks.zoo.us_mobilenet_v2(input_shape=(32, 32, 3), classes=10)
    groups = search.channel_groups(model)
    owner = {layer: g.name for g in groups for layer in g.layers}
    # Blocks 3, 5-6, 8-10 add their input (stride 1, same channels): their
    # projections share the group of the block before.
    assert owner["block3_project"] == owner["block2_project"]
    assert owner["block6_project"] == owner["block4_project"]
    assert owner["block10_project"] == owner["block7_project"]
    # Block 4 has stride 2: no add, a group of its own.
    assert owner["block4_project"] != owner["block2_project"]
    # The depthwise conv follows its input, the expansion.
    assert owner["block5_depthwise"] == owner["block5_expand"]
    widest = {g.name: g.channels for g in groups}
    assert widest[owner["block7_project"]] == 64


def test_configuration_macs_equal_profile_at_a_uniform_width():
    model = ks.zoo.us_mobilenet_v1(input_shape=(32, 32, 3), classes=10)
    uniform = {
        layer.name: ScaledChannels(layer.channel_config()[key].full)(0.5)
        for layer in model._slimmable_layers()
        for key in layer.channel_config()
        if not isinstance(layer.channel_config()[key], int)
    }
    assert (
        search.configuration_macs(model, uniform)
        == profile(model, widths=[0.5])[0.5]["macs"]
    )


def test_the_greedy_step_removes_the_group_that_costs_nothing():
    model = tiny()
    # Channels 24..31 of conv b output zeros (zero kernel, gamma and beta),
    # so removing them changes no logit; removing a's last 8 does.
    b, b_bn = model.get_layer("b"), model.get_layer("b_bn")
    b.kernel.assign(
        keras.ops.concatenate(
            [b.kernel[..., :24], 0 * b.kernel[..., 24:]], axis=-1
        )
    )
    b.bias.assign(keras.ops.concatenate([b.bias[:24], 0 * b.bias[24:]]))
    b_bn.gamma.assign(
        keras.ops.concatenate([b_bn.gamma[:24], 0 * b_bn.gamma[24:]])
    )
    b_bn.beta.assign(
        keras.ops.concatenate([b_bn.beta[:24], 0 * b_bn.beta[24:]])
    )
    x = images()
    groups = search.channel_groups(model)
    labels = predictions(model, x, full_channels(model))
    without_a = search.layer_channels(groups, {"a": 8})
    assert np.mean(predictions(model, x, without_a) != labels) > 0
    without_b = search.layer_channels(groups, {"b": 24})
    target = search.configuration_macs(model, without_b)

    (result,) = search.autoslim_search(
        model, (x, labels), [target], divisor=8, verbose=0
    )
    assert result.groups == {"a": 16, "b": 24}
    assert result.channels == without_b
    assert result.error == 0.0
    assert result.macs == target


def test_targets_are_reached_largest_first_at_or_below_each():
    model = tiny()
    x = images()
    labels = np.arange(len(x)) % 10
    full = search.configuration_macs(model, full_channels(model))
    targets = [0.5 * full, 0.9 * full, 0.7 * full]
    results = search.autoslim_search(
        model, (x, labels), targets, divisor=4, verbose=0
    )
    assert [r.target_macs for r in results] == sorted(targets, reverse=True)
    for r in results:
        assert r.macs <= r.target_macs
        assert r.macs == search.configuration_macs(model, r.channels)
        assert r.error == np.mean(predictions(model, x, r.channels) != labels)
    # Each configuration is the previous one with more channels removed.
    for wider, narrower in zip(results, results[1:]):
        assert all(narrower.groups[g] <= wider.groups[g] for g in wider.groups)
        assert narrower.macs < wider.macs
    # Whole groups of `divisor` channels are removed.
    for r in results:
        assert (16 - r.groups["a"]) % 4 == 0
        assert (32 - r.groups["b"]) % 4 == 0


def test_the_search_accepts_batches_and_one_hot_labels():
    model = tiny()
    x = images()
    labels = np.arange(len(x)) % 10
    full = search.configuration_macs(model, full_channels(model))
    expected = search.autoslim_search(model, (x, labels), 0.8 * full, verbose=0)
    batches = [(x, keras.utils.to_categorical(labels, 10)), (x[:1], labels[:1])]
    got = search.autoslim_search(model, batches, 0.8 * full, verbose=0)
    assert got == expected


def test_a_progress_bar_shows_the_macs_and_the_error(capsys):
    model = tiny()
    x = images()
    full = search.configuration_macs(model, full_channels(model))
    (result,) = search.autoslim_search(
        model, (x, np.zeros(len(x), "int32")), [0.7 * full], verbose=1
    )
    shown = capsys.readouterr().out
    assert "100/100" in shown
    assert f"MMACs: {result.macs / 1e6:.4f}" in shown
    assert "error:" in shown


def test_bad_inputs_raise_and_leave_the_model_unchanged():
    model = tiny()
    x = images(8)
    labels = np.zeros(8, "int32")
    full = search.configuration_macs(model, full_channels(model))
    before = weights_of(model)
    cases = [
        ((x, labels), [full + 1], rf"\[\d+, {full}\].*bad: {full + 1}"),
        ((x, labels), [0], r"positive number.*bad: 0"),
        ((x, labels), [-5.0], r"bad: -5.0"),
        ((x, labels), [], r"at least one MACs target"),
        ((x, labels), [1.0], r"narrowest configuration.*bad: 1.0"),
        ([], [0.5 * full], r"held-out data is empty"),
        ((x[:0], labels[:0]), [0.5 * full], r"Received: 0 images"),
    ]
    for data, targets, match in cases:
        with pytest.raises(ValueError, match=match):
            search.autoslim_search(model, data, targets, verbose=0)
    with pytest.raises(ValueError, match=r"divisor=0"):
        search.autoslim_search(model, (x, labels), [0.5 * full], divisor=0)
    for a, b in zip(before, weights_of(model)):
        np.testing.assert_array_equal(a, b)

    fixed = ks.zoo.s_mobilenet_v1(
        widths=(0.25, 1.0), input_shape=(32, 32, 3), classes=10
    )
    with pytest.raises(ValueError, match=r"width_range=None"):
        search.autoslim_search(fixed, (x, labels), [1e6], verbose=0)


def test_the_autoslim_model_profiles_to_each_configuration():
    model = tiny()
    x = images()
    labels = predictions(model, x, full_channels(model))
    full = search.configuration_macs(model, full_channels(model))
    results = search.autoslim_search(
        model, (x, labels), [0.8 * full, 0.5 * full], divisor=4, verbose=0
    )
    autoslim = search.autoslim_model(model, results)
    assert autoslim.widths == (1.0, 2.0)
    assert autoslim.width_range is None
    counts = profile(autoslim)
    assert counts[1.0]["macs"] == results[1].macs
    assert counts[2.0]["macs"] == results[0].macs
    assert autoslim.get_layer("b").filters == (
        results[1].groups["b"],
        results[0].groups["b"],
    )
    assert autoslim.get_layer("dw_bn").channels == (
        results[1].groups["a"],
        results[0].groups["a"],
    )
    # It trains (every switch, one step).
    autoslim.compile(
        "sgd",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        run_eagerly=True,
    )
    history = autoslim.fit(x, labels, batch_size=64, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize("builder", ["us_mobilenet_v1", "us_mobilenet_v2"])
def test_the_autoslim_model_of_us_mobilenets_at_uniform_widths(builder):
    model = getattr(ks.zoo, builder)(input_shape=(32, 32, 3), classes=10)
    configurations = [
        {
            layer.name: value(width)
            for layer in model._slimmable_layers()
            for value in layer.channel_config().values()
            if not isinstance(value, int)
        }
        for width in (0.75, 0.35)
    ]
    autoslim = search.autoslim_model(model, configurations, name="found")
    expected = profile(model, widths=[0.35, 0.75])
    counts = profile(autoslim)
    assert counts[1.0]["macs"] == expected[0.35]["macs"]
    assert counts[2.0]["macs"] == expected[0.75]["macs"]
    assert autoslim.name == "found"


def test_the_autoslim_model_refuses_decreasing_configurations():
    model = tiny()
    groups = search.channel_groups(model)
    wide = search.layer_channels(groups, {"a": 8, "b": 32})
    narrow = search.layer_channels(groups, {"a": 16, "b": 8})
    with pytest.raises(
        ValueError, match=r"Layer '[ab]' would have \((16, 8|32, 8)\)"
    ):
        search.autoslim_model(model, [wide, narrow])
    with pytest.raises(ValueError, match="at least one configuration"):
        search.autoslim_model(model, [])
