"""A slimmable fully connected layer."""

import math

import keras
from keras import ops

from keras_slimmable.layers import plain
from keras_slimmable.layers.base import CheckpointWeight
from keras_slimmable.layers.base import SlimmableLayer
from keras_slimmable.layers.base import channels_at
from keras_slimmable.layers.base import config_channels
from keras_slimmable.layers.base import mask_sampled
from keras_slimmable.layers.base import max_channels
from keras_slimmable.layers.base import standardize_channels
from keras_slimmable.layers.base import weight_arguments_config
from keras_slimmable.layers.base import weight_prefix


@keras.saving.register_keras_serializable(package="keras_slimmable")
class SlimmableDense(SlimmableLayer):
    """A dense layer over the leading features of the active width.

    The kernel is held at full width, `(max_in, max(units))`. At a narrower
    width the layer uses the rows of its input's features and the columns
    of `units[i]`. A classifier head keeps `units` a single int, so only
    its input is sliced.

    Args:
        units: the output features, one int per width (ascending), or a
            single int when the output does not change with width.
        activation: applied to the output. Defaults to `None`.
        use_bias: whether to add a bias. Defaults to `True`.
        kernel_initializer, bias_initializer, kernel_regularizer,
        bias_regularizer, kernel_constraint, bias_constraint: as for
            `keras.layers.Dense`.
    """

    def __init__(
        self,
        units,
        activation=None,
        use_bias=True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.units = standardize_channels(units, "units")
        self.activation = keras.activations.get(activation)
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)

    def build(self, input_shape):
        features = input_shape[-1]
        if features is None:
            raise ValueError(
                f"Layer '{self.name}' needs a known number of input features."
                f" Received input_shape={input_shape}"
            )
        self.kernel = self.add_weight(
            name="kernel",
            shape=(features, max_channels(self.units)),
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        self.bias = None
        if self.use_bias:
            self.bias = self.add_weight(
                name="bias",
                shape=(max_channels(self.units),),
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )

    def call(self, inputs):
        features = inputs.shape[-1]
        kernel_in = self.kernel.shape[0]
        if features is None or features > kernel_in:
            raise ValueError(
                f"Layer '{self.name}' was built for at most {kernel_in} input "
                f"features. Received an input with {features}."
            )
        units = channels_at(self.units, self.name)
        kernel = weight_prefix(self, "kernel", self.kernel, (features, units))
        outputs = ops.matmul(inputs, kernel)
        if self.bias is not None:
            bias = weight_prefix(self, "bias", self.bias, (units,))
            outputs = ops.add(outputs, bias)
        if self.activation is not None:
            outputs = self.activation(outputs)
        return mask_sampled(outputs, self.units)

    def compute_output_shape(self, input_shape):
        units = channels_at(self.units, self.name)
        return tuple(input_shape[:-1]) + (units,)

    def channel_config(self):
        return {"units": self.units}

    def count(self, input_shape, output_shape, width):
        units = output_shape[-1]
        kernel = input_shape[-1] * units
        return {
            "macs": math.prod(output_shape[1:-1]) * kernel,
            "conv_fc_params": kernel + (units if self.use_bias else 0),
            "bn_affine_params": 0,
        }

    def decayed_kernels(self):
        return [("kernel_regularizer", "kernel")]

    def checkpoint_weights(self):
        weights = [CheckpointWeight(self.kernel, "dense_kernel", None)]
        if self.bias is not None:
            weights.append(CheckpointWeight(self.bias, "bias", None))
        return weights

    def plain_equivalent(self, inputs, width, **kwargs):
        features = inputs.shape[-1]
        units = channels_at(self.units, self.name, width)
        dense = keras.layers.Dense(
            units,
            name=self.name,
            dtype=self.dtype_policy,
            trainable=self.trainable,
            **weight_arguments_config(self),
        )
        weights = [plain.numpy_value(self.kernel)[:features, :units]]
        if self.use_bias:
            weights.append(plain.numpy_value(self.bias)[:units])
        return plain.build_and_copy(
            plain.chain(dense), inputs, [(dense, weights)]
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": config_channels(self.units),
            }
        )
        config.update(weight_arguments_config(self))
        return config
