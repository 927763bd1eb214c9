"""Batch norms of slimmable networks: switchable (private statistics and
affine parameters for every listed width) and universal (shared affine
parameters, private statistics for every calibrated width)."""

import contextlib
import contextvars

import keras
from keras import ops

from keras_slimmable.layers import plain
from keras_slimmable.layers.base import CheckpointWeight
from keras_slimmable.layers.base import ScaledChannels
from keras_slimmable.layers.base import SlimmableLayer
from keras_slimmable.layers.base import channels_at
from keras_slimmable.layers.base import config_channels
from keras_slimmable.layers.base import mask_sampled
from keras_slimmable.layers.base import max_channels
from keras_slimmable.layers.base import standardize_channels
from keras_slimmable.layers.base import weight_prefix
from keras_slimmable.layers.base import zero_counts
from keras_slimmable.widths import _float32
from keras_slimmable.widths import _real_number
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
        if calibrating():
            return self._calibration_call(batch_norm, inputs)
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

    def _calibration_call(self, batch_norm, inputs):
        """Normalizes with the batch statistics and adds them to the
        width's (see `calibration_scope`)."""
        compute_dtype = inputs.dtype
        if compute_dtype in ("float16", "bfloat16"):
            inputs = ops.cast(inputs, "float32")
        mean, variance, update = _moments(inputs, True)
        batch_norm.moving_mean.assign(batch_norm.moving_mean + mean)
        batch_norm.moving_variance.assign(batch_norm.moving_variance + update)
        outputs = ops.batch_normalization(
            inputs,
            mean=mean,
            variance=variance,
            axis=-1,
            offset=batch_norm.beta if batch_norm.center else None,
            scale=batch_norm.gamma if batch_norm.scale else None,
            epsilon=batch_norm.epsilon,
        )
        return ops.cast(outputs, compute_dtype)

    def calibration_statistics(self, width):
        """The `(moving_mean, moving_variance)` variables of `width` (an
        `ActiveWidth` of the model's list), for calibration."""
        if self.shared:
            raise ValueError(
                f"Layer '{self.name}' is a shared batch norm (the naive "
                "baseline): its one set of statistics is not per width, so "
                "it cannot be calibrated per width."
            )
        if width.index is None:
            raise ValueError(
                f"Layer '{self.name}' keeps statistics for the model's "
                f"listed widths only ({len(self.channels)} of them); width "
                f"{width.width} is not one of them."
            )
        batch_norm = self.batch_norms[width.index]
        return batch_norm.moving_mean, batch_norm.moving_variance

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


# Set by `SlimmableModel.calibrate_batch_norm`: batch norms then normalize
# with the batch's statistics and add them to the active width's
# statistics (reset to zero before, divided by the batch count after).
_CALIBRATING = contextvars.ContextVar(
    "keras_slimmable_calibrating_batch_norm", default=False
)


@contextlib.contextmanager
def calibration_scope():
    """Within it, slimmable batch norms accumulate batch statistics (see
    `SlimmableModel.calibrate_batch_norm`, which is the way to use it)."""
    token = _CALIBRATING.set(True)
    try:
        yield
    finally:
        _CALIBRATING.reset(token)


def calibrating():
    """Whether a `calibration_scope` is active."""
    return _CALIBRATING.get()


def _moments(inputs, unbiased):
    """Per-channel batch mean, biased variance and the variance the
    statistics take (unbiased: n / (n - 1), as PyTorch)."""
    axes = list(range(len(inputs.shape) - 1))
    mean, variance = ops.moments(inputs, axes=axes)
    if not unbiased:
        return mean, variance, variance
    shape = ops.shape(inputs)
    count = ops.cast(ops.prod([shape[a] for a in axes]), "float32")
    # A batch of one value per channel keeps the biased variance
    # (PyTorch's would be infinite).
    correction = count / ops.maximum(count - 1.0, 1.0)
    return mean, variance, variance * correction


_UNCALIBRATED_CHOICES = ("error", "batch_statistics")


