"""Slimmable training on JAX: Algorithm 1 with stateless calls.

Keras's JAX trainer keeps the model's state outside its variables during
`fit` and threads it through a jitted, stateless `train_step(state, data)`.
Here that step runs every width from the widest to the narrowest: a
`jax.value_and_grad` of a stateless forward at that width, its loss and its
batch-norm updates (which the next width's forward starts from), the
gradients summed, then one `optimizer.stateless_apply`.

Under a `keras.distribution` (`keras_slimmable.distribute`), Keras's own
machinery compiles that step with the variables' shardings and feeds it
global batches sharded over the batch axis: the step is written for the
global batch, and XLA reduces the gradients and batch-norm statistics
across devices and processes.
"""

import jax
import keras
import numpy as np

from keras_slimmable.trainers.base import SlimmableTrainerBase
from keras_slimmable.trainers.base import _batch_size


class JaxSlimmableTrainer(SlimmableTrainerBase):
    """Mixed into `SlimmableModel` ahead of Keras's JAX trainer."""

    # Keras's JAX `fit`, `evaluate` and `predict` take the values out of
    # the model's variables while they run and put them back at the end;
    # an error in between (a broken loss, a bad batch) left every variable
    # empty and the model unusable. JAX arrays are immutable, so keeping
    # references to the values before is free. A variable left empty gets
    # its value from before back; one Keras has put back keeps that (its
    # value after the last completed step): the values from before were
    # donated to the first compiled step and are gone (and restoring them
    # made the model unusable after an error at any later step).

    def _keeping_state(self, method, *args, **kwargs):
        variables = list(self.variables)
        if getattr(self, "optimizer", None) is not None:
            variables += list(self.optimizer.variables)
        values = [variable.value for variable in variables]
        try:
            return method(*args, **kwargs)
        except BaseException:
            for variable, value in zip(variables, values):
                # `_value` is what Keras's JAX trainer empties (`None`);
                # `.value` would make up a placeholder for it.
                current = variable._value
                if current is None or (
                    isinstance(current, jax.Array) and current.is_deleted()
                ):
                    variable.assign(value)
            raise

    def fit(self, *args, **kwargs):
        return self._keeping_state(super().fit, *args, **kwargs)

    def evaluate(self, *args, **kwargs):
        return self._keeping_state(super().evaluate, *args, **kwargs)

    def predict(self, *args, **kwargs):
        return self._keeping_state(super().predict, *args, **kwargs)

    def predict_step(self, state, data):
        outputs, non_trainable_variables = super().predict_step(state, data)
        distribution = keras.distribution.distribution()
        if distribution is not None and jax.process_count() > 1:
            # Each process holds only its share of a batch-sharded output,
            # which Keras's `predict` cannot fetch (nor concatenate): every
            # process gets the whole batch's, as from one process.
            replicated = jax.sharding.NamedSharding(
                distribution.device_mesh.backend_mesh,
                jax.sharding.PartitionSpec(),
            )
            outputs = jax.tree_util.tree_map(
                lambda output: jax.lax.with_sharding_constraint(
                    output, replicated
                ),
                outputs,
            )
        return outputs, non_trainable_variables

    def _is_tracing(self, inputs):
        return any(
            isinstance(t, jax.core.Tracer) for t in keras.tree.flatten(inputs)
        )

    # Inference ----------------------------------------------------------

    def __call__(self, *args, **kwargs):
        # One eager inference call on one array skips Keras's per-call
        # bookkeeping and runs the width's jitted function directly (as on
        # TensorFlow); the function itself goes through `__call__` inside.
        if (
            len(args) == 1
            and not (set(kwargs) - {"width", "training"})
            and not kwargs.get("training")
            and self.built
            and isinstance(args[0], (np.ndarray, jax.Array))
            and not isinstance(args[0], jax.core.Tracer)
        ):
            active = self._active_width(kwargs.get("width"))
            return self._run_at_width(args[0], active)
        return super().__call__(*args, **kwargs)

    def _run_at_width(self, inputs, active, training=None, mask=None):
        """Eager inference runs the width's jitted function, given the
        variables' current values (so never stale, never retraced)."""
        if training or mask is not None or self._is_tracing(inputs):
            return self._forward(inputs, active, training=training, mask=mask)
        return self._inference_function(active)(
            [v.value for v in self.trainable_variables],
            [v.value for v in self.non_trainable_variables],
            inputs,
        )

    def _inference_function(self, active):
        cache = self._functions
        function = cache.inference.get(active)
        if function is None:
            with cache.lock:
                function = cache.inference.get(active)
                if function is None:
                    width = active

                    def infer(trainable, non_trainable, inputs):
                        outputs, _ = self.stateless_call(
                            trainable,
                            non_trainable,
                            inputs,
                            training=False,
                            width=width,
                        )
                        return outputs

                    function = jax.jit(infer)
                    cache.inference[active] = function
        return function

    # Training -----------------------------------------------------------

    def _stateless_width_loss(
        self,
        trainable_variables,
        non_trainable_variables,
        optimizer_variables,
        x,
        y,
        sample_weight,
        training_pass,
        teacher,
    ):
        """One training pass's scaled loss, and what the step needs from
        it."""
        y_pred, non_trainable_variables, forward_losses = self.stateless_call(
            trainable_variables,
            non_trainable_variables,
            x,
            return_losses=True,
            training=True,
            width=training_pass.active,
        )
        # The regularization losses read the variables: map them to the
        # values being differentiated. `add_loss` losses of the forward
        # pass come through `_losses_override`, as in Keras's trainer.
        mapping = list(zip(self.trainable_variables, trainable_variables))
        mapping += list(
            zip(self.non_trainable_variables, non_trainable_variables)
        )
        with keras.StatelessScope(state_mapping=mapping):
            if forward_losses:
                self._losses_override = forward_losses
            try:
                losses = self._pass_loss(
                    x, y, y_pred, sample_weight, training_pass, teacher
                )
            finally:
                self._losses_override = []
        scaled = losses[0]
        if self.optimizer is not None:
            optimizer_mapping = list(
                zip(self.optimizer.variables, optimizer_variables)
            )
            with keras.StatelessScope(state_mapping=optimizer_mapping):
                scaled = self.optimizer.scale_loss(scaled)
        return scaled, (losses, y_pred, non_trainable_variables)

    def _stateless_record(self, metrics_variables, record):
        """Runs `record()` (metric updates) on `metrics_variables`' values."""
        mapping = list(zip(self.metrics_variables, metrics_variables))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            logs = record()
        updated = []
        for variable in self.metrics_variables:
            value = scope.get_current_value(variable)
            updated.append(variable.value if value is None else value)
        return logs, updated

    def train_step(self, state, data):
        """One step of Algorithm 1 of the paper, stateless (see module)."""
        self._check_compiled_loss()
        (
            trainable_variables,
            non_trainable_variables,
            optimizer_variables,
            metrics_variables,
        ) = state
        x, y, sample_weight = self._unpack_batch(data)
        gradient_fn = jax.value_and_grad(
            self._stateless_width_loss, has_aux=True
        )
        summed = None
        per_width = []
        teacher = None
        iteration = optimizer_variables[
            _position(self.optimizer.variables, self.optimizer.iterations)
        ]
        passes = self._training_passes(
            lambda count: self._draw_widths(count, iteration)
        )
        for training_pass in passes:
            (_, (losses, y_pred, non_trainable_variables)), gradients = (
                gradient_fn(
                    trainable_variables,
                    non_trainable_variables,
                    optimizer_variables,
                    x,
                    y,
                    sample_weight,
                    training_pass,
                    teacher,
                )
            )
            summed = (
                gradients
                if summed is None
                else jax.tree_util.tree_map(jax.numpy.add, summed, gradients)
            )
            if training_pass.is_widest:
                teacher = jax.lax.stop_gradient(y_pred)
            per_width.append((training_pass.entry, losses, y_pred))
        trainable_variables, optimizer_variables = (
            self.optimizer.stateless_apply(
                optimizer_variables, summed, trainable_variables
            )
        )
        logs, metrics_variables = self._stateless_record(
            metrics_variables,
            lambda: self._record_step(x, y, sample_weight, per_width, passes),
        )
        state = (
            trainable_variables,
            non_trainable_variables,
            optimizer_variables,
            metrics_variables,
        )
        return logs, state

    def _record_step(self, x, y, sample_weight, per_width, passes):
        count = _batch_size(x)
        total_loss = None
        for entry, losses, y_pred in per_width:
            self._record_width(entry, y, y_pred, sample_weight, losses, count)
            loss = losses[0]
            total_loss = loss if total_loss is None else total_loss + loss
        self._record_total(total_loss, count)
        with self._compile_metrics.reporting(self._reported_entries(passes)):
            return self.get_metrics_result()

    def _draw_widths(self, count, iteration):
        """`count` widths drawn uniformly in the width range, a function
        of the sandwich rule's seed and the optimizer's step only."""
        low, high = self.width_range
        key = jax.random.fold_in(
            jax.random.key(self.sandwich_rule.seed), iteration
        )
        values = jax.random.uniform(
            key, (count,), minval=low, maxval=high, dtype="float32"
        )
        return [values[i] for i in range(count)]

    def test_step(self, state, data):
        """Evaluates every width on the batch, stateless."""
        trainable_variables, non_trainable_variables, metrics_variables = state
        x, y, sample_weight = self._unpack_batch(data)
        mapping = list(zip(self.trainable_variables, trainable_variables))
        mapping += list(
            zip(self.non_trainable_variables, non_trainable_variables)
        )
        mapping += list(zip(self.metrics_variables, metrics_variables))
        with keras.StatelessScope(state_mapping=mapping) as scope:
            logs = self._evaluate_widths(x, y, sample_weight)
        updated = []
        for variable in self.metrics_variables:
            value = scope.get_current_value(variable)
            updated.append(variable.value if value is None else value)
        return logs, (
            trainable_variables,
            non_trainable_variables,
            updated,
        )


def _position(variables, variable):
    """The position of `variable` in `variables` (by identity)."""
    for position, candidate in enumerate(variables):
        if candidate is variable:
            return position
    raise ValueError(f"Variable {variable.path} is not among the variables.")
