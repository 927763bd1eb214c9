"""The private Keras APIs keras-slimmable relies on, one test each.

Keras makes no promise about names outside `keras.*`'s public API; the
package uses a few where Keras offers no public way (see each test for the
usage). Each test checks the name exists and behaves as the package relies
on, so a Keras upgrade that changes one fails here, by name, rather than
somewhere deep in training or materialization.
"""

import inspect
import io
import os
import uuid

import keras
import numpy as np
import pytest


def _small_functional():
    inputs = keras.Input((4,), name="pixels")
    hidden = keras.layers.Dense(3, name="hidden")
    x = hidden(inputs)
    x = keras.layers.ReLU(name="relu")(x)
    outputs = keras.layers.Dense(2, name="head")(x)
    return keras.Model(inputs, outputs, name="small")


# model.py: `_computing_shapes()`.
def test_in_symbolic_scope_is_true_only_while_computing_shapes():
    from keras.src.backend.common.symbolic_scope import in_symbolic_scope

    seen = []

    class Probe(keras.layers.Layer):
        def call(self, inputs):
            seen.append(in_symbolic_scope())
            return inputs

    probe = Probe()
    assert in_symbolic_scope() is False
    probe(np.zeros((2, 3), "float32"))
    assert seen == [False]
    # A call on a symbolic tensor without `compute_output_shape`: Keras
    # traces `call` to learn the output (what `SlimmableModel` must allow
    # without `width=`), inside its symbolic scope.
    probe(keras.KerasTensor((2, 3)))
    assert seen[-1] is True
    with keras.SymbolicScope():
        assert in_symbolic_scope() is True
    assert in_symbolic_scope() is False


# model.py (`_check_layer_widths`), recipes.py (`apply_weight_decay`,
# `set_unbiased_moving_variance`): `Layer._flatten_layers`.
def test_flatten_layers_walks_nested_models_and_sublayers():
    class Holder(keras.layers.Layer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            self.inner = [keras.layers.Dense(2, name="held")]

        def build(self, input_shape):
            self.inner[0].build(input_shape)

        def call(self, inputs):
            return self.inner[0](inputs)

    nested = _small_functional()
    inputs = keras.Input((4,))
    outputs = Holder(name="holder")(nested(inputs))
    model = keras.Model(inputs, outputs, name="outer")
    signature = inspect.signature(model._flatten_layers)
    assert list(signature.parameters)[:2] == ["include_self", "recursive"]

    def names(**kwargs):
        return [layer.name for layer in model._flatten_layers(**kwargs)]

    everything = names(include_self=True, recursive=True)
    assert everything[0] == "outer"
    for name in ("small", "hidden", "relu", "head", "holder", "held"):
        assert name in everything, everything
    assert "outer" not in names(include_self=False)
    top = names(include_self=False, recursive=False)
    assert "small" in top and "holder" in top
    assert "hidden" not in top and "held" not in top


# metrics.py: `WidthMetrics` holds one `CompileMetrics` per width.
def test_compile_metrics_resolves_and_measures_like_compile():
    from keras.src.trainers.compile_utils import CompileMetrics

    metrics = CompileMetrics(["accuracy"], None, output_names=None)
    y_true = np.array([0, 1, 1, 0])
    y_pred = np.array(
        [[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.6, 0.4]], "float32"
    )
    metrics.build(y_true, y_pred)
    assert metrics.built
    metrics.update_state(y_true, y_pred, None)
    result = metrics.result()
    # "accuracy" resolved from the shapes, as `compile` resolves it.
    assert list(result) == ["accuracy"]
    assert float(result["accuracy"]) == pytest.approx(0.75)
    assert [m.name for m in metrics.metrics] == ["accuracy"]
    metrics.reset_state()
    assert float(metrics.result()["accuracy"]) == 0.0


# materialize.py (`_rebuild`) and profiling.py (`layer_calls`):
# `Function._run_through_graph(inputs, operation_fn=...)`.
def test_run_through_graph_calls_operation_fn_once_per_call_in_order():
    inputs = keras.Input((4,), name="pixels")
    shared = keras.layers.Dense(4, name="shared")
    x = shared(inputs)
    x = shared(x)  # one layer, called twice
    outputs = keras.layers.Dense(2, name="head")(x)
    model = keras.Model(inputs, outputs)
    assert (
        "operation_fn" in inspect.signature(model._run_through_graph).parameters
    )

    visited = []

    def operation_fn(operation):
        def run(*args, **kwargs):
            visited.append(operation.name)
            assert isinstance(args[0], keras.KerasTensor)
            return operation.compute_output_spec(*args, **kwargs)

        return run

    new_inputs = keras.Input((4,), batch_size=5)
    result = model._run_through_graph(new_inputs, operation_fn=operation_fn)
    assert visited == ["shared", "shared", "head"]
    assert tuple(result.shape) == (5, 2)

    # A nested functional model is one operation (the package walks into
    # it itself, recognising it by this method).
    nested = _small_functional()
    outer_inputs = keras.Input((4,))
    outer = keras.Model(outer_inputs, nested(outer_inputs))
    assert hasattr(nested, "_run_through_graph")
    visited.clear()
    outer._run_through_graph(new_inputs, operation_fn=operation_fn)
    assert visited == ["small"]

    # Values flow through whatever `run` returns.
    def doubled(operation):
        return lambda *args, **kwargs: operation(*args, **kwargs) * 2.0

    # Each of the three calls doubles (Dense without bias is linear).
    x = np.ones((1, 4), "float32")
    for layer in (shared, model.get_layer("head")):
        layer.bias.assign(np.zeros(layer.bias.shape, "float32"))
    expected = keras.ops.convert_to_numpy(model(x)) * 8.0
    actual = model._run_through_graph(x, operation_fn=doubled)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(actual), expected, rtol=1e-5
    )


