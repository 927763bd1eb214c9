"""`SlimmableModel`: one network, several widths, switchable at run time."""

import collections
import math
import numbers
import re
import threading

import keras

from keras_slimmable.layers import SlimmableLayer
from keras_slimmable.layers.base import ScaledChannels
from keras_slimmable.layers.base import max_channels
from keras_slimmable.metrics import WidthMetrics
from keras_slimmable.trainers import SlimmableTrainer
from keras_slimmable.trainers import WeightCache
from keras_slimmable.widths import ActiveWidth
from keras_slimmable.widths import _float32
from keras_slimmable.widths import _real_number
from keras_slimmable.widths import implicit_width_allowed
from keras_slimmable.widths import implicit_width_scope
from keras_slimmable.widths import standardize_widths
from keras_slimmable.widths import width_index
from keras_slimmable.widths import width_scope


def _computing_shapes():
    """Whether Keras is computing output shapes (`compute_output_spec`).

    Its symbolic build traces the model without `width=` to learn the
    output structure, which is the same at every width. Private Keras API
    (the public `keras.SymbolicScope` has no reader); if it moves, the
    backend tests' `train_on_batch` on JAX fails.
    """
    from keras.src.backend.common.symbolic_scope import in_symbolic_scope

    return in_symbolic_scope()


def _with_compact_progress(callbacks):
    """`callbacks` plus the compact progress bar, unless it has a bar."""
    from keras_slimmable.callbacks import CompactProgbarLogger

    if isinstance(callbacks, keras.callbacks.CallbackList):
        return callbacks  # Keras's own, built by the caller: left alone
    callbacks = list(callbacks or [])
    if not any(isinstance(c, keras.callbacks.ProgbarLogger) for c in callbacks):
        callbacks.append(CompactProgbarLogger())
    return callbacks


class BoundedFunctions(collections.OrderedDict):
    """Compiled functions by width, the least recently used dropped beyond
    `capacity`: a model used at many widths (any width of its range)
    keeps at most `capacity` compiled functions of each kind alive; a
    dropped width is traced again if it comes back."""

    def __init__(self, capacity):
        super().__init__()
        self.capacity = capacity

    def get(self, key, default=None):
        if key not in self:
            return default
        self.move_to_end(key)
        return self[key]

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.capacity:
            self.popitem(last=False)


class _FunctionCache:
    """Compiled functions per width, kept out of Keras and TF tracking."""

    # Compiled inference (and predict) functions kept alive: every listed
    # width of the zoo's models, and the most recently used other widths.
    CAPACITY = 32

    def __init__(self):
        self.lock = threading.Lock()
        self.predict = BoundedFunctions(self.CAPACITY)
        self.inference = BoundedFunctions(self.CAPACITY)
        self.weights = WeightCache()

    def clear(self):
        with self.lock:
            self.predict.clear()
            self.inference.clear()


