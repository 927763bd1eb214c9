"""`measure_latency` and `select_width`: choosing a width by latency.

No test asserts a time: the machine's speed and load are unknown. The
choice is tested on measurements given by hand; the measuring, on its
structure (keys, percentile order, counts) and on which calls it makes in
which order.
"""

import math
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

import keras_slimmable as ks
from keras_slimmable import export

WIDTHS = (0.25, 0.5, 0.75, 1.0)
REPO = Path(__file__).resolve().parents[1]


def timing(median, spread=0.1):
    return {
        "median_ms": median,
        "p10_ms": median - spread,
        "p90_ms": median + spread,
        "runs": 50,
    }


MEASURED = {
    0.25: timing(1.0),
    0.5: timing(2.0),
    0.75: timing(3.5),
    1.0: timing(5.0),
}


@pytest.fixture(scope="module")
def tiny():
    keras.utils.set_random_seed(0)
    channels = ks.scale_channels(16, WIDTHS)
    inputs = keras.Input((8, 8, 3))
    x = ks.SlimmableConv2D(channels, 3, padding=1)(inputs)
    x = ks.SwitchableBatchNormalization(channels)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = ks.SlimmableDense(3)(x)
    return ks.SlimmableModel(inputs, outputs, widths=WIDTHS, name="tiny")


# select_width ----------------------------------------------------------------


@pytest.mark.parametrize(
    "budget, width",
    [
        (100.0, 1.0),
        (5.0, 1.0),  # A median equal to the budget fits.
        (4.99, 0.75),
        (3.0, 0.5),
        (1.0, 0.25),
        (1, 0.25),
    ],
)
def test_select_width_takes_the_widest_that_fits(budget, width):
    assert ks.select_width(None, budget, measurements=MEASURED) == width


def test_select_width_goes_by_width_not_by_order_or_monotonicity():
    # Noise can make a wider width measure faster: the widest fitting wins.
    noisy = {1.0: timing(2.9), 0.25: timing(1.0), 0.75: timing(3.2)}
    assert ks.select_width(None, 3.0, measurements=noisy) == 1.0
    assert ks.select_width(None, 2.0, measurements=noisy) == 0.25


def test_select_width_among_given_widths():
    chosen = ks.select_width(
        None, 10.0, widths=[0.25, 0.5], measurements=MEASURED
    )
    assert chosen == 0.5
    with pytest.raises(ValueError, match=r"Width 0\.6 was not measured"):
        ks.select_width(None, 10.0, widths=[0.6], measurements=MEASURED)


def test_select_width_none_fits_names_budget_and_fastest_median():
    with pytest.raises(ValueError) as info:
        ks.select_width(None, 0.5, measurements=MEASURED)
    message = str(info.value)
    assert "latency_budget_ms=0.5" in message
    assert "1.000 ms" in message
    assert "width 0.25" in message


@pytest.mark.parametrize("budget", [0, -1.0, math.nan, math.inf, True, "5"])
def test_select_width_rejects_bad_budgets(budget):
    with pytest.raises(ValueError, match=f"latency_budget_ms={budget!r}"):
        ks.select_width(None, budget, measurements=MEASURED)


def test_select_width_needs_measurements_keyed_by_width():
    with pytest.raises(ValueError, match="'model.tflite'"):
        ks.select_width(None, 5.0, measurements={"model.tflite": timing(1.0)})


def test_select_width_measures_when_not_given(tiny):
    assert ks.select_width(tiny, 1e9, runs=3) == 1.0
    with pytest.raises(ValueError, match="latency_budget_ms=1e-09"):
        ks.select_width(tiny, 1e-9, runs=3)


# measure_latency -------------------------------------------------------------


