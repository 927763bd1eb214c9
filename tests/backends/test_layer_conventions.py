"""Keras's own layer checks, `run_layer_test`, on every slimmable layer.

`keras.src.testing.TestCase` is private Keras API; it is what Keras tests
its own layers with (config and `.keras` round trips, symbolic and eager
calls, `compute_output_shape`, weight counts, training, mixed precision).
If Keras moves it, the import below fails and so does this file.
"""

import keras
import numpy as np
import pytest
from keras.src.testing import TestCase  # private: see the module docstring

import keras_slimmable as ks
from keras_slimmable.widths import width_scope


class SlimmableLayersTest(TestCase):
    def test_conv2d(self):
        self.run_layer_test(
            ks.SlimmableConv2D,
            init_kwargs={"filters": (4, 8), "kernel_size": 3, "padding": 1},
            input_shape=(2, 9, 9, 3),
            expected_output_shape=(2, 9, 9, 8),
            expected_num_trainable_weights=2,
            expected_num_non_trainable_weights=0,
            supports_masking=False,
        )

    def test_conv2d_strided_valid(self):
        self.run_layer_test(
            ks.SlimmableConv2D,
            init_kwargs={
                "filters": (2, 6),
                "kernel_size": 3,
                "strides": 2,
                "dilation_rate": 1,
                "use_bias": False,
            },
            input_shape=(2, 10, 11, 3),
            expected_output_shape=(2, 4, 5, 6),
            expected_num_trainable_weights=1,
            supports_masking=False,
        )

    def test_grouped_conv2d(self):
        self.run_layer_test(
            ks.SlimmableGroupedConv2D,
            init_kwargs={
                "filters": (6, 12),
                "kernel_size": 1,
                "groups": 3,
            },
            input_shape=(2, 5, 5, 6),
            expected_output_shape=(2, 5, 5, 12),
            expected_num_trainable_weights=2,
            supports_masking=False,
        )

    def test_depthwise_conv2d(self):
        self.run_layer_test(
            ks.SlimmableDepthwiseConv2D,
            init_kwargs={"kernel_size": 3, "strides": 2, "padding": 1},
            input_shape=(2, 9, 9, 4),
            expected_output_shape=(2, 5, 5, 4),
            expected_num_trainable_weights=2,
            supports_masking=False,
        )

    def test_dense(self):
        self.run_layer_test(
            ks.SlimmableDense,
            init_kwargs={"units": (3, 5)},
            input_shape=(2, 4),
            expected_output_shape=(2, 5),
            expected_num_trainable_weights=2,
            supports_masking=False,
        )

    def test_switchable_batch_normalization(self):
        self.run_layer_test(
            ks.SwitchableBatchNormalization,
            init_kwargs={"channels": (2, 4)},
            input_shape=(2, 3, 3, 4),
            expected_output_shape=(2, 3, 3, 4),
            expected_num_trainable_weights=4,
            expected_num_non_trainable_weights=4,
            supports_masking=True,
        )


@pytest.mark.parametrize(
    "layer, input_shape",
    [
        (ks.SlimmableConv2D((4, 8), 3, strides=2, padding=1), (2, 7, 7, 3)),
        (ks.SlimmableConv2D((4, 8), 3, padding="same"), (2, 7, 6, 3)),
        (ks.SlimmableConv2D((4, 8), (3, 1), dilation_rate=2), (2, 9, 9, 3)),
        (ks.SlimmableGroupedConv2D((6, 12), 3, 3, strides=2), (2, 9, 8, 6)),
        (ks.SlimmableDepthwiseConv2D(5, padding=2), (2, 8, 8, 4)),
    ],
)
def test_compute_output_shape_equals_the_call_at_every_width(
    layer, input_shape
):
    layer.build(input_shape)
    for index, channels_in in enumerate(
        (input_shape[-1] // 2, input_shape[-1])
    ):
        shape = input_shape[:-1] + (channels_in,)
        with width_scope(index):
            outputs = layer(np.zeros(shape, "float32"))
            assert layer.compute_output_shape(shape) == tuple(outputs.shape)


def test_time_distributed_conv():
    # Issue 11: TimeDistributed needs compute_output_shape.
    layer = keras.layers.TimeDistributed(ks.SlimmableConv2D((2, 4), 3))
    outputs = layer(np.zeros((2, 3, 6, 6, 1), "float32"))
    assert tuple(outputs.shape) == (2, 3, 4, 4, 4)
    assert layer.compute_output_shape((2, 3, 6, 6, 1)) == (2, 3, 4, 4, 4)
