"""Per-width loss and compiled metrics for `SlimmableModel`."""

import contextlib

import keras

from keras_slimmable.widths import width_name


class WidthMetrics(keras.metrics.Metric):
    """The loss and the compiled metrics of every width, side by side.

    `SlimmableModel.compile` installs one of these in place of Keras's
    compiled metrics, so `fit`, `evaluate` and the callbacks see, for every
    width, `w0.25_loss`, `w0.25_accuracy`, ... (and `val_...` in
    validation), next to the summed `loss`. Each width's loss is its data
    loss; a regularized model's additional losses (weight decay,
    `add_loss`), which count once per step, are `regularization_loss`.
    Keras builds it before tracing (`update_state` builds every width's
    metrics from one prediction) and resets it with the model's other
    metrics.

    Args:
        widths: the model's width list.
        extra_names: names of entries after the widths' (e.g.
            `("sampled",)`).
        metrics, weighted_metrics: as given to `compile`.
        output_names: the model's output names, for multi-output models.
        regularized: whether to report `regularization_loss`.
    """

    def __init__(
        self,
        widths,
        metrics,
        weighted_metrics,
        output_names=None,
        regularized=False,
        extra_names=(),
    ):
        super().__init__(name="width_metrics")
        # Imported here: a private Keras module, used for the same metric
        # resolution ("accuracy" -> the right accuracy) as `compile`.
        from keras.src.trainers.compile_utils import CompileMetrics

        self.widths = tuple(widths)
        # Entries beyond the widths (`"sampled"`: the sandwich rule's drawn
        # widths) come after them; `reported` says which entries `result`
        # shows (all, unless a trainer narrows it while it traces).
        self.width_names = [width_name(w) for w in self.widths]
        self.width_names += list(extra_names)
        self.reported = None
        self.loss_trackers = [
            keras.metrics.Mean(name=f"{name}_loss") for name in self.width_names
        ]
        self.regularization_tracker = (
            keras.metrics.Mean(name="regularization_loss")
            if regularized
            else None
        )
        self.compiled = []
        if metrics or weighted_metrics:
            self.compiled = [
                CompileMetrics(
                    _own_copies(metrics),
                    _own_copies(weighted_metrics),
                    output_names=output_names,
                )
                for _ in self.width_names
            ]

    @property
    def built(self):
        return all(m.built for m in self.compiled)

    @built.setter
    def built(self, value):
        # `Metric.__init__` assigns `built`; the state lives in the parts.
        pass

    @property
    def metrics(self):
        result = list(self.loss_trackers)
        if self.regularization_tracker is not None:
            result.append(self.regularization_tracker)
        for compiled in self.compiled:
            result.extend(compiled.metrics)
        return result

    @property
    def variables(self):
        return [v for m in self.metrics for v in m.variables]

    def update_state(self, y_true, y_pred, sample_weight=None):
        """Updates every width's compiled metrics with one prediction.

        Keras calls this once, symbolically, to build the metrics; training
        and evaluation use `update_width`.
        """
        for compiled in self.compiled:
            compiled.update_state(y_true, y_pred, sample_weight)

    def update_width(self, index, y_true, y_pred, sample_weight, loss, count):
        """Records the loss and the compiled metrics of the width `index`.

        Args:
            index: the position of the width in `widths`.
            y_true, y_pred, sample_weight: the batch at that width.
            loss: that width's loss on the batch.
            count: the batch size, weighting the loss average.
        """
        self.loss_trackers[index].update_state(loss, sample_weight=count)
        if self.compiled:
            self.compiled[index].update_state(y_true, y_pred, sample_weight)

    def update_regularization(self, loss, count):
        """Records the step's additional losses (once per step)."""
        if self.regularization_tracker is not None:
            self.regularization_tracker.update_state(loss, sample_weight=count)

    def reset_state(self):
        for tracker in self.loss_trackers:
            tracker.reset_state()
        if self.regularization_tracker is not None:
            self.regularization_tracker.reset_state()
        for compiled in self.compiled:
            compiled.reset_state()

    @contextlib.contextmanager
    def reporting(self, entries):
        """Within it, `result` shows only the entries `entries` (positions
        in `width_names`): those a training step updates."""
        previous, self.reported = self.reported, tuple(entries)
        try:
            yield
        finally:
            self.reported = previous

    def result(self):
        results = {}
        for index, name in enumerate(self.width_names):
            if self.reported is not None and index not in self.reported:
                continue
            results[f"{name}_loss"] = self.loss_trackers[index].result()
            if self.compiled:
                for key, value in self.compiled[index].result().items():
                    results[f"{name}_{key}"] = value
        if self.regularization_tracker is not None:
            results["regularization_loss"] = (
                self.regularization_tracker.result()
            )
        return results


def _own_copies(spec):
    """`spec` with every metric instance replaced by a fresh copy.

    A metric instance given to `compile` holds state; each width needs its
    own, or all widths would report one pooled value. Names and callables
    are resolved anew per width by Keras anyway.
    """
    if isinstance(spec, keras.metrics.Metric):
        return spec.__class__.from_config(spec.get_config())
    if isinstance(spec, dict):
        return {key: _own_copies(value) for key, value in spec.items()}
    if isinstance(spec, (list, tuple)):
        return type(spec)(_own_copies(value) for value in spec)
    return spec
