"""Callbacks for training slimmable models."""

import os
import sys
import time

import keras

# Private Keras API: `print_msg` is how Keras's own progress bar prints, so
# `keras.config.disable_interactive_logging()` sends these lines to absl
# logging as it does Keras's. tests/test_keras_private_api.py checks it.
from keras.src.utils import io_utils

from keras_slimmable.widths import width_name

# Metric names shown as "acc".
_ACCURACY_NAMES = (
    "acc",
    "accuracy",
    "binary_accuracy",
    "categorical_accuracy",
    "sparse_categorical_accuracy",
)


class CompactProgbarLogger(keras.callbacks.ProgbarLogger):
    """A progress bar that shows a slimmable model's training at a glance.

    A `SlimmableModel` logs, for every width, its loss and every compiled
    metric (`w0.25_loss`, `w0.25_accuracy`, ..., `val_w0.25_accuracy`)
    next to the summed `loss`: 13 numbers for four widths and one metric,
    more than 600 characters in Keras's progress line. This callback
    shows the summed loss and each width's first compiled metric,
    compactly, and the validation ones at the end of an epoch (one line of
    116 characters for four widths, wrapped here):

    ```
    Epoch 3/15
    23/23 1s - loss 1.234 · acc 0.25:0.612 0.5:0.701 0.75:0.744 1.0:0.761
        │ val loss 1.301 · acc 0.600 0.690 0.735 0.750
    ```

    The validation accuracies are in the same width order. It changes only
    what is printed: `History`, `TensorBoard` and every other callback
    still receive all the metrics.

    It replaces Keras's own progress bar (it is a
    `keras.callbacks.ProgbarLogger`, so `fit`, `evaluate` and `predict` do
    not add another) and follows the same `verbose` semantics: `1` updates
    one line during each epoch (on a terminal or in a notebook; piped, it
    prints only the finished line) and `2` prints one line per epoch.
    Metrics of a model without widths are shown as `name value`.

    Example:

    ```python
    model.fit(
        x, y, epochs=15, validation_data=(x_val, y_val), verbose=2,
        callbacks=[keras_slimmable.callbacks.CompactProgbarLogger()],
    )
    ```

    Args:
        bar_width: the length of the progress bar (`verbose=1`). Defaults
            to `10`.
        digits: the decimals shown for the loss and the metrics. Defaults
            to `3`.
    """

    def __init__(self, bar_width=10, digits=3):
        super().__init__()
        for name, value in (("bar_width", bar_width), ("digits", digits)):
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(
                    f"`{name}` must be an int >= 0. Received: {name}={value!r}"
                )
            if value < 0:
                raise ValueError(
                    f"`{name}` must be an int >= 0. Received: {name}={value!r}"
                )
        self.bar_width = bar_width
        self.digits = digits

    # Private Keras API: `ProgbarLogger`'s progress-bar hooks, overridden so
    # that Keras's own target/step bookkeeping (which differs between fit,
    # evaluate and predict) stays Keras's. Checked by
    # tests/test_keras_private_api.py.
    def _maybe_init_progbar(self):
        if self.progbar is None:
            self.progbar = _Line(self.target, self.verbose, self.bar_width)

    def _update_progbar(self, batch, logs=None):
        self._maybe_init_progbar()
        self.seen = batch + 1  # One-indexed.
        if self.verbose == 1:
            self.progbar.update(self.seen, self.summary(logs))

    def _finalize_progbar(self, logs):
        self._maybe_init_progbar()
        if self.target is None:
            self.target = self.seen
            self.progbar.target = self.target
        self.progbar.update(self.target, self.summary(logs), finalize=True)

    def summary(self, logs):
        """The compact text of `logs`, as printed after the step count.

        Args:
            logs: a dict of metric names to values, as passed to callbacks.

        Returns:
            A string such as
            `"loss 1.234 · acc 0.25:0.612 0.5:0.701 │ val loss ..."`.
        """
        logs = dict(logs or {})
        if not logs:
            return ""
        widths = getattr(self.model, "widths", None)
        if not widths:
            return " · ".join(
                f"{key} {self._number(value)}" for key, value in logs.items()
            )
        parts = [self._part(logs, "", widths, labels=True)]
        if any(key.startswith("val_") for key in logs):
            validation = self._part(logs, "val_", widths, labels=False)
            parts.append("val " + validation)
        return " │ ".join(part for part in parts if part.strip())

    def _part(self, logs, prefix, widths, labels):
        items = []
        if prefix + "loss" in logs:
            items.append(f"loss {self._number(logs[prefix + 'loss'])}")
        name, values = None, []
        for width in widths:
            start = f"{prefix}{width_name(width)}_"
            keys = [
                key
                for key in logs
                if key.startswith(start) and key != start + "loss"
            ]
            if not keys:
                continue
            metric = keys[0][len(start) :]
            name = name or ("acc" if metric in _ACCURACY_NAMES else metric)
            value = self._number(logs[keys[0]])
            label = width_name(width)[1:]  # "0.25", "1.0" as in the logs
            values.append(f"{label}:{value}" if labels else value)
        if values:
            items.append(f"{name} {' '.join(values)}")
        return " · ".join(items)

    def _number(self, value):
        try:
            value = float(value)
        except (TypeError, ValueError):
            return str(value)
        if value != 0 and abs(value) < 10**-self.digits:
            return f"{value:.{max(self.digits - 1, 1)}e}"
        return f"{value:.{self.digits}f}"


