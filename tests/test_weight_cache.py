"""Eager inference reads cached weight slices, and they are never stale.

The reference for every output here is the model's graph-slicing path
(`_inference_function(active width)`, the code training runs), called on
the same weights; the cache must agree with it exactly, after every way of
writing the weights.
"""

import threading

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_slimmable as ks
from keras_slimmable.trainers import weight_cache

WIDTHS = (0.25, 0.5, 0.75, 1.0)


@pytest.fixture(autouse=True)
def cache_every_slice(monkeypatch):
    # These models are small: cache every slice, however small.
    monkeypatch.setattr(weight_cache, "MIN_CACHED_ELEMENTS", 0)


def build_model(split_inputs=True, seed=0):
    """Every slimmable layer that slices, grouped conv (both ways) too."""
    keras.utils.set_random_seed(seed)

    def channels(c):
        return ks.scale_channels(c, WIDTHS)

    inputs = keras.Input((12, 12, 3))
    x = ks.SlimmableConv2D(channels(16), 3, strides=2, padding=1)(inputs)
    x = ks.SwitchableBatchNormalization(channels(16))(x)
    x = keras.layers.ReLU()(x)
    x = ks.SlimmableDepthwiseConv2D(3, padding=1, channels=channels(16))(x)
    x = ks.SlimmableGroupedConv2D(
        channels(16), 1, groups=4, split_inputs=split_inputs
    )(x)
    x = ks.SwitchableBatchNormalization(channels(16))(x)
    x = ks.SlimmableConv2D(channels(24), 1, use_bias=False)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = ks.SlimmableDense(5)(x)
    return ks.SlimmableModel(inputs, outputs, widths=WIDTHS)


def images(n=4, seed=1):
    return (
        np.random.default_rng(seed)
        .normal(size=(n, 12, 12, 3))
        .astype("float32")
    )


def graph_slicing(model, x, width):
    """The output of the uncached path: slices taken in the graph."""
    active = model._active_width(width)
    return np.asarray(model._inference_function(active)(tf.constant(x)))


def assert_matches_graph_slicing(model, x):
    for width in model.widths:
        eager = np.asarray(model(x, width=width))
        np.testing.assert_array_equal(eager, graph_slicing(model, x, width))


def cache_of(model):
    return model._functions.weights


@pytest.mark.parametrize("split_inputs", [True, False])
def test_eager_inference_reads_the_cache_and_equals_graph_slicing(
    split_inputs,
):
    model = build_model(split_inputs)
    x = images()
    assert_matches_graph_slicing(model, x)
    cache = cache_of(model)
    assert cache.enabled
    for index in range(len(WIDTHS) - 1):  # every narrower width's slices
        assert len(cache._used[index]) >= 5, index


def test_zoo_model_matches_its_materialized_model():
    model = ks.zoo.s_mobilenet_v2(input_shape=(32, 32, 3), classes=10)
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3)).astype("f4")
    for width in model.widths:
        plain = model.materialize(width)
        np.testing.assert_allclose(
            model(x, width=width), plain(x), rtol=1e-5, atol=1e-5
        )
    assert cache_of(model)._entries


def _assign(model):
    kernel = model.layers[1].kernel
    kernel.assign(kernel * 0.5 + 0.1)


def _assign_add(model):
    for weight in model.trainable_weights:
        weight.assign_add(tf.fill(weight.shape, 0.01))


def _set_weights(model):
    model.set_weights([w * 1.5 for w in model.get_weights()])


def _load_weights(model, tmp_path):
    other = build_model(seed=7)
    path = str(tmp_path / "other.weights.h5")
    other.save_weights(path)
    model.load_weights(path)


def _optimizer_apply(model):
    optimizer = keras.optimizers.SGD(0.1)
    grads = [tf.ones_like(v) for v in model.trainable_variables]
    optimizer.apply(grads, model.trainable_variables)


def _custom_loop(model):
    # A user's own training step, compiled, with a different optimizer.
    optimizer = keras.optimizers.Adam(0.05)
    x, y = images(8), np.arange(8) % 5

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            logits = model(x, training=True, width=0.5)
            loss = tf.reduce_mean(
                keras.losses.sparse_categorical_crossentropy(
                    y, logits, from_logits=True
                )
            )
        variables = model.trainable_variables
        optimizer.apply(tape.gradient(loss, variables), variables)

    for _ in range(2):
        step()


