"""The slimmable-layer protocol (`keras_slimmable.layers.SlimmableLayer`).

A new slimmable layer type, defined here in the test file only, works with
`SlimmableModel`, `materialize`, `profile` and `apply_weight_decay` without
any change elsewhere: what issue 11 asks of the protocol ("adding a new
slimmable layer type touches one file plus its tests").
"""

import inspect
import math

import keras
import numpy as np
import pytest

import keras_slimmable
from keras_slimmable import layers as slimmable_layers
from keras_slimmable import recipes
from keras_slimmable.layers import CheckpointWeight
from keras_slimmable.layers import SlimmableLayer
from keras_slimmable.layers.base import channels_at
from keras_slimmable.layers.base import config_channels
from keras_slimmable.layers.base import standardize_channels
from keras_slimmable.layers.base import weight_prefix


class SlimmableChannelScale(SlimmableLayer):
    """A learned scale per channel (a 1x1 depthwise convolution without
    bias), sliced to the active width: the new layer type of this test."""

    def __init__(self, channels, **kwargs):
        super().__init__(**kwargs)
        self.channels = standardize_channels(
            channels, "channels", allow_int=False
        )

    def build(self, input_shape):
        self.kernel = self.add_weight(
            name="kernel",
            shape=(1, 1, input_shape[-1], 1),
            initializer="random_normal",
        )
        self.kernel_regularizer = None

    def call(self, inputs):
        channels = channels_at(self.channels, self.name)
        kernel = weight_prefix(self, "kernel", self.kernel, (1, 1, channels, 1))
        return inputs * keras.ops.reshape(kernel, (channels,))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config["channels"] = config_channels(self.channels)
        return config

    def channel_config(self):
        return {"channels": self.channels}

    def plain_equivalent(self, inputs, width, **kwargs):
        channels = inputs.shape[-1]
        layer = keras.layers.DepthwiseConv2D(1, use_bias=False, name=self.name)
        outputs = layer(inputs)
        kernel = keras.ops.convert_to_numpy(self.kernel)[:, :, :channels]
        layer.set_weights([kernel])
        return outputs, layer

    def count(self, input_shape, output_shape, width):
        channels = input_shape[-1]
        return {
            "macs": math.prod(output_shape[1:]),
            "conv_fc_params": channels,
            "bn_affine_params": 0,
        }

    def decayed_kernels(self):
        return [("kernel_regularizer", "kernel")]

    def checkpoint_weights(self):
        return [CheckpointWeight(self.kernel, "depthwise_kernel", None)]


def _model(widths=(0.5, 1.0), scale_channels=(4, 8)):
    inputs = keras.Input((6, 6, 3))
    x = slimmable_layers.SlimmableConv2D((4, 8), 3, padding=1, name="conv")(
        inputs
    )
    x = SlimmableChannelScale(scale_channels, name="scale")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = slimmable_layers.SlimmableDense(5, name="head")(x)
    return keras_slimmable.SlimmableModel(inputs, outputs, widths=widths)


def test_every_exported_layer_implements_the_protocol():
    exported = [
        getattr(slimmable_layers, name) for name in slimmable_layers.__all__
    ]
    layer_types = [
        value
        for value in exported
        if inspect.isclass(value) and issubclass(value, keras.layers.Layer)
    ]
    assert len(layer_types) >= 6
    for layer_type in layer_types:
        assert issubclass(layer_type, SlimmableLayer), layer_type


def test_a_new_layer_type_is_checked_against_the_model_widths():
    with pytest.raises(ValueError, match="'scale' has channels=\\(2, 4, 8\\)"):
        _model(scale_channels=(2, 4, 8))


def test_a_new_layer_type_materializes():
    model = _model()
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 3)).astype("float32")
    for width in model.widths:
        plain = model.materialize(width)
        assert not any(
            isinstance(layer, SlimmableLayer) for layer in plain.layers
        )
        np.testing.assert_allclose(
            plain(x), model(x, width=width), rtol=1e-5, atol=1e-6
        )


def test_a_new_layer_type_is_profiled():
    counts = keras_slimmable.profile(_model())
    # Independent count: conv 6*6*3*3*3*c + bias c, scale 6*6*c MACs and
    # c parameters, pooling 6*6*c, head c*5 + 5.
    for width, c in ((0.5, 4), (1.0, 8)):
        conv = 6 * 6 * 9 * 3 * c
        expected_macs = conv + 36 * c + 36 * c + 5 * c
        expected_params = (27 * c + c) + c + (5 * c + 5)
        assert counts[width]["macs"] == expected_macs
        assert counts[width]["conv_fc_params"] == expected_params


def test_a_new_layer_type_takes_weight_decay():
    model = _model()
    decayed = recipes.apply_weight_decay(model, 1e-4)
    assert any(path.startswith("scale/") for path in decayed), decayed
    assert model.get_layer("scale").kernel.regularizer is not None


def test_the_protocol_defaults_name_the_missing_method():
    class Incomplete(SlimmableLayer):
        def call(self, inputs):
            return inputs

    layer = Incomplete(name="incomplete")
    with pytest.raises(NotImplementedError, match="'incomplete'.*Incomplete"):
        layer.plain_equivalent(keras.KerasTensor((1, 3)), None)
    assert layer.decayed_kernels() == []
    assert layer.checkpoint_weights() == []
    assert layer.channel_config() == {}
    assert layer.count((1, 3), (1, 3), None)["macs"] == 0

    class Weighted(Incomplete):
        def build(self, input_shape):
            self.scale = self.add_weight(shape=(input_shape[-1],))

    weighted = Weighted(name="weighted")
    weighted.build((1, 3))
    for method, args in (
        ("count", ((1, 3), (1, 3), None)),
        ("checkpoint_weights", ()),
    ):
        with pytest.raises(NotImplementedError, match=f"'weighted'.*{method}"):
            getattr(weighted, method)(*args)


def test_a_new_layer_type_loads_reference_checkpoints():
    from keras_slimmable.convert.reference import load_reference_checkpoint

    model = _model()
    rng = np.random.default_rng(3)
    # PyTorch layouts: conv (O, I, kh, kw), depthwise (C, 1, kh, kw),
    # dense (O, I).
    state = {
        "features.0.weight": rng.normal(size=(8, 3, 3, 3)),
        "features.0.bias": rng.normal(size=(8,)),
        "features.1.weight": rng.normal(size=(8, 1, 1, 1)),
        "classifier.weight": rng.normal(size=(5, 8)),
        "classifier.bias": rng.normal(size=(5,)),
    }
    state = {k: v.astype("float32") for k, v in state.items()}
    key_map = {
        "conv": "features.0",
        "scale": "features.1",
        "head": "classifier",
    }
    load_reference_checkpoint(model, state, key_map=key_map)
    scale = keras.ops.convert_to_numpy(model.get_layer("scale").kernel)
    np.testing.assert_array_equal(
        scale[0, 0, :, 0], state["features.1.weight"][:, 0, 0, 0]
    )
    conv = keras.ops.convert_to_numpy(model.get_layer("conv").kernel)
    np.testing.assert_array_equal(
        conv, state["features.0.weight"].transpose(2, 3, 1, 0)
    )