@keras.saving.register_keras_serializable(package="keras_slimmable")
class UniversalBatchNormalization(SlimmableLayer):
    """The batch norm of universally slimmable networks: any width.

    One gamma and one beta at the widest channel count, shared by every
    width (a width with `c` channels uses the first `c`), and private
    moving statistics for each *calibrated* width (Yu & Huang, ICCV 2019).
    A model with this layer runs at any width of its range:

    - training at a calibrated width normalizes with the batch statistics
      and updates that width's moving statistics; at any other width it
      normalizes with the batch statistics and tracks nothing;
    - inference at a calibrated width uses its statistics; at any other
      width it raises an error saying how to calibrate
      (`SlimmableModel.calibrate_batch_norm`), unless
      `uncalibrated="batch_statistics"`, which normalizes with the
      statistics of the batch being predicted.

    A width is calibrated when it equals an entry of `calibrated_widths` at
    float32 precision (as widths are matched everywhere in this package).

    Args:
        channels: the channel rule (`ScaledChannels`), or an int for a
            count that does not change with width.
        calibrated_widths: the widths with statistics, in the order of
            the reference checkpoints' `bn.<i>` entries. Defaults to `()`.
        momentum: momentum of the moving averages; PyTorch's momentum `m`
            is Keras's `1 - m`. Defaults to `0.99`.
        epsilon: added to the variance. Defaults to `1e-3`.
        center: whether to learn a beta offset. Defaults to `True`.
        scale: whether to learn a gamma scale. Defaults to `True`.
        uncalibrated: `"error"` or `"batch_statistics"`, what inference at
            a width without statistics does. Defaults to `"error"`.
        unbiased_moving_variance: update the moving variance with the
            unbiased batch variance, as PyTorch does. Defaults to `False`.
        beta_initializer, gamma_initializer, beta_regularizer,
        gamma_regularizer, beta_constraint, gamma_constraint: as for
            `keras.layers.BatchNormalization`.
    """

    def __init__(
        self,
        channels,
        calibrated_widths=(),
        momentum=0.99,
        epsilon=1e-3,
        center=True,
        scale=True,
        uncalibrated="error",
        unbiased_moving_variance=False,
        beta_initializer="zeros",
        gamma_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.channels = standardize_channels(channels, "channels")
        if isinstance(self.channels, tuple):
            raise ValueError(
                f"Layer '{self.name}': `channels` must be a channel rule "
                "(ScaledChannels) or an int, for a batch norm that runs at "
                "any width. A per-width list belongs to "
                f"SwitchableBatchNormalization. Received: channels={channels!r}"
            )
        self.calibrated_widths = _standardize_calibrated(
            calibrated_widths, self.channels
        )
        if uncalibrated not in _UNCALIBRATED_CHOICES:
            raise ValueError(
                "`uncalibrated` must be 'error' or 'batch_statistics'. "
                f"Received: uncalibrated={uncalibrated!r}"
            )
        self.uncalibrated = uncalibrated
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.center = bool(center)
        self.scale = bool(scale)
        self.unbiased_moving_variance = bool(unbiased_moving_variance)
        self.beta_initializer = keras.initializers.get(beta_initializer)
        self.gamma_initializer = keras.initializers.get(gamma_initializer)
        self.beta_regularizer = keras.regularizers.get(beta_regularizer)
        self.gamma_regularizer = keras.regularizers.get(gamma_regularizer)
        self.beta_constraint = keras.constraints.get(beta_constraint)
        self.gamma_constraint = keras.constraints.get(gamma_constraint)
        self.statistics = []
        self.supports_masking = True

    @property
    def _max_width(self):
        if isinstance(self.channels, ScaledChannels):
            return self.channels.max_width
        return 1.0

    def build(self, input_shape):
        full = max_channels(self.channels)
        if input_shape[-1] is not None and input_shape[-1] != full:
            raise ValueError(
                f"Layer '{self.name}' has {full} channels at its widest "
                f"(channels={self.channels!r}). Received input_shape="
                f"{input_shape}"
            )
        self.gamma = self.beta = None
        if self.scale:
            self.gamma = self.add_weight(
                name="gamma",
                shape=(full,),
                initializer=self.gamma_initializer,
                regularizer=self.gamma_regularizer,
                constraint=self.gamma_constraint,
            )
        if self.center:
            self.beta = self.add_weight(
                name="beta",
                shape=(full,),
                initializer=self.beta_initializer,
                regularizer=self.beta_regularizer,
                constraint=self.beta_constraint,
            )
        for width in self.calibrated_widths:
            self.statistics.append(self._new_statistics(width))

    def _new_statistics(self, width):
        index = len(self.statistics)
        count = self._channels_at_width(width)
        return (
            self.add_weight(
                name=f"moving_mean_{index}",
                shape=(count,),
                initializer="zeros",
                trainable=False,
            ),
            self.add_weight(
                name=f"moving_variance_{index}",
                shape=(count,),
                initializer="ones",
                trainable=False,
            ),
        )

    def is_calibrated(self, width):
        """Whether `width` has statistics (equal to a calibrated width at
        float32 precision)."""
        return self._slot(width) is not None

    def calibration_statistics(self, width):
        """The `(moving_mean, moving_variance)` variables of `width` (an
        `ActiveWidth`), added if it has none (see
        `SlimmableModel.calibrate_batch_norm`)."""
        return self.statistics[self.add_calibrated_width(width.width)]

    def drop_calibrated_width(self, width):
        """Removes the statistics of `width`, the last added (undoes
        `add_calibrated_width`, for a calibration that failed)."""
        slot = self._slot(width)
        if slot is None:
            return
        if slot != len(self.statistics) - 1:
            raise ValueError(
                f"Layer '{self.name}': only the last calibrated width can be "
                f"dropped. Received: width={width}"
            )
        for variable in self.statistics.pop():
            # Private Keras API (as `_tracker` in `add_calibrated_width`).
            self._untrack_variable(variable)
        self.calibrated_widths = self.calibrated_widths[:-1]

    def add_calibrated_width(self, width):
        """Adds statistics for `width` (mean 0, variance 1) unless it has
        them; returns the position of its statistics."""
        slot = self._slot(width)
        if slot is not None:
            return slot
        (width,) = _standardize_calibrated([width], self.channels)
        if not self.built:
            self.calibrated_widths += (width,)
            return len(self.calibrated_widths) - 1
        # Keras locks a built layer's state; statistics for a new width
        # are state added after the build. Private Keras API, checked by
        # tests/test_keras_private_api.py.
        self._tracker.unlock()
        try:
            statistics = self._new_statistics(width)
        finally:
            self._tracker.lock()
        self.statistics.append(statistics)
        self.calibrated_widths += (width,)
        return len(self.statistics) - 1

    def _channels_at_width(self, width):
        if isinstance(self.channels, int):
            return self.channels
        return self.channels(width)

    def _width_of(self, active):
        if active is None or active.width is None:
            return self._max_width
        return active.width

    def _slot(self, width):
        value = _float32(width)
        for slot, calibrated in enumerate(self.calibrated_widths):
            if _float32(calibrated) == value:
                return slot
        return None

    def _affine(self, channels):
        gamma = beta = None
        if self.gamma is not None:
            gamma = weight_prefix(self, "gamma", self.gamma, (channels,))
        if self.beta is not None:
            beta = weight_prefix(self, "beta", self.beta, (channels,))
        return gamma, beta

    def call(self, inputs, training=None, mask=None):
        channels = inputs.shape[-1]
        expected = channels_at(self.channels, self.name)
        if channels != expected:
            raise ValueError(
                f"Layer '{self.name}' expects {expected} channels at the "
                f"active width (channels={self.channels!r}). Received an "
                f"input with {channels} channels."
            )
        active = active_width()
        # A width drawn at random, or a per-layer configuration, has no
        # statistics: batch statistics, and nothing tracked (as the
        # reference trains).
        sampled = active is not None and (
            active.sampled is not None or active.channels is not None
        )
        width = self._width_of(active)
        slot = None if sampled else self._slot(width)
        compute_dtype = inputs.dtype
        if compute_dtype in ("float16", "bfloat16"):
            inputs = ops.cast(inputs, "float32")
        if calibrating():
            if slot is None:
                raise ValueError(
                    f"Layer '{self.name}' has no statistics for width "
                    f"{width} to calibrate: add it first "
                    "(`add_calibrated_width`)."
                )
            mean, variance, update = _moments(inputs, True)
            moving_mean, moving_variance = self.statistics[slot]
            moving_mean.assign(moving_mean + mean)
            moving_variance.assign(moving_variance + update)
        elif training and self.trainable:
            mean, variance, update = _moments(
                inputs, self.unbiased_moving_variance
            )
            if slot is not None:
                m = self.momentum
                moving_mean, moving_variance = self.statistics[slot]
                moving_mean.assign(moving_mean * m + mean * (1.0 - m))
                moving_variance.assign(moving_variance * m + update * (1.0 - m))
        elif slot is not None:
            mean, variance = self.statistics[slot]
        elif self.uncalibrated == "batch_statistics" or sampled:
            mean, variance, _ = _moments(inputs, False)
        else:
            raise ValueError(
                f"Layer '{self.name}' has no batch-norm statistics for "
                f"width {width} (calibrated widths: "
                f"{list(self.calibrated_widths)}). Calibrate them first: "
                f"model.calibrate_batch_norm([{width}], data), with a few "
                "batches of training images; or normalize with each batch's "
                "own statistics: model.set_uncalibrated_batch_norm("
                "'batch_statistics')."
            )
        gamma, beta = self._affine(channels)
        outputs = ops.batch_normalization(
            inputs,
            mean=ops.cast(mean, inputs.dtype),
            variance=ops.cast(variance, inputs.dtype),
            axis=-1,
            offset=beta,
            scale=gamma,
            epsilon=self.epsilon,
        )
        return mask_sampled(ops.cast(outputs, compute_dtype), self.channels)

    def compute_output_shape(self, input_shape):
        return input_shape

    def channel_config(self):
        return {"channels": self.channels}

    def count(self, input_shape, output_shape, width):
        counts = zero_counts()
        counts["bn_affine_params"] = input_shape[-1] * (
            int(self.scale) + int(self.center)
        )
        return counts

    def checkpoint_weights(self):
        """Gamma and beta (shared), and each calibrated width's moving
        statistics with the position of its width in
        `calibrated_widths`."""
        weights = []
        if self.gamma is not None:
            weights.append(CheckpointWeight(self.gamma, "gamma", None))
        if self.beta is not None:
            weights.append(CheckpointWeight(self.beta, "beta", None))
        for slot, (mean, variance) in enumerate(self.statistics):
            weights.append(CheckpointWeight(mean, "moving_mean", slot))
            weights.append(CheckpointWeight(variance, "moving_variance", slot))
        return weights

    def plain_equivalent(self, inputs, width, **kwargs):
        """A `BatchNormalization` with the width's slice of gamma and beta
        and its statistics (a calibrated width only)."""
        channels = inputs.shape[-1]
        value = self._width_of(width)
        slot = self._slot(value)
        if slot is None:
            raise ValueError(
                f"Layer '{self.name}' has no statistics for width {value} "
                f"(calibrated widths: {list(self.calibrated_widths)}): "
                "calibrate it before making a plain model of it "
                f"(model.calibrate_batch_norm([{value}], data))."
            )
        batch_norm = keras.layers.BatchNormalization(
            momentum=self.momentum,
            epsilon=self.epsilon,
            center=self.center,
            scale=self.scale,
            name=self.name,
            trainable=self.trainable,
        )
        weights = []
        for variable in (self.gamma, self.beta):
            if variable is not None:
                weights.append(plain.numpy_value(variable)[:channels])
        weights += [plain.numpy_value(v) for v in self.statistics[slot]]
        training = kwargs.get("training")

        def apply(x, *unused_args, **call_kwargs):
            return batch_norm(x, training=call_kwargs.get("training", training))

        return plain.build_and_copy(apply, inputs, [(batch_norm, weights)])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "channels": config_channels(self.channels),
                "calibrated_widths": list(self.calibrated_widths),
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "center": self.center,
                "scale": self.scale,
                "uncalibrated": self.uncalibrated,
                "unbiased_moving_variance": self.unbiased_moving_variance,
            }
        )
        for part in ("beta", "gamma"):
            config[f"{part}_initializer"] = keras.initializers.serialize(
                getattr(self, f"{part}_initializer")
            )
            config[f"{part}_regularizer"] = keras.regularizers.serialize(
                getattr(self, f"{part}_regularizer")
            )
            config[f"{part}_constraint"] = keras.constraints.serialize(
                getattr(self, f"{part}_constraint")
            )
        return config


def _standardize_calibrated(widths, channels):
    """The calibrated widths as a tuple of floats, each distinct (at
    float32) and one the channel configuration covers."""
    try:
        values = tuple(_real_number(w) for w in widths)
    except TypeError:
        values = (None,)
    if None in values or any(not 0 < v < float("inf") for v in values):
        raise ValueError(
            "`calibrated_widths` must be a sequence of positive numbers. "
            f"Received: calibrated_widths={widths!r}"
        )
    rounded = [_float32(v) for v in values]
    if len(set(rounded)) != len(rounded):
        raise ValueError(
            "`calibrated_widths` must be distinct (at float32 precision). "
            f"Received: calibrated_widths={list(widths)}"
        )
    if isinstance(channels, ScaledChannels):
        for value in values:
            channels(value)  # raises for a width outside the rule's
    return values
