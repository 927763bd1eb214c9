"""What slimmable training shares across backends.

Keras picks its trainer by backend (`keras/src/backend/<name>/trainer.py`);
so does `SlimmableModel`. Each backend file holds only what is specific to
it: how gradients are taken and summed over the widths. This class holds
the rest: every width's loss, what is logged, evaluation, and one compiled
predict function per width.
"""

import collections

import keras

from keras_slimmable.widths import ActiveWidth
from keras_slimmable.widths import implicit_width_scope


class TrainingPass(
    collections.namedtuple("TrainingPass", ["active", "entry", "is_widest"])
):
    """One width of a training step.

    Attributes:
        active: the `ActiveWidth` (a sampled one for a drawn width).
        entry: where its loss and metrics are logged: the width's position
            in the model's list, or after them (`sampled`).
        is_widest: whether it is the step's widest width (the first pass,
            whose loss holds the regularization and whose predictions are
            the soft targets of inplace distillation).
    """

    __slots__ = ()


class SlimmableTrainerBase:
    """Mixed into `SlimmableModel` ahead of the backend's trainer.

    The backend subclasses implement `train_step` (Algorithm 1: every width
    from the widest to the narrowest, gradients summed, one optimizer step)
    and, where it differs, `test_step`.
    """

    def _replicas_in_sync(self):
        """Replicas a `tf.distribute` strategy splits the batch over."""
        return 1

    def _is_tracing(self, inputs):
        """Whether `inputs` are being traced into a compiled function."""
        return False

    def predict_step(self, *args, **kwargs):
        # The predict function is kept per width (`make_predict_function`),
        # so its trace may read the default width.
        with implicit_width_scope():
            return super().predict_step(*args, **kwargs)

    def _unpack_batch(self, data):
        """`(x, y, sample_weight)` of a batch, with `y` and `sample_weight`
        turned into what the compiled loss takes (`_prepare_targets`)."""
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        return (x, *self._prepare_targets(x, y, sample_weight))

    def _prepare_targets(self, x, y, sample_weight):
        """Turns a batch's labels into the compiled loss's targets, once per
        step for every width (a detector encodes its boxes against its
        anchors here). Returns `(y, sample_weight)`; unchanged by default."""
        return y, sample_weight

    def _run_at_width(self, inputs, active, training=None, mask=None):
        return self._forward(inputs, active, training=training, mask=mask)

    # Private Keras trainer state used below, because the per-width losses
    # must be the very ones `compile` configured and `fit` logs:
    # `_compile_loss` (the compiled loss), `_compute_loss` (a subclass's
    # own `compute_loss`, through Keras's wrapper), `_aggregate_additional
    # _loss` (sums `add_loss` terms as Keras does, to the last bit),
    # `_compile_metrics` and `_loss_tracker` (the logged metrics). Each is
    # checked by tests/test_keras_private_api.py.

    def _training_passes(self, draw_widths):
        """The widths of one training step, widest first.

        Without a sandwich rule: every listed width (Algorithm 1). With
        one: the widest and narrowest of the range, then the widths
        `draw_widths(count)` returns (scalar float32 tensors, drawn by the
        backend from the rule's seed and the step number).
        """
        widths = self.widths
        rule = self.sandwich_rule
        if rule is None:
            return [
                TrainingPass(ActiveWidth(widths[i], i), i, i == len(widths) - 1)
                for i in reversed(range(len(widths)))
            ]
        low, high = self.width_range
        widest = self._active_width(high)
        narrowest = self._active_width(low)
        passes = [
            TrainingPass(widest, widest.index, True),
            TrainingPass(narrowest, narrowest.index, False),
        ]
        if rule.num_sampled:
            for value in draw_widths(rule.num_sampled):
                passes.append(
                    TrainingPass(
                        ActiveWidth(None, None, value), len(widths), False
                    )
                )
        return passes

    def _reported_entries(self, passes):
        """The metric entries a training step with `passes` updates."""
        return sorted({p.entry for p in passes})

    def _pass_loss(self, x, y, y_pred, sample_weight, training_pass, teacher):
        """The loss of one training pass, as `_width_loss` returns it: the
        labels' loss, or with inplace distillation (every pass but the
        widest) the loss against `teacher`, the widest's predictions."""
        from keras_slimmable.sandwich import distillation_loss

        if self.inplace_distillation and not training_pass.is_widest:
            loss = distillation_loss(
                teacher, y_pred, sample_weight, self._distill_from_logits
            )
            return loss, loss, None
        return self._width_loss(
            x,
            y,
            y_pred,
            sample_weight,
            is_widest=training_pass.is_widest,
            training=True,
        )

    def _check_compiled_loss(self):
        if self._compile_loss is None:
            raise ValueError(
                "A SlimmableModel trains and evaluates every width on the "
                "loss given to `compile()`. Received: loss=None"
            )

    def _data_loss(self, y, y_pred, sample_weight):
        """One width's data loss: the compiled loss (a subclass with losses
        of its own, such as a detector, overrides this)."""
        return self._compile_loss(y, y_pred, sample_weight)

    def _width_loss(self, x, y, y_pred, sample_weight, is_widest, training):
        """The loss of one width: `(objective, data_loss, regularization)`.

        Every width's objective is its compiled (data) loss; the widest
        width's also holds the model's additional losses (weight
        regularization, `add_loss`), as Keras's `compute_loss` sums them.
        So weight decay counts once per step, as the reference applies it
        once per optimizer step. The logs report every width's data loss
        alike, and the additional losses once, as `regularization_loss`.
        `regularization` is `None` where there is none (or where a
        subclass's own `compute_loss` leaves it inseparable).
        """
        if not is_widest:
            loss = self._data_loss(y, y_pred, sample_weight)
            return loss, loss, None
        if type(self).compute_loss is not keras.Model.compute_loss:
            loss = self._compute_loss(
                x=x,
                y=y,
                y_pred=y_pred,
                sample_weight=sample_weight,
                training=training,
            )
            return loss, loss, None
        data_loss = self._data_loss(y, y_pred, sample_weight)
        additional = [self._aggregate_additional_loss(a) for a in self.losses]
        if not additional:
            return data_loss, data_loss, None
        # Summed as `compute_loss` sums them, to the last bit.
        objective = keras.ops.sum([data_loss] + additional)
        return objective, data_loss, keras.ops.sum(additional)

    def _record_width(self, index, y, y_pred, sample_weight, losses, count):
        """Logs one width's data loss and metrics (and the regularization)."""
        _, data_loss, regularization = losses
        replicas = self._replicas_in_sync()
        self._compile_metrics.update_width(
            index, y, y_pred, sample_weight, data_loss * replicas, count
        )
        if regularization is not None:
            self._compile_metrics.update_regularization(
                regularization * replicas, count
            )

    def _record_total(self, total_loss, count):
        self._loss_tracker.update_state(
            total_loss * self._replicas_in_sync(), sample_weight=count
        )

    def _evaluate_widths(self, x, y, sample_weight):
        """Measures every width on one batch (the body of `test_step`)."""
        self._check_compiled_loss()
        count = _batch_size(x)
        total_loss = None
        for index in reversed(range(len(self.widths))):
            y_pred = self(x, training=False, width=self.widths[index])
            losses = self._width_loss(
                x,
                y,
                y_pred,
                sample_weight,
                is_widest=index == len(self.widths) - 1,
                training=False,
            )
            self._record_width(index, y, y_pred, sample_weight, losses, count)
            loss = losses[0]
            total_loss = loss if total_loss is None else total_loss + loss
        self._record_total(total_loss, count)
        return self.get_metrics_result()

    def test_step(self, data):
        """Evaluates every width on the batch."""
        x, y, sample_weight = self._unpack_batch(data)
        return self._evaluate_widths(x, y, sample_weight)

    def make_predict_function(self, force=False):
        """Keeps one predict function per width: `predict` after
        `set_width` never returns a stale width and never retraces."""
        cache = self._functions
        key = self.width
        with cache.lock:
            function = cache.predict.get(key)
            if function is None or force:
                super().make_predict_function(force=True)
                function = self.predict_function
                cache.predict[key] = function
        self.predict_function = function
        return function


def _batch_size(x):
    first = next(t for t in keras.tree.flatten(x) if t is not None)
    return keras.ops.shape(first)[0]