def check_structure(measurements, keys, runs):
    assert list(measurements) == list(keys)
    expected = {"median_ms", "p10_ms", "p90_ms", "runs"}
    if len(keys) > 1:
        expected.add("after_switch_median_ms")
    for summary in measurements.values():
        assert set(summary) == expected
        assert summary["runs"] == runs
        assert 0 < summary["p10_ms"] <= summary["median_ms"]
        assert summary["median_ms"] <= summary["p90_ms"]
        if len(keys) > 1:
            assert summary["after_switch_median_ms"] > 0


def test_measure_latency_of_a_slimmable_model(tiny):
    measurements = ks.measure_latency(tiny, runs=7, warmup=2)
    check_structure(measurements, WIDTHS, runs=7)
    subset = ks.measure_latency(
        tiny, widths=[1.0, 0.25], batch_size=3, runs=4, warmup=0
    )
    check_structure(subset, [0.25, 1.0], runs=4)


class RecordingModel:
    """Quacks like a SlimmableModel; records the width of every call."""

    def __init__(self, model):
        self.widths = model.widths
        self.input = model.input
        self.calls = []

    def __call__(self, x, width=None):
        self.calls.append((width, tuple(x.shape)))
        return np.zeros((x.shape[0], 3), "float32")


def test_measure_latency_warms_up_then_takes_turns_round_robin(tiny):
    model = RecordingModel(tiny)
    measurements = ks.measure_latency(
        model,
        widths=[0.25, 0.5, 1.0],
        batch_size=2,
        runs=5,
        warmup=3,
        calls_per_turn=3,
    )
    check_structure(measurements, [0.25, 0.5, 1.0], runs=5)
    widths = [width for width, _ in model.calls]
    assert {shape for _, shape in model.calls} == {(2, 8, 8, 3)}
    # Warm-up: each width's calls together, untimed.
    assert widths[:9] == [0.25] * 3 + [0.5] * 3 + [1.0] * 3
    # Then turns of 3 calls (1 after the switch + 2 steady), ascending so
    # that every turn follows another width, the last round only as long
    # as the 5 steady runs need.
    turns = [
        (0.25, 3), (0.5, 3), (1.0, 3),
        (0.25, 3), (0.5, 3), (1.0, 3),
        (0.25, 2), (0.5, 2), (1.0, 2),
    ]  # fmt: skip
    assert widths[9:] == [w for w, n in turns for _ in range(n)]


def test_measure_latency_one_call_per_turn_is_plain_round_robin(tiny):
    model = RecordingModel(tiny)
    measurements = ks.measure_latency(
        model, widths=[0.25, 1.0], runs=3, warmup=0, calls_per_turn=1
    )
    check_structure(measurements, [0.25, 1.0], runs=3)
    widths = [width for width, _ in model.calls]
    assert widths == [0.25, 1.0, 0.25, 1.0, 0.25, 1.0]
    for summary in measurements.values():
        # Every call follows another width: both figures are of them all.
        assert summary["after_switch_median_ms"] == summary["median_ms"]


class SlowAfterSwitchModel(RecordingModel):
    """Sleeps 30 ms on a call right after another width, 2 ms otherwise."""

    def __call__(self, x, width=None):
        import time

        previous = self.calls[-1][0] if self.calls else None
        time.sleep(0.030 if width != previous else 0.002)
        return super().__call__(x, width)


def test_measure_latency_reports_steady_calls_and_switches_apart(tiny):
    model = SlowAfterSwitchModel(tiny)
    measurements = ks.measure_latency(
        model, widths=[0.5, 1.0], runs=6, warmup=1, calls_per_turn=4
    )
    for summary in measurements.values():
        # The steady median is of the 2 ms calls only...
        assert 2.0 <= summary["p90_ms"] < 15.0
        # ...and the first call of each turn is the slow one.
        assert summary["after_switch_median_ms"] >= 30.0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(runs=0), "runs=0"),
        (dict(runs=2.5), "runs=2.5"),
        (dict(batch_size=0), "batch_size=0"),
        (dict(batch_size=True), "batch_size=True"),
        (dict(warmup=-1), "warmup=-1"),
        (dict(calls_per_turn=0), "calls_per_turn=0"),
        (dict(widths=[0.3]), "Unknown width 0.3"),
    ],
)
def test_measure_latency_errors_name_the_bad_value(tiny, kwargs, message):
    with pytest.raises(ValueError, match=message):
        ks.measure_latency(tiny, **kwargs)