# zoo/weights.py (`cache_dir`): Keras's home when KERAS_HOME is unset.
def test_keras_home_is_where_get_file_caches(tmp_path):
    from keras.src.backend.config import keras_home

    home = keras_home()
    assert isinstance(home, str) and home
    source = tmp_path / "payload.txt"
    source.write_text("payload")
    subdir = f"keras_slimmable_private_api_{uuid.uuid4().hex}"
    path = keras.utils.get_file(
        "payload.txt", origin=source.as_uri(), cache_subdir=subdir
    )
    try:
        assert os.path.dirname(path) == os.path.join(home, subdir)
    finally:
        os.remove(path)
        os.rmdir(os.path.dirname(path))


# trainers/jax.py: the forward pass's `add_loss` losses, given back to
# `model.losses` while the loss is computed (as Keras's JAX trainer does).
def test_losses_override_replaces_model_losses():
    model = _small_functional()
    assert model.losses == []
    extra = keras.ops.convert_to_tensor(3.0)
    model._losses_override = [extra]
    try:
        assert len(model.losses) == 1
        assert float(keras.ops.convert_to_numpy(model.losses[0])) == 3.0
    finally:
        model._losses_override = []
    assert model.losses == []


# trainers/base.py and model.py: Keras's trainer state read by the
# per-width losses and logs.
def test_trainer_private_attributes():
    model = _small_functional()
    assert model._compile_loss is None  # `_check_compiled_loss`
    model.compile(
        "sgd",
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    x = np.ones((2, 4), "float32")
    y = np.array([0, 1])
    y_pred = model(x)
    data_loss = model._compile_loss(y, y_pred, None)
    expected = model.loss(y, y_pred)
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(data_loss),
        keras.ops.convert_to_numpy(expected),
        rtol=1e-6,
    )
    parameters = inspect.signature(model._compute_loss).parameters
    for name in ("x", "y", "y_pred", "sample_weight", "training"):
        assert name in parameters, name
    loss = model._compute_loss(
        x=x, y=y, y_pred=y_pred, sample_weight=None, training=False
    )
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(loss),
        keras.ops.convert_to_numpy(expected),
        rtol=1e-6,
    )
    summed = model._aggregate_additional_loss(keras.ops.ones((3,)))
    assert float(keras.ops.convert_to_numpy(summed)) == 3.0
    # `fit` logs `_loss_tracker` as "loss" and reads the compiled metrics
    # through `model.metrics`, which `SlimmableModel.compile` replaces.
    assert isinstance(model._loss_tracker, keras.metrics.Mean)
    assert model.metrics[0] is model._loss_tracker
    assert model.metrics[1] is model._compile_metrics
    model._loss_tracker.update_state(2.0)
    model._compile_metrics.build(y, y_pred)
    assert float(model.get_metrics_result()["loss"]) == 2.0


