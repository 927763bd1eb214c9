"""Switchable batch normalization: private statistics for every width."""

import keras
from keras import ops

from keras_slimmable.layers import plain
from keras_slimmable.layers.base import CheckpointWeight
from keras_slimmable.layers.base import SlimmableLayer
from keras_slimmable.layers.base import channels_at
from keras_slimmable.layers.base import standardize_channels
from keras_slimmable.layers.base import zero_counts
from keras_slimmable.widths import active_width


@keras.saving.register_keras_serializable(package="keras_slimmable")
class SwitchableBatchNormalization(SlimmableLayer):
    """Batch normalization with one independent batch norm per width.

    Feature statistics differ between widths, so a slimmable network keeps a
    private `keras.layers.BatchNormalization` for every width (gamma, beta,
    moving mean and moving variance of that width's channel count). At call
    time only the active width's batch norm runs, and in training only its
    moving statistics move. This is what makes slimmable networks work, at a
    cost below 1% of the parameters (Yu et al., ICLR 2019).

    With `shared=True` the layer is the paper's failing baseline instead:
    one batch norm of the widest channel count, whose leading channels every
    width uses and updates.

    Keras updates the moving variance with the batch's biased variance
    (divided by n), PyTorch with the unbiased one (divided by n - 1, n the
    values per channel in the batch). `unbiased_moving_variance=True` takes
    PyTorch's convention, as the reference implementation was trained; the
    batch is normalized with the biased variance either way, in both
    frameworks. Set it before the model is first called in training.

    Args:
        channels: the channel count per width (ascending), one per width of
            the model.
        momentum: momentum of the moving averages; PyTorch's momentum `m`
            is Keras's `1 - m`. Defaults to `0.99`.
        epsilon: added to the variance. Defaults to `1e-3`.
        center: whether to learn a beta offset. Defaults to `True`.
        scale: whether to learn a gamma scale. Defaults to `True`.
        shared: one batch norm shared by every width (the naive baseline).
            Defaults to `False`.
        unbiased_moving_variance: update the moving variance with the
            unbiased batch variance, as PyTorch does. Defaults to `False`
            (Keras's convention).
        beta_initializer, gamma_initializer, moving_mean_initializer,
        moving_variance_initializer, beta_regularizer, gamma_regularizer,
        beta_constraint, gamma_constraint: as for
            `keras.layers.BatchNormalization`.

    Only the last axis is normalized (channels last).
    """

    _BATCH_NORM_ARGUMENTS = (
        "momentum",
        "epsilon",
        "center",
        "scale",
        "beta_initializer",
        "gamma_initializer",
        "moving_mean_initializer",
        "moving_variance_initializer",
        "beta_regularizer",
        "gamma_regularizer",
        "beta_constraint",
        "gamma_constraint",
    )

    def __init__(
        self,
        channels,
        momentum=0.99,
        epsilon=1e-3,
        center=True,
        scale=True,
        shared=False,
        unbiased_moving_variance=False,
        beta_initializer="zeros",
        gamma_initializer="ones",
        moving_mean_initializer="zeros",
        moving_variance_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.channels = standardize_channels(
            channels, "channels", allow_int=False, allow_rule=False
        )
        self.shared = bool(shared)
        self.unbiased_moving_variance = bool(unbiased_moving_variance)
        arguments = dict(
            momentum=momentum,
            epsilon=epsilon,
            center=center,
            scale=scale,
            beta_initializer=beta_initializer,
            gamma_initializer=gamma_initializer,
            moving_mean_initializer=moving_mean_initializer,
            moving_variance_initializer=moving_variance_initializer,
            beta_regularizer=beta_regularizer,
            gamma_regularizer=gamma_regularizer,
            beta_constraint=beta_constraint,
            gamma_constraint=gamma_constraint,
        )
        count = 1 if self.shared else len(self.channels)
        self.batch_norms = [
            keras.layers.BatchNormalization(
                axis=-1,
                dtype=self.dtype_policy,
                name="shared" if self.shared else f"width_{i}",
                **arguments,
            )
            for i in range(count)
        ]
        self.supports_masking = True

    @property
    def momentum(self):
        return self.batch_norms[0].momentum

    @property
    def epsilon(self):
        return self.batch_norms[0].epsilon

    def build(self, input_shape):
        if input_shape[-1] is not None and input_shape[-1] > self.channels[-1]:
            raise ValueError(
                f"Layer '{self.name}' has at most {self.channels[-1]} channels "
                f"(channels={self.channels}). Received input_shape="
                f"{input_shape}"
            )
        leading = tuple(input_shape[:-1])
        if self.shared:
            self.batch_norms[0].build(leading + (self.channels[-1],))
        else:
            for batch_norm, count in zip(self.batch_norms, self.channels):
                batch_norm.build(leading + (count,))

    def call(self, inputs, training=None, mask=None):
        channels = inputs.shape[-1]
        expected = channels_at(self.channels, self.name)
        if channels != expected:
            raise ValueError(
                f"Layer '{self.name}' expects {expected} channels at the "
                f"active width (channels={self.channels}). Received an input "
                f"with {channels} channels."
            )
        if self.shared:
            return self._prefix_call(
                self.batch_norms[0], inputs, channels, training
            )
        batch_norm = self._batch_norm_at(active_width())
        if self.unbiased_moving_variance and training and self.trainable:
            if mask is not None:
                raise ValueError(
                    f"Layer '{self.name}': unbiased_moving_variance=True "
                    "does not support masked inputs."
                )
            return self._prefix_call(batch_norm, inputs, channels, training)
        return batch_norm(inputs, training=training, mask=mask)

    def _prefix_call(self, batch_norm, inputs, channels, training):
        """Batch norm over the leading `channels` of `batch_norm`.

        The naive baseline's call (one batch norm, every width a prefix of
        it), and the training call with PyTorch's moving variance.
        """
        compute_dtype = inputs.dtype
        if compute_dtype in ("float16", "bfloat16"):
            inputs = ops.cast(inputs, "float32")
        moving_mean = batch_norm.moving_mean
        moving_variance = batch_norm.moving_variance
        if training and self.trainable:
            axes = list(range(len(inputs.shape) - 1))
            mean, variance = ops.moments(inputs, axes=axes)
            moving_variance_update = variance
            if self.unbiased_moving_variance:
                shape = ops.shape(inputs)
                count = ops.cast(ops.prod([shape[a] for a in axes]), "float32")
                # n / (n - 1); a batch of one value per channel keeps the
                # biased variance (PyTorch's would be infinite).
                correction = count / ops.maximum(count - 1.0, 1.0)
                moving_variance_update = variance * correction
            m = batch_norm.momentum
            for variable, value in (
                (moving_mean, mean),
                (moving_variance, moving_variance_update),
            ):
                updated = variable[:channels] * m + value * (1.0 - m)
                if channels == variable.shape[0]:
                    variable.assign(updated)
                else:
                    variable.assign(
                        ops.concatenate([updated, variable[channels:]], axis=0)
                    )
        else:
            mean = moving_mean[:channels]
            variance = moving_variance[:channels]
        gamma = batch_norm.gamma[:channels] if batch_norm.scale else None
        beta = batch_norm.beta[:channels] if batch_norm.center else None
        outputs = ops.batch_normalization(
            inputs,
            mean=ops.cast(mean, inputs.dtype),
            variance=ops.cast(variance, inputs.dtype),
            axis=-1,
            offset=beta,
            scale=gamma,
            epsilon=batch_norm.epsilon,
        )
        return ops.cast(outputs, compute_dtype)

    def _batch_norm_at(self, width):
        """The batch norm that `width` (an `ActiveWidth` or `None` for the
        widest) normalizes with."""
        if self.shared:
            return self.batch_norms[0]
        if width is None:
            return self.batch_norms[-1]
        # `channels_at` has checked that the width is one of the list.
        return self.batch_norms[width.index]

    def compute_output_shape(self, input_shape):
        return input_shape

    def channel_config(self):
        return {"channels": self.channels}

    def count(self, input_shape, output_shape, width):
        batch_norm = self._batch_norm_at(width)
        counts = zero_counts()
        counts["bn_affine_params"] = input_shape[-1] * (
            int(batch_norm.scale) + int(batch_norm.center)
        )
        return counts

    def checkpoint_weights(self):
        """Each width's gamma, beta and moving statistics, with its width
        index.

        Raises:
            ValueError: with `shared=True`, whose one batch norm does not
                match checkpoints of per-width batch norms.
        """
        if self.shared:
            raise ValueError(
                f"Layer '{self.name}' is a shared batch norm (the naive "
                "baseline, `shared=True`): checkpoints hold one batch norm "
                "per width and cannot be loaded into it. Build the model "
                "with `shared_batch_norm=False`."
            )
        weights = []
        for index, batch_norm in enumerate(self.batch_norms):
            for kind in ("gamma", "beta", "moving_mean", "moving_variance"):
                variable = getattr(batch_norm, kind, None)
                if variable is not None:
                    weights.append(CheckpointWeight(variable, kind, index))
        return weights

    def plain_equivalent(self, inputs, width, **kwargs):
        """A `BatchNormalization` with the width's weights (with
        `shared=True`: the active prefix of the shared one)."""
        channels = inputs.shape[-1]
        source = self._batch_norm_at(width)
        config = source.get_config()
        config.update(name=self.name, trainable=self.trainable)
        batch_norm = keras.layers.BatchNormalization.from_config(config)
        # gamma, beta, moving mean, moving variance: all per channel.
        weights = [w[:channels] for w in source.get_weights()]
        training = kwargs.get("training")

        def apply(x, *unused_args, **call_kwargs):
            return batch_norm(x, training=call_kwargs.get("training", training))

        return plain.build_and_copy(apply, inputs, [(batch_norm, weights)])

    def get_config(self):
        config = super().get_config()
        batch_norm_config = self.batch_norms[0].get_config()
        config.update(
            {
                name: batch_norm_config[name]
                for name in self._BATCH_NORM_ARGUMENTS
            }
        )
        config["channels"] = list(self.channels)
        config["shared"] = self.shared
        config["unbiased_moving_variance"] = self.unbiased_moving_variance
        return config