def _fit(model):
    model.compile(keras.optimizers.SGD(0.1), "mse")
    model.fit(images(8), np.ones((8, 5)), epochs=1, verbose=0)


WRITES = {
    "assign": _assign,
    "assign_add": _assign_add,
    "set_weights": _set_weights,
    "load_weights": _load_weights,
    "optimizer_apply": _optimizer_apply,
    "custom_training_loop": _custom_loop,
    "fit": _fit,
}


@pytest.mark.filterwarnings("ignore:Gradients do not exist")  # one width
@pytest.mark.parametrize("write", sorted(WRITES))
def test_every_way_of_writing_the_weights_reaches_eager_inference(
    write, tmp_path
):
    model = build_model()
    x = images()
    before = [np.asarray(model(x, width=w)) for w in WIDTHS]
    function = WRITES[write]
    if write == "load_weights":
        function(model, tmp_path)
    else:
        function(model)
    assert_matches_graph_slicing(model, x)
    after = np.asarray(model(x, width=0.25))
    assert not np.allclose(after, before[0]), "the write changed nothing"
    assert cache_of(model).enabled


def test_the_cache_is_not_part_of_the_model(tmp_path):
    model = build_model()
    names = sorted(v.path for v in model.weights)
    checkpoint = tf.train.Checkpoint(model=model)
    before = tf.train.list_variables(checkpoint.write(str(tmp_path / "a")))
    for width in WIDTHS:
        model(images(), width=width)
    assert sorted(v.path for v in model.weights) == names
    assert cache_of(model)._entries
    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert sorted(v.path for v in loaded.weights) == names
    for width in WIDTHS:
        np.testing.assert_array_equal(
            loaded(images(), width=width), model(images(), width=width)
        )
    after = tf.train.list_variables(checkpoint.write(str(tmp_path / "b")))
    assert after == before


def test_addresses_that_never_settle_switch_the_cache_off(monkeypatch):
    model = build_model()
    x = images()
    counter = iter(range(10**9))
    monkeypatch.setattr(weight_cache, "_address", lambda t: next(counter))
    assert_matches_graph_slicing(model, x)
    assert not cache_of(model).enabled
    assert_matches_graph_slicing(model, x)


def test_fit_releases_the_snapshots():
    model = build_model()
    model(images(), width=0.25)
    cache = cache_of(model)
    assert all(e.addresses is not None for e in cache._entries.values())
    _fit(model)
    assert all(e.addresses is None for e in cache._entries.values())
    assert_matches_graph_slicing(model, images())


def test_mixed_precision_outputs_match_graph_slicing():
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = build_model()
        x = images()
        for width in WIDTHS:
            eager = model(x, width=width)
            assert eager.dtype == tf.float16
            np.testing.assert_array_equal(
                np.asarray(eager), graph_slicing(model, x, width)
            )
        assert cache_of(model).enabled and cache_of(model)._entries
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_threads_reading_while_another_writes_see_a_whole_state():
    """Each output equals the graph-slicing output at one of the weight
    states the writer went through, never a mixture."""
    model = build_model()
    x = images(2)
    kernel = model.layers[1].kernel
    states = [np.asarray(kernel.value)]
    for k in range(1, 6):
        states.append(states[0] * (1 + k))
    expected = []
    for state in states:
        kernel.assign(state)
        expected.append(graph_slicing(model, x, 0.5))
    kernel.assign(states[0])
    model(x, width=0.5)
    results, errors = [], []

    def reader():
        try:
            for _ in range(20):
                results.append(np.asarray(model(x, width=0.5)))
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)

    def writer():
        for state in states[1:] * 4:
            kernel.assign(state)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    threads.append(threading.Thread(target=writer))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for result in results:
        assert any(np.array_equal(result, e) for e in expected)


def test_the_cache_can_be_turned_off():
    model = build_model(True)
    x = images()
    assert model.cache_weight_slices is True
    model.cache_weight_slices = False
    assert_matches_graph_slicing(model, x)
    assert not cache_of(model)._entries  # nothing was copied
    # Weights written afterwards are seen: there is no copy to go stale.
    _assign(model)
    assert_matches_graph_slicing(model, x)
    model.cache_weight_slices = True
    assert_matches_graph_slicing(model, x)
    assert cache_of(model)._entries
    with pytest.raises(ValueError, match="cache_weight_slices='no'"):
        model.cache_weight_slices = "no"