class _Line:
    """One progress line: `step/target`, a bar and a time, then the text.

    `verbose=1` rewrites the line in place (at most every 0.05 s) where
    that works (a terminal, a notebook), else prints only the finished
    line; `verbose=2` prints only the finished line.
    """

    interval = 0.05

    def __init__(self, target, verbose, bar_width):
        self.target = target
        self.verbose = verbose
        self.bar_width = bar_width
        self.start = time.time()
        self.last_update = 0.0
        self.previous_width = 0
        self.dynamic = (
            (hasattr(sys.stdout, "isatty") and sys.stdout.isatty())
            or _in_notebook()
            or "PYCHARM_HOSTED" in os.environ
        )

    def update(self, current, text, finalize=False):
        if not self.verbose:
            return
        now = time.time()
        if not finalize:
            if self.verbose != 1 or not self.dynamic:
                return
            if now - self.last_update < self.interval:
                return
        self.last_update = now
        count = f"{current}/{self.target}" if self.target else f"{current}"
        elapsed = now - self.start
        if finalize:
            line = f"{count} {_duration(elapsed)}"
        else:
            line = count
            if self.target and self.bar_width:
                done = int(self.bar_width * min(current / self.target, 1))
                line += " " + "━" * done + "─" * (self.bar_width - done)
            if self.target and current:
                eta = elapsed / current * (self.target - current)
                line += f" {_duration(eta)}"
        if text:
            line += " - " + text
        if self.dynamic and self.verbose == 1:
            padding = " " * max(self.previous_width - len(line), 0)
            io_utils.print_msg(
                "\r" + line + padding + ("\n" if finalize else ""),
                line_break=False,
            )
            self.previous_width = 0 if finalize else len(line)
        else:
            io_utils.print_msg(line)


def _in_notebook():
    """Whether this runs in a Jupyter kernel.

    Not `"ipykernel" in sys.modules` (Keras's test): other libraries
    import it (tensorflow-datasets' progress bars do) in plain scripts.
    """
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and getattr(shell, "kernel", None) is not None


def _duration(seconds):
    seconds = int(round(seconds))
    if seconds >= 3600:
        return (
            f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
        )
    if seconds >= 60:
        return f"{seconds // 60}:{seconds % 60:02d}"
    return f"{seconds}s"