@keras.saving.register_keras_serializable(package="keras_slimmable")
class SlimmableModel(SlimmableTrainer, keras.Model):
    """A functional Keras model that runs at several widths.

    Build the graph once, at full width, from slimmable layers (whose
    channel counts are given per width) and ordinary Keras layers; the model
    then runs it at any width of `widths`. Conv and dense weights are
    shared: a narrower width uses a prefix of the channels. Each width has
    its own batch norm (`SwitchableBatchNormalization`).

    Inference at a width:

    - `model.set_width(0.5)` changes the default width of `__call__`,
      `predict` and export; `model(x, width=0.5)` runs one call at 0.5
      without touching the default. Each width keeps its own compiled
      function, so switching back to a width already used is instant.
      Eager calls at a narrower width read copies of its large weight
      slices, made at its first call and refreshed whenever the weights
      change, rather than slicing the shared kernels on every call.

    Training (`fit`): every step runs each width from the widest to the
    narrowest, back-propagates its loss, sums the gradients and takes one
    optimizer step (Algorithm 1 of the paper). The logs hold the summed
    `loss` and, for every width, `w<width>_loss` and each compiled metric
    (`w0.25_accuracy`, ...); `evaluate` measures every width.

    Args:
        inputs: the model's inputs (`keras.Input`), as for a functional
            model.
        outputs: its outputs, computed at full width.
        widths: the width multipliers, ascending, e.g.
            `(0.25, 0.5, 0.75, 1.0)`. Every slimmable layer holds one
            channel count per width, in this order.
        width: the default width. Defaults to the widest.
        width_range: `(narrowest, widest)` for a model that runs at any
            width in between (universally slimmable), or `None`.
            Defaults to `None`.
        pyramid_levels: the feature pyramid levels a detector reads, as
            a dict from level name (`"P2"`, `"P3"`, ...; level `k` has
            stride `2**k`) to the name of the layer whose output is that
            level, e.g. `{"P3": "block5_pointwise_relu", ...}`. Each layer
            must be in the model and output a 4-D channels-last feature
            map (the output of its first call, for a shared layer).
            `pyramid_outputs` then gives the levels' tensors, as a
            keras-hub `FeaturePyramidBackbone` does. Defaults to `None`
            (no levels).
        name: the model name.

    Example:

    ```python
    inputs = keras.Input((28, 28, 1))
    x = SlimmableConv2D((8, 16), 3, padding=1, use_bias=False)(inputs)
    x = SwitchableBatchNormalization((8, 16))(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = SlimmableDense(10)(x)
    model = SlimmableModel(inputs, outputs, widths=(0.5, 1.0))
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(images, labels)
    model.set_width(0.5)
    model.predict(images)
    ```

    Reference: [Yu et al., Slimmable Neural Networks, ICLR 2019](
    https://arxiv.org/abs/1812.08928).
    """

    # Constructor arguments a subclass adds, each kept in an attribute of
    # the same name: saved by `get_config`, passed back by `from_config`.
    _config_arguments = ()

    def __init__(
        self,
        inputs,
        outputs,
        widths,
        width=None,
        width_range=None,
        name=None,
        pyramid_levels=None,
        **kw,
    ):
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kw)
        self._widths = standardize_widths(widths)
        self._width_range = _standardize_range(width_range, self._widths)
        self._check_layer_widths()
        self._pyramid_levels = self._checked_pyramid_levels(pyramid_levels)
        self._width = self._widths[-1]
        if width is not None:
            self.set_width(width)
        self._functions = _FunctionCache()
        self._sandwich_rule = None
        self._distill_from_logits = None

    def _checked_pyramid_levels(self, pyramid_levels):
        """`pyramid_levels` as a new dict, checked against the graph."""
        if pyramid_levels is None:
            return {}
        if not isinstance(pyramid_levels, dict):
            raise ValueError(
                "`pyramid_levels` must be a dict from level name ('P2', "
                "'P3', ...) to layer name. Received: "
                f"pyramid_levels={pyramid_levels!r}"
            )
        names = {layer.name for layer in self.layers}
        for level, layer_name in pyramid_levels.items():
            if not isinstance(level, str) or not re.fullmatch(
                r"P[0-9]+", level
            ):
                raise ValueError(
                    "The keys of `pyramid_levels` are level names 'P<k>' "
                    "(level k has stride 2**k), e.g. 'P3'. Received: "
                    f"key {level!r} in pyramid_levels={pyramid_levels!r}"
                )
            if not isinstance(layer_name, str) or layer_name not in names:
                raise ValueError(
                    f"Level {level!r} of `pyramid_levels` names no layer of "
                    f"model '{self.name}': expected the name of one of its "
                    f"layers. Received: {level!r}: {layer_name!r}"
                )
            output = self.get_layer(layer_name).output
            if (
                not isinstance(output, keras.KerasTensor)
                or len(output.shape) != 4
            ):
                shape = getattr(output, "shape", None)
                raise ValueError(
                    f"Level {level!r} of `pyramid_levels` is layer "
                    f"'{layer_name}', whose output has shape {shape}: "
                    "expected a 4-D feature map (batch, height, width, "
                    "channels)."
                )
        return dict(pyramid_levels)

    @property
    def pyramid_levels(self):
        """The feature pyramid levels: a new dict from level name (`"P2"`,
        ...) to layer name; empty for a model without levels."""
        return dict(self._pyramid_levels)

    @property
    def pyramid_outputs(self):
        """The feature pyramid, as a keras-hub `FeaturePyramidBackbone`
        gives it: a dict from level name (`"P2"`, ...; level `k` has
        stride `2**k`) to the output (a `keras.KerasTensor` of this
        model's graph) of the level's layer; empty for a model without
        levels. `SlimmableModel(model.inputs, model.pyramid_outputs,
        widths=model.widths)` runs the pyramid at every width."""
        return {
            level: self.get_layer(name).output
            for level, name in self._pyramid_levels.items()
        }

    @property
    def sandwich_rule(self):
        """The `SandwichRule` given to `compile`, or `None`."""
        return self._sandwich_rule

    @property
    def inplace_distillation(self):
        """Whether `compile` asked for inplace distillation."""
        return self._distill_from_logits is not None

    def _slimmable_layers(self):
        # Private Keras API: `_flatten_layers` reaches the layers of nested
        # models too (public `.layers` does not). Checked by
        # tests/test_keras_private_api.py.
        return [
            layer
            for layer in self._flatten_layers(include_self=False)
            if isinstance(layer, SlimmableLayer)
        ]

    def _check_layer_widths(self):
        expected = len(self._widths)
        for layer in self._slimmable_layers():
            for attribute, value in layer.channel_config().items():
                if isinstance(value, tuple) and len(value) != expected:
                    raise ValueError(
                        f"Layer '{layer.name}' has {attribute}={value}, "
                        f"{len(value)} entries, but the model has "
                        f"{expected} widths {self._widths}. Give every "
                        "slimmable layer one entry per width."
                    )
                if self._width_range is None:
                    continue
                if isinstance(value, tuple):
                    raise ValueError(
                        f"Layer '{layer.name}' lists one channel count per "
                        f"width ({attribute}={value}), so it cannot run at "
                        f"every width of width_range={self._width_range}. "
                        "Give it a channel rule (ScaledChannels) or a "
                        "fixed int."
                    )
                if isinstance(value, ScaledChannels) and _float32(
                    value.max_width
                ) < _float32(self._width_range[1]):
                    raise ValueError(
                        f"Layer '{layer.name}' has {attribute}={value!r}, "
                        f"which ends below the model's width_range="
                        f"{self._width_range}."
                    )

    @property
    def widths(self):
        """The width multipliers this model runs at, ascending."""
        return self._widths

    @property
    def width_range(self):
        """`(narrowest, widest)`: the model runs at any width in between
        (not only at `widths`), or `None` for a model of listed widths
        only."""
        return self._width_range

    @property
    def width(self):
        """The default width of `__call__`, `predict` and export."""
        return self._width

    @width.setter
    def width(self, value):
        self.set_width(value)

    @property
    def cache_weight_slices(self):
        """Whether eager inference reads cached copies of the narrower
        widths' large weight slices (TensorFlow only).

        On by default on TensorFlow: it keeps batch-1 inference at a narrow
        width as fast as the width's plain model, at the cost of one copy
        of each used width's large slices (see `trainers/weight_cache.py`).
        Set it to `False` to save that memory; calls then slice the shared
        kernels every time.
        """
        return bool(self._functions.weights.enabled)

    @cache_weight_slices.setter
    def cache_weight_slices(self, value):
        if not isinstance(value, bool):
            raise ValueError(
                "`cache_weight_slices` must be True or False. Received: "
                f"cache_weight_slices={value!r}"
            )
        if value and keras.backend.backend() != "tensorflow":
            raise ValueError(
                "The weight-slice cache is a TensorFlow-only optimisation. "
                f"Received: cache_weight_slices=True on the "
                f"{keras.backend.backend()} backend"
            )
        if not value and self._functions.weights.enabled:
            self._functions.weights.release()
        self._functions.weights.enabled = value

    def set_width(self, width):
        """Makes `width` the default width.

        Args:
            width: one of `self.widths`, or any width of `self.width_range`
                for a model that has one.

        Raises:
            ValueError: if the model does not run at `width` (nothing
                changes).
        """
        if width is None:
            width_index(self._widths, width)  # raises, naming the widths
        self._width = self._active_width(width).width

    def load_weights(self, filepath, skip_mismatch=False, **kwargs):
        """Loads weights, as `keras.Model.load_weights`, or changes nothing.

        Keras assigns a file's weights layer by layer and can fail part way
        (a file of another architecture or of other widths, a truncated
        file), leaving some layers loaded and others not. Here every
        variable of the model and its optimizer is restored when loading
        fails, and the error is raised: the model is exactly as it was.
        """
        variables = list(self.variables)
        if getattr(self, "optimizer", None) is not None:
            variables += list(self.optimizer.variables)
        saved = [keras.ops.convert_to_numpy(v) for v in variables]
        try:
            return super().load_weights(
                filepath, skip_mismatch=skip_mismatch, **kwargs
            )
        except BaseException:
            for variable, value in zip(variables, saved):
                variable.assign(value)
            raise

    @property
    def calibrated_widths(self):
        """The widths every universal batch norm has statistics for,
        ascending (`()` for a model without universal batch norms)."""
        layers = self._universal_batch_norms()
        if not layers:
            return ()
        common = set.intersection(
            *(
                {_float32(w) for w in layer.calibrated_widths}
                for layer in layers
            )
        )
        return tuple(
            sorted(
                w for w in layers[0].calibrated_widths if _float32(w) in common
            )
        )

    def _universal_batch_norms(self):
        from keras_slimmable.layers import UniversalBatchNormalization

        return [
            layer
            for layer in self._slimmable_layers()
            if isinstance(layer, UniversalBatchNormalization)
        ]

    def set_uncalibrated_batch_norm(self, mode):
        """What inference at a width without batch-norm statistics does.

        Args:
            mode: `"error"` (the default: an error saying how to
                calibrate) or `"batch_statistics"` (normalize with the
                statistics of the batch being predicted, which makes a
                prediction depend on the rest of its batch).
        """
        layers = self._universal_batch_norms()
        if mode not in ("error", "batch_statistics"):
            raise ValueError(
                "`mode` must be 'error' or 'batch_statistics'. Received: "
                f"mode={mode!r}"
            )
        for layer in layers:
            layer.uncalibrated = mode
        self._forget_compiled_functions()

    def _forget_compiled_functions(self):
        """Drops every compiled function: the next call traces again (after
        the model's state changed shape, or a layer's behaviour)."""
        self._functions.clear()
        self._functions.weights.release()
        self.train_function = None
        self.test_function = None
        self.predict_function = None

    def calibrate_batch_norm(
        self, widths, data, steps=None, batch_size=32, verbose="auto"
    ):
        """Recomputes the batch-norm statistics of `widths` from `data`.

        The post-training calibration of universally slimmable networks (Yu
        & Huang, ICCV 2019): for each width, the statistics are reset and
        replaced by the average, over the batches, of each batch's
        per-channel mean and (unbiased) variance, every width run on every
        batch, widest first. Nothing else changes: the weights, the other
        widths' statistics, and the rest of the model (it runs in inference
        mode: dropout off; Keras's own `BatchNormalization` layers, shared
        by all widths, keep their statistics).

        A width of the model's range without statistics gets them: it is
        then calibrated, saved with the model and runs at inference. A
        switchable batch norm (`SwitchableBatchNormalization`) is
        recalibrated too, for the model's listed widths (the naive
        baseline's one shared batch norm cannot be: an error).

        Args:
            widths: the widths to calibrate (each in `widths` or in
                `width_range`).
            data: the images: an array of shape `(n, *input_shape)`
                (split into batches of `batch_size`), or an iterable of
                batches, each images or an `(images, labels, ...)` tuple
                (a `tf.data.Dataset`, a generator, a list). Use training
                images, preprocessed as for training or evaluation.
            steps: the number of batches to use. Defaults to all of
                `data` (which must then end).
            batch_size: the batch size for an array. Defaults to `32`.
            verbose: `"auto"`, `0` or `1`: a progress bar. Defaults to
                `"auto"` (a bar).

        Raises:
            ValueError: for a width the model does not run at, data of the
                wrong shape or type, no data, or a model without
                slimmable batch norms. The model is then left exactly as
                it was.
        """
        from keras_slimmable.layers.normalization import calibration_scope

        actives = self._calibration_widths(widths)
        layers = [
            layer
            for layer in self._slimmable_layers()
            if hasattr(layer, "calibration_statistics")
        ]
        if not layers:
            raise ValueError(
                f"Model '{self.name}' has no slimmable batch norms to "
                "calibrate."
            )
        batches = self._calibration_batches(data, steps, batch_size)
        # Everything is checked: now the statistics change, and are put
        # back as they were if anything fails on the way.
        added = [
            (layer, active.width)
            for layer in self._universal_batch_norms()
            for active in actives
            if not layer.is_calibrated(active.width)
        ]
        variables = [
            v for layer in layers for v in layer.non_trainable_variables
        ]
        saved = [keras.ops.convert_to_numpy(v) for v in variables]
        try:
            statistics = [
                [layer.calibration_statistics(active) for layer in layers]
                for active in actives
            ]
            for pairs in statistics:
                for mean, variance in pairs:
                    mean.assign(keras.ops.zeros(mean.shape, mean.dtype))
                    variance.assign(
                        keras.ops.zeros(variance.shape, variance.dtype)
                    )
            progress = keras.utils.Progbar(
                len(batches), verbose=0 if verbose == 0 else 1
            )
            with calibration_scope():
                for step, images in enumerate(batches):
                    for active in actives:
                        self._forward(images, active, training=False)
                    progress.update(step + 1)
            for pairs in statistics:
                for mean, variance in pairs:
                    mean.assign(keras.ops.divide(mean.value, len(batches)))
                    variance.assign(
                        keras.ops.divide(variance.value, len(batches))
                    )
        except BaseException:
            for variable, value in zip(variables, saved):
                variable.assign(value)
            for layer, width in reversed(added):
                layer.drop_calibrated_width(width)
            raise
        finally:
            self._forget_compiled_functions()

    def _calibration_widths(self, widths):
        """The widths to calibrate, as `ActiveWidth`s, widest first."""
        if isinstance(widths, (str, bytes)) or not hasattr(widths, "__iter__"):
            widths = [widths]
        actives = {}
        for width in widths:
            active = self._active_width(width)
            actives.setdefault(_float32(active.width), active)
        if not actives:
            raise ValueError(
                "`widths` must name at least one width to calibrate. "
                f"Received: widths={widths!r}"
            )
        return sorted(actives.values(), key=lambda a: -a.width)

    def _calibration_batches(self, data, steps, batch_size):
        """The calibration images, batch by batch, checked against the
        model's input (read before anything changes)."""
        import numpy as np

        if steps is not None and (
            isinstance(steps, bool) or not isinstance(steps, int) or steps < 1
        ):
            raise ValueError(
                f"`steps` must be a positive int or None. Received: {steps!r}"
            )
        if hasattr(data, "shape") and hasattr(data, "dtype"):
            array = np.asarray(data)
            data = [
                array[start : start + batch_size]
                for start in range(0, len(array), batch_size)
            ]
        elif hasattr(data, "as_numpy_iterator"):
            data = data.as_numpy_iterator()
        expected = tuple(self.inputs[0].shape[1:])
        batches = []
        for batch in data:
            if steps is not None and len(batches) == steps:
                break
            if isinstance(batch, (tuple, list)):
                batch = batch[0]
            images = np.asarray(batch)
            if (
                images.ndim != len(expected) + 1
                or any(
                    e is not None and e != d
                    for e, d in zip(expected, images.shape[1:])
                )
                or not len(images)
            ):
                raise ValueError(
                    f"Calibration batch {len(batches)} has shape "
                    f"{images.shape}; model '{self.name}' takes images of "
                    f"shape (batch, {', '.join(map(str, expected))})."
                )
            if not np.issubdtype(images.dtype, np.floating) and not (
                np.issubdtype(images.dtype, np.integer)
            ):
                raise ValueError(
                    f"Calibration batch {len(batches)} has dtype "
                    f"{images.dtype}; expected images of a float (or int) "
                    "dtype."
                )
            batches.append(images.astype(self.inputs[0].dtype))
        if not batches:
            raise ValueError(
                "`data` holds no batch to calibrate with. Pass a few batches "
                "of training images."
            )
        if steps is not None and len(batches) < steps:
            raise ValueError(
                f"`data` ended after {len(batches)} batches; steps={steps}."
            )
        return batches

    def materialize(self, width=None, fold_batch_norm=False):
        """A plain Keras model of one width, holding only its weights.

        Ordinary `Conv2D`, `DepthwiseConv2D`, `Dense` and
        `BatchNormalization` layers with this width's weights copied in:
        the same outputs at inference, a truly narrow artifact to export.
        See `keras_slimmable.materialize.materialize`.

        Args:
            width: one of `self.widths`. Defaults to `self.width`.
            fold_batch_norm: fold each batch norm that follows a
                convolution or dense layer into its kernel and bias (for
                inference only). Defaults to `False`.

        Raises:
            ValueError: if `width` is not in `self.widths`.
        """
        from keras_slimmable.materialize import materialize

        return materialize(
            self,
            self.width if width is None else width,
            fold_batch_norm=fold_batch_norm,
        )

    def _active_width(self, width=None):
        """The `ActiveWidth` a call at `width` (default: `self.width`)
        runs at: a listed width with its position, or, for a model with a
        width range, any width in it (position `None` unless listed).

        Raises:
            ValueError: naming the width, the list and the range.
        """
        width = self._width if width is None else width
        if isinstance(width, ActiveWidth):
            return self._check_active(width)
        if isinstance(width, dict):
            return self._configuration(width)
        if self._width_range is None:
            index = width_index(self._widths, width)
            return ActiveWidth(self._widths[index], index)
        value = _real_number(width)
        low, high = self._width_range
        if value is None or not (
            _float32(low) <= _float32(value) <= _float32(high)
        ):
            raise ValueError(
                f"Unknown width {width!r}: this model runs at any width in "
                f"[{low}, {high}] (its range; listed widths {self._widths})."
                " Pass a number in that range."
            )
        try:
            index = width_index(self._widths, value)
        except ValueError:
            return ActiveWidth(value, None)
        return ActiveWidth(self._widths[index], index)

    def call(self, inputs, training=None, mask=None, width=None):
        """Runs the model at `width` (defaults to `self.width`).

        Inside a compiled function of the user's own (`tf.function`,
        `jax.jit`), pass `width=`: the width is read when the function is
        traced, so the default would silently stay the width of that trace
        after `set_width`. A call without it there is an error.
        """
        if (
            width is None
            and len(self._widths) > 1
            and not implicit_width_allowed()
            and not _computing_shapes()
            and self._is_tracing(inputs)
        ):
            raise ValueError(
                f"SlimmableModel '{self.name}' was called without `width=` "
                "inside a compiled function (tf.function, jax.jit). The "
                "width is fixed when the function is traced, so after "
                "`set_width` it would silently keep the old one. Pass the "
                f"width, e.g. model(x, width=0.5) (widths: {self._widths}), "
                "or call the model eagerly or through `predict`, which "
                "follow `set_width`."
            )
        active = self._active_width(width)
        return self._run_at_width(inputs, active, training=training, mask=mask)

    def _configuration(self, channels):
        """The `ActiveWidth` of a per-layer channel configuration
        `{layer name: channel count}`: every slimmable layer with a channel
        configuration of its own must be named."""
        configurable = {
            layer.name: value
            for layer in self._slimmable_layers()
            for value in layer.channel_config().values()
            if not isinstance(value, int)
        }
        unknown = sorted(set(channels) - set(configurable))
        missing = sorted(set(configurable) - set(channels))
        if unknown or missing:
            raise ValueError(
                f"A channel configuration of model '{self.name}' gives one "
                "count for every slimmable layer whose channels change with "
                f"the width. Unknown layers: {unknown}; missing: {missing}."
            )
        for name, count in channels.items():
            widest = max_channels(configurable[name])
            if (
                isinstance(count, bool)
                or not isinstance(count, numbers.Integral)
                or not 1 <= count <= widest
            ):
                raise ValueError(
                    f"Layer '{name}' takes 1 to {widest} channels. Received: "
                    f"{count!r}"
                )
        return ActiveWidth(
            None,
            None,
            None,
            tuple(sorted((k, int(v)) for k, v in channels.items())),
        )

    def _check_active(self, active):
        """An `ActiveWidth` given as `width=` (by the trainers): a sampled
        one needs a width range; any other must be one the model runs at."""
        if active.channels is not None:
            return self._configuration(dict(active.channels))
        if active.sampled is None:
            return self._active_width(active.width)
        if self._width_range is None:
            raise ValueError(
                f"Model '{self.name}' runs at its listed widths only "
                f"{self._widths}: a width drawn at random needs a "
                "`width_range`."
            )
        return active

    def _forward(self, inputs, active, training=None, mask=None):
        """The functional graph, run at the `ActiveWidth` `active`."""
        with width_scope(
            active.index, active.width, active.sampled, active.channels
        ):
            return super().call(inputs, training=training, mask=mask)

    def compute_output_spec(self, inputs, training=None, mask=None, width=None):
        active = self._active_width(width)
        with (
            width_scope(
                active.index, active.width, active.sampled, active.channels
            ),
            implicit_width_scope(),
        ):
            return super().compute_output_spec(
                inputs, training=training, mask=mask
            )

    def compile(
        self,
        optimizer="rmsprop",
        loss=None,
        metrics=None,
        weighted_metrics=None,
        sandwich_rule=None,
        inplace_distillation=False,
        **kwargs,
    ):
        """Configures training, as `keras.Model.compile`.

        `loss`, `metrics` and `weighted_metrics` apply to every width; the
        logs report each of them per width.

        Args:
            sandwich_rule: `None` (the default) trains every listed width
                at each step (Algorithm 1 of the slimmable networks). A
                `keras_slimmable.SandwichRule` (or an int, its
                `num_widths`) trains the widest and narrowest widths of
                `width_range` and `num_widths - 2` widths drawn at random
                in it (universally slimmable networks); the logs report
                the two ends and, as `sampled_...`, the drawn widths.
            inplace_distillation: train every width but the widest on the
                widest's predictions (soft targets without gradient to the
                widest) instead of the labels. Needs a categorical
                cross-entropy `loss`. Defaults to `False`.
            **kwargs: as for `keras.Model.compile`.
        """
        from keras_slimmable import sandwich

        rule = sandwich.standardize_sandwich_rule(sandwich_rule)
        sampled = self._check_sandwich_rule(rule)
        if not isinstance(inplace_distillation, bool):
            raise ValueError(
                "`inplace_distillation` must be True or False. Received: "
                f"inplace_distillation={inplace_distillation!r}"
            )
        distill_from_logits = None
        if inplace_distillation:
            distill_from_logits = sandwich.distillation_from_logits(loss)
        super().compile(
            optimizer=optimizer,
            loss=loss,
            metrics=metrics,
            weighted_metrics=weighted_metrics,
            **kwargs,
        )
        self._sandwich_rule = rule
        self._distill_from_logits = distill_from_logits
        # Saved with the model, so `compile_from_config` restores them.
        self._compile_config.config.update(
            sandwich_rule=rule, inplace_distillation=inplace_distillation
        )
        width_metrics = WidthMetrics(
            self._widths,
            metrics,
            weighted_metrics,
            output_names=getattr(self, "output_names", None),
            regularized=bool(self.losses),
            extra_names=("sampled",) if sampled else (),
        )
        # Bypass attribute tracking, as Keras does for its compiled metrics:
        # they are reported through `self.metrics`, not as a sub-metric.
        object.__setattr__(self, "_compile_metrics", width_metrics)
        self._forget_compiled_functions()

    def _check_sandwich_rule(self, rule):
        """Whether `rule` draws widths; raises if the model cannot train
        with it."""
        if rule is None:
            return False
        if self._width_range is None:
            raise ValueError(
                f"The sandwich rule trains widths drawn in the model's "
                f"width range, and model '{self.name}' has none (it runs at "
                f"its listed widths {self._widths}). Build it with "
                "`width_range`, or compile without `sandwich_rule`."
            )
        missing = [
            w
            for w in self._width_range
            if _float32(w) not in {_float32(v) for v in self._widths}
        ]
        if missing:
            raise ValueError(
                f"The sandwich rule trains the ends of width_range="
                f"{self._width_range} and logs them as listed widths: list "
                f"{missing} in the model's `widths` {self._widths}."
            )
        return rule.num_sampled > 0

    def fit(
        self,
        x=None,
        y=None,
        batch_size=None,
        epochs=1,
        verbose="auto",
        callbacks=None,
        **kwargs,
    ):
        """Trains every width at each step, as `keras.Model.fit`.

        The progress bar shows the summed loss and each width's first
        metric (`keras_slimmable.callbacks.CompactProgbarLogger`) unless
        `callbacks` holds a `keras.callbacks.ProgbarLogger` of its own; the
        logs, `History` and `TensorBoard` get every metric.
        """
        return super().fit(
            x,
            y,
            batch_size=batch_size,
            epochs=epochs,
            verbose=verbose,
            callbacks=_with_compact_progress(callbacks),
            **kwargs,
        )

    def evaluate(self, x=None, y=None, verbose="auto", callbacks=None, **kw):
        """Measures every width, as `keras.Model.evaluate`, with the
        compact progress bar of `fit`."""
        return super().evaluate(
            x,
            y,
            verbose=verbose,
            callbacks=_with_compact_progress(callbacks),
            **kw,
        )

    def compile_from_config(self, config):
        """Recompiles a reloaded model (the custom `compile` needs this)."""
        config = keras.saving.deserialize_keras_object(config)
        self.compile(**config)
        if self.built and getattr(self, "optimizer", None) is not None:
            self.optimizer.build(self.trainable_variables)

    def get_config(self):
        # Keras serializes the graph only for constructors shaped like
        # Functional's; a plain functional view of the same graph does it.
        graph = keras.Model(
            inputs=self.input, outputs=self.output, name=self.name
        )
        config = graph.get_config()
        config["trainable"] = self.trainable
        config["widths"] = list(self._widths)
        config["width"] = self._width
        if self._width_range is not None:
            config["width_range"] = list(self._width_range)
        if self._pyramid_levels:
            config["pyramid_levels"] = dict(self._pyramid_levels)
        for name in self._config_arguments:
            value = getattr(self, name)
            config[name] = list(value) if isinstance(value, tuple) else value
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        widths = config.pop("widths")
        width = config.pop("width", None)
        width_range = config.pop("width_range", None)
        pyramid_levels = config.pop("pyramid_levels", None)
        arguments = {a: config.pop(a) for a in cls._config_arguments}
        graph = keras.Model.from_config(config, custom_objects=custom_objects)
        return cls(
            inputs=graph.input,
            outputs=graph.output,
            widths=widths,
            width=width,
            width_range=width_range,
            name=graph.name,
            pyramid_levels=pyramid_levels,
            **arguments,
        )


def _standardize_range(width_range, widths):
    """`width_range` as `(low, high)` floats, or `None`."""
    if width_range is None:
        return None
    try:
        low, high = (_real_number(w) for w in width_range)
    except (TypeError, ValueError):
        low = high = None
    if (
        low is None
        or high is None
        or not (math.isfinite(low) and math.isfinite(high))
        or not 0 < low <= high
    ):
        raise ValueError(
            "`width_range` must be a pair (narrowest, widest) of positive "
            f"numbers, e.g. (0.25, 1.0). Received: width_range={width_range!r}"
        )
    outside = [
        w for w in widths if not _float32(low) <= _float32(w) <= _float32(high)
    ]
    if outside:
        raise ValueError(
            f"The widths {outside} lie outside width_range={width_range!r}: "
            "every listed width must be in the range."
        )
    return (low, high)
