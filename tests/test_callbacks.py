"""keras_slimmable.callbacks.CompactProgbarLogger: short progress lines,
every metric still logged (issue 9 item 5: 677-character lines)."""

import re
import sys

import keras
import numpy as np
import pytest

import keras_slimmable as ks
from keras_slimmable.callbacks import CompactProgbarLogger

WIDTHS = (0.25, 0.5, 0.75, 1.0)


def tiny_model():
    inputs = keras.Input((6, 6, 1))
    channels = ks.scale_channels(8, WIDTHS)
    x = ks.SlimmableConv2D(channels, 3, padding=1)(inputs)
    x = ks.SwitchableBatchNormalization(channels)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = ks.SlimmableDense(3)(x)
    model = ks.SlimmableModel(inputs, outputs, widths=WIDTHS)
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def arrays(count=48):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(count, 6, 6, 1)).astype("float32")
    y = rng.integers(0, 3, count)
    return x, y


def fit(verbose, callbacks):
    keras.utils.set_random_seed(0)
    model = tiny_model()
    x, y = arrays()
    history = model.fit(
        x,
        y,
        batch_size=16,
        epochs=2,
        validation_data=arrays(16),
        verbose=verbose,
        callbacks=callbacks,
    )
    return model, history


def lines(text):
    return [line for line in re.split(r"[\r\n]", text) if line.strip()]


EXPECTED_KEYS = (
    {"loss"}
    | {
        f"{prefix}w{w}_{metric}"
        for prefix in ("", "val_")
        for w in WIDTHS
        for metric in ("loss", "accuracy")
    }
    | {"val_loss"}
)


def test_verbose_2_prints_one_short_line_per_epoch(capsys):
    _, history = fit(2, [CompactProgbarLogger()])
    printed = capsys.readouterr().out
    epochs = [line for line in lines(printed) if re.match(r"\d+/\d+ ", line)]
    assert len(epochs) == 2, printed
    for line in lines(printed):
        assert len(line) <= 120, (len(line), line)
    # Keras's own progress bar was not added.
    assert "w0.25_loss" not in printed
    # Every metric is still logged, as with Keras's progress bar.
    assert set(history.history) == EXPECTED_KEYS
    last = {key: values[-1] for key, values in history.history.items()}
    accuracies = " ".join(f"{w}:{last[f'w{w}_accuracy']:.3f}" for w in WIDTHS)
    validation = " ".join(f"{last[f'val_w{w}_accuracy']:.3f}" for w in WIDTHS)
    assert re.match(r"3/3 \d+s - loss ", epochs[-1]), epochs[-1]
    assert epochs[-1].endswith(
        f" - loss {last['loss']:.3f} · acc {accuracies} │ val loss "
        f"{last['val_loss']:.3f} · acc {validation}"
    ), epochs[-1]


@pytest.mark.slow
def test_the_logs_are_the_same_as_with_keras_progress_bar(capsys):
    _, compact = fit(2, [CompactProgbarLogger()])
    # A progress bar of the user's own replaces the compact default.
    _, default = fit(2, [keras.callbacks.ProgbarLogger()])
    assert set(compact.history) == set(default.history) == EXPECTED_KEYS
    for key, values in default.history.items():
        np.testing.assert_allclose(compact.history[key], values, rtol=1e-5)
    # Keras's lines, for the record: far longer.
    longest = max(len(line) for line in lines(capsys.readouterr().out))
    assert longest > 300


def test_verbose_1_updates_one_line_in_place(capsys, monkeypatch):
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(
        "keras_slimmable.callbacks._Line.interval", 0.0, raising=False
    )
    fit(1, [CompactProgbarLogger()])
    printed = capsys.readouterr().out
    assert "\r" in printed and "━" in printed  # updated during the epoch
    for line in lines(printed):
        assert len(line) <= 120, (len(line), line)
    finished = [line for line in printed.split("\n") if "val loss" in line]
    assert len(finished) == 2


def test_verbose_1_piped_prints_the_finished_lines_only(capsys):
    # Other libraries import ipykernel in plain scripts (tfds does): that
    # is no notebook.
    import ipykernel  # noqa: F401

    fit(1, [CompactProgbarLogger()])
    printed = capsys.readouterr().out
    assert "\r" not in printed
    assert len([line for line in lines(printed) if "val loss" in line]) == 2


def test_fit_and_evaluate_show_the_compact_bar_by_default(capsys):
    model, history = fit(2, None)
    x, y = arrays(16)
    model.evaluate(x, y, verbose=2)
    printed = lines(capsys.readouterr().out)
    assert printed and all(len(line) <= 120 for line in printed), printed
    assert "w0.25_loss" not in "".join(printed)
    assert set(history.history) == EXPECTED_KEYS


def test_verbose_0_prints_nothing(capsys):
    fit(0, [CompactProgbarLogger()])
    assert capsys.readouterr().out == ""


def test_evaluate_prints_a_compact_line(capsys):
    model, _ = fit(0, None)
    x, y = arrays(16)
    results = model.evaluate(
        x, y, verbose=1, callbacks=[CompactProgbarLogger()], return_dict=True
    )
    printed = lines(capsys.readouterr().out)
    assert len(printed) == 1 and len(printed[0]) <= 120, printed
    assert "val" not in printed[0]
    assert printed[0].endswith(
        f"acc 0.25:{results['w0.25_accuracy']:.3f} "
        f"0.5:{results['w0.5_accuracy']:.3f} "
        f"0.75:{results['w0.75_accuracy']:.3f} "
        f"1.0:{results['w1.0_accuracy']:.3f}"
    ), printed


def test_summary_of_a_plain_model_shows_every_metric():
    callback = CompactProgbarLogger(digits=2)
    callback.set_model(keras.Sequential([keras.Input((2,))]))
    text = callback.summary({"loss": 0.5, "mae": 0.00012})
    assert text == "loss 0.50 · mae 1.2e-04"


@pytest.mark.parametrize("value", [-1, 1.5, True])
def test_arguments_are_checked(value):
    with pytest.raises(ValueError, match=f"digits={value!r}"):
        CompactProgbarLogger(digits=value)