# callbacks.py: `CompactProgbarLogger` overrides `ProgbarLogger`'s hooks.
def test_progbar_logger_hooks():
    calls = []

    class Recorder(keras.callbacks.ProgbarLogger):
        def _maybe_init_progbar(self):
            calls.append(("init", self.target, self.verbose))

        def _update_progbar(self, batch, logs=None):
            calls.append(("update", batch, sorted(logs or {})))

        def _finalize_progbar(self, logs):
            calls.append(("finalize", sorted(logs or {})))

    assert keras.callbacks.ProgbarLogger().progbar is None
    model = _small_functional()
    model.compile("sgd", "mse")
    x = np.ones((6, 4), "float32")
    y = np.zeros((6, 2), "float32")
    model.fit(x, y, batch_size=3, epochs=1, verbose=1, callbacks=[Recorder()])
    updates = [c for c in calls if c[0] == "update"]
    assert [c[1] for c in updates] == [0, 1]
    assert updates[0][2] == ["loss"]
    assert calls[-1] == ("finalize", ["loss"])
    assert ("init", 2, 1) in calls


# callbacks.py: `_Line` prints through Keras's `print_msg`.
def test_print_msg_writes_to_stdout(monkeypatch):
    from keras.src.utils import io_utils

    assert "line_break" in inspect.signature(io_utils.print_msg).parameters
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    io_utils.print_msg("abc", line_break=False)
    io_utils.print_msg("def")
    assert out.getvalue() == "abcdef\n"


# materialize.py (`fold_batch_norms`): `Functional._nodes_by_depth` lists
# every call in the graph with its input tensors, and a tensor's
# `_keras_history.operation` is the layer that produced it.
def test_nodes_by_depth_and_keras_history_describe_the_graph():
    inputs = keras.Input((4, 4, 3), name="pixels")
    conv = keras.layers.Conv2D(2, 1, name="conv")
    batch_norm = keras.layers.BatchNormalization(name="bn")
    x = conv(inputs)
    outputs = batch_norm(x)
    model = keras.Model(inputs, outputs)
    nodes = [n for depth in model._nodes_by_depth.values() for n in depth]
    by_operation = {
        node.operation.name: node
        for node in nodes
        if node.operation is not None
    }
    assert {"conv", "bn"} <= set(by_operation)
    (tensor,) = by_operation["bn"].input_tensors
    assert tensor is x
    assert tensor._keras_history.operation is conv


# layers/normalization.py: `UniversalBatchNormalization.add_calibrated_width`
# adds statistics to a built layer, `drop_calibrated_width` removes them.
def test_tracker_unlock_and_untrack_variable_add_and_remove_state():
    layer = keras.layers.Dense(2)
    layer.build((None, 3))
    with pytest.raises(ValueError, match="already built"):
        layer.add_weight(shape=(2,), name="late")
    layer._tracker.unlock()
    try:
        late = layer.add_weight(shape=(2,), name="late", trainable=False)
    finally:
        layer._tracker.lock()
    assert any(v is late for v in layer.non_trainable_variables)
    assert len(layer.weights) == 3
    layer._untrack_variable(late)
    assert all(v is not late for v in layer.weights)
    assert len(layer.weights) == 2
    assert layer._tracker.locked
