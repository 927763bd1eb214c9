"""Slimmable training and per-width compiled functions on TensorFlow.

The TensorFlow-specific half of `SlimmableModel`: Algorithm 1 with one
gradient tape per width, `tf.distribute` loss scaling, and eager inference
through one `tf.function` per width (reading the weight-slice cache of
`weight_cache.py`). What the backends share is in `base.py`.
"""

import functools

import numpy as np
import tensorflow as tf

from keras_slimmable.trainers.base import SlimmableTrainerBase
from keras_slimmable.trainers.base import _batch_size


class _WidthFunction:
    """`forward(inputs, active, training=False)` for one `ActiveWidth`.

    A callable object per width, not a closure: TF counts retracing per
    code object, and one trace per width is not retracing. Nor a
    `functools.partial`: the same graph then ran 0.2 ms slower per call
    (S-MobileNet v1, batch 1).
    """

    def __init__(self, forward, active):
        self._forward = forward
        self._active = active

    def __call__(self, inputs):
        return self._forward(inputs, self._active, training=False)


class TensorFlowSlimmableTrainer(SlimmableTrainerBase):
    """Mixed into `SlimmableModel` ahead of Keras's TensorFlow trainer."""

    def _replicas_in_sync(self):
        return tf.distribute.get_strategy().num_replicas_in_sync

    def _is_tracing(self, inputs):
        return not tf.executing_eagerly()

    # Inference ----------------------------------------------------------

    def __call__(self, *args, **kwargs):
        # The common case, one eager inference call on one input, skips
        # Keras's per-call bookkeeping (a walk over every layer) and calls
        # the width's compiled function directly. (Calling a concrete
        # function instead was measured 2.6 ms slower at batch 16.)
        if len(args) == 1 and not (set(kwargs) - {"width", "training"}):
            outputs = self._fast_inference(
                args[0], kwargs.get("width"), kwargs.get("training")
            )
            if outputs is not None:
                return outputs
        return super().__call__(*args, **kwargs)

    def _fast_inference(self, inputs, width, training):
        if training or not tf.executing_eagerly() or not self.built:
            return None
        if len(self.inputs) != 1 or not isinstance(
            inputs, (tf.Tensor, np.ndarray)
        ):
            return None
        active = self._active_width(width)  # raises for an unknown width
        model_input = self.inputs[0]
        tensor = tf.convert_to_tensor(inputs)
        if tensor.dtype != model_input.dtype:
            if not tensor.dtype.is_floating and not tensor.dtype.is_integer:
                return None
            tensor = tf.cast(tensor, model_input.dtype)
        if not tensor.shape.is_compatible_with(model_input.shape):
            return None
        cache = self._functions.weights
        # Cached slices for the listed widths only: a model used at many
        # widths of its range would otherwise keep a copy per width.
        if (
            cache.enabled
            and active.index is not None
            and tf.config.experimental.get_synchronous_execution()
        ):
            function = self._inference_function(active, cached=True)
            outputs = cache.run(function, active.index, tensor)
            if outputs is not None:
                return outputs
        return self._inference_function(active)(tensor)

    def _run_at_width(self, inputs, active, training=None, mask=None):
        """Runs at `active`; eager inference goes through a compiled
        function per width (switching widths never retraces)."""
        if training or mask is not None or not tf.executing_eagerly():
            return self._forward(inputs, active, training=training, mask=mask)
        return self._inference_function(active)(inputs)

    def _inference_function(self, active, cached=False):
        """The compiled inference function of the `ActiveWidth` `active`.
        `cached=True`: the one reading cached weight slices (see
        `weight_cache.py`), which also returns the reads of their
        sources."""
        cache = self._functions
        key = (active, cached)
        function = cache.inference.get(key)
        if function is None:
            with cache.lock:
                function = cache.inference.get(key)
                if function is None:
                    forward = self._cached_forward if cached else self._forward
                    function = tf.function(
                        _WidthFunction(forward, active),
                        reduce_retracing=True,
                        autograph=False,
                        jit_compile=False,
                    )
                    cache.inference[key] = function
        return function

    def _cached_forward(self, inputs, active, training=False):
        return self._functions.weights.trace(
            active.index,
            functools.partial(self._forward, inputs, active, training=training),
        )

    def make_train_function(self, force=False):
        # Training writes the weights: let go of the cached slices'
        # snapshots rather than keep the old buffers alive.
        self._functions.weights.release()
        return super().make_train_function(force=force)

    # Training -----------------------------------------------------------

    def train_step(self, data):
        """One step of Algorithm 1 of the paper.

        For each width from the widest to the narrowest: forward at that
        width, its loss, its gradients; the gradients are summed and the
        optimizer takes one step. Each width's forward waits for the
        previous width's gradients, so only one width's activations are
        alive at a time. The loss is scaled by the optimizer (mixed
        precision) and for `tf.distribute` as in Keras's own `train_step`.
        """
        self._check_compiled_loss()
        x, y, sample_weight = self._unpack_batch(data)
        variables = self.trainable_variables
        batch_size = _batch_size(x)
        summed = [None] * len(variables)
        total_loss = None
        previous = []
        teacher = None
        passes = self._training_passes(self._draw_widths)
        for training_pass in passes:
            with tf.control_dependencies(previous):
                inputs = tf.nest.map_structure(tf.identity, x)
            with tf.GradientTape() as tape:
                y_pred = self(inputs, training=True, width=training_pass.active)
                losses = self._pass_loss(
                    x, y, y_pred, sample_weight, training_pass, teacher
                )
                loss = losses[0]
                scaled_loss = (
                    loss
                    if self.optimizer is None
                    else self.optimizer.scale_loss(loss)
                )
            gradients = tape.gradient(scaled_loss, variables)
            summed = [
                g if s is None else (s if g is None else s + g)
                for s, g in zip(summed, gradients)
            ]
            previous = [g for g in summed if g is not None]
            if training_pass.is_widest and self.inplace_distillation:
                teacher = tf.nest.map_structure(tf.stop_gradient, y_pred)
            self._record_width(
                training_pass.entry,
                y,
                y_pred,
                sample_weight,
                losses,
                batch_size,
            )
            total_loss = loss if total_loss is None else total_loss + loss
        self._record_total(total_loss, batch_size)
        pairs = [(g, v) for g, v in zip(summed, variables) if g is not None]
        if pairs:
            self.optimizer.apply_gradients(pairs)
        with self._compile_metrics.reporting(self._reported_entries(passes)):
            return self.get_metrics_result()

    def _draw_widths(self, count):
        """`count` widths drawn uniformly in the width range, a function
        of the sandwich rule's seed and the optimizer's step only."""
        low, high = self.width_range
        seed = tf.stack(
            [
                tf.constant(self.sandwich_rule.seed, tf.int64),
                tf.cast(self.optimizer.iterations, tf.int64),
            ]
        )
        values = tf.random.stateless_uniform(
            (count,), seed=seed, minval=low, maxval=high, dtype=tf.float32
        )
        return [values[i] for i in range(count)]