def test_measure_latency_rejects_other_models():
    with pytest.raises(TypeError, match="model=42"):
        ks.measure_latency(42)


# TFLite ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tflite_files(tiny, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tflite")
    return {
        width: export.export_tflite(tiny, folder / f"w{width}.tflite", width)
        for width in (0.25, 1.0)
    }


def test_measure_latency_of_tflite_files(tflite_files):
    measurements = ks.measure_latency(tflite_files, runs=5, warmup=1)
    check_structure(measurements, [0.25, 1.0], runs=5)
    # Any batch size: the interpreter's input is resized.
    one = ks.measure_latency(
        {0.25: tflite_files[0.25]}, batch_size=4, runs=3, warmup=0
    )
    check_structure(one, [0.25], runs=3)
    assert ks.select_width(None, 1e9, measurements=measurements) == 1.0


def test_measure_latency_of_one_tflite_file(tflite_files):
    path = tflite_files[1.0]
    check_structure(ks.measure_latency(path, runs=3), [os.fspath(path)], runs=3)
    check_structure(
        ks.measure_latency(str(path), widths=[1.0], runs=3), [1.0], runs=3
    )
    with pytest.raises(ValueError, match=r"widths=\[0\.25, 1\.0\]"):
        ks.measure_latency(path, widths=[0.25, 1.0])


def test_measure_latency_tflite_errors(tflite_files, tmp_path):
    with pytest.raises(ValueError, match="No TFLite file for width 0.5"):
        ks.measure_latency(tflite_files, widths=[0.5])
    missing = tmp_path / "missing.tflite"
    with pytest.raises(FileNotFoundError, match="missing.tflite"):
        ks.measure_latency(missing)
    with pytest.raises(ValueError, match="keyed by width"):
        ks.measure_latency({"wide": missing})


# The example -----------------------------------------------------------------


@pytest.mark.slow
def test_select_width_example(tmp_path):
    out = tmp_path / "chosen.tflite"
    command = [
        sys.executable,
        str(REPO / "examples" / "select_width.py"),
        "--image_size=32",
        "--classes=10",
        "--widths=1.0,0.25",
        "--runs=3",
        "--warmup=1",
        "--budget_ms=1e9",
        f"--tflite_out={out}",
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Chosen width: 1.0" in result.stdout
    table = [line.split()[0] for line in result.stdout.splitlines()[2:4]]
    assert table == ["0.25", "1.00"]
    assert out.is_file() and out.stat().st_size > 0
    assert [p.name for p in tmp_path.iterdir()] == ["chosen.tflite"]

    # No width fits: a clear error, no file.
    result = subprocess.run(
        command[:-2] + ["--budget_ms=1e-6"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "latency_budget_ms=1e-06" in result.stderr


def test_measure_latency_of_one_file_with_a_signature_per_width(tiny, tmp_path):
    path = export.export_tflite(tiny, tmp_path / "all.tflite", widths="all")
    measurements = ks.measure_latency(path, runs=3, warmup=1)
    check_structure(measurements, list(WIDTHS), runs=3)
    some = ks.measure_latency(str(path), widths=[0.5, 0.25], runs=2)
    check_structure(some, [0.25, 0.5], runs=2)
    assert ks.select_width(path, 1e9, runs=2) == 1.0
    with pytest.raises(ValueError, match=r"no signature for width 0.3"):
        ks.measure_latency(path, widths=[0.3])
    with pytest.raises(ValueError, match="batch_size=4"):
        ks.measure_latency(path, batch_size=4)
