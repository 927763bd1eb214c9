"""examples/on_device.py: one LiteRT file, measured, the width switched as
the latency budget changes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ai_edge_litert")

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "on_device.py"


def run(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


@pytest.mark.slow
def test_the_example_switches_width_as_the_budget_changes():
    result = run("--image_size=32", "--budgets_ms=1000,0.0001,1000,1000")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "s_mobilenet_v1.tflite: 4 widths in one file" in lines
    budgets = [line for line in lines if line.startswith("budget ")]
    assert budgets[0].startswith("budget 1000 ms: switches to width 1.0,")
    assert budgets[1].startswith(
        "budget 0.0001 ms: switches to width 0.25 (nothing fits: the "
        "narrowest),"
    )
    assert budgets[2].startswith("budget 1000 ms: switches to width 1.0,")
    assert budgets[3].startswith("budget 1000 ms: keeps width 1.0,")
    # Only the example's own output: no converter or delegate logs.
    assert result.stderr == ""


@pytest.mark.parametrize(
    "args, message",
    [
        (["--budgets_ms=fast"], "--budgets_ms must be numbers"),
        (["--budgets_ms=-1"], "--budgets_ms must be positive"),
        (["--tflite=/nonexistent.tflite"], "No file at --tflite"),
    ],
)
def test_bad_flags_are_one_line(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_the_example_saves_then_reads_the_latency_table(tmp_path):
    import keras

    import keras_slimmable as ks
    from keras_slimmable import export
    from keras_slimmable import profiling

    inputs = keras.Input((16, 16, 3))
    x = ks.SlimmableConv2D((8, 16), 3, padding=1)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = ks.SlimmableDense(5)(x)
    model = ks.SlimmableModel(inputs, outputs, widths=(0.5, 1.0))
    path = export.export_tflite(model, tmp_path / "m.tflite", widths="all")
    first = run(f"--tflite={path}", "--save_table", "--runs=3")
    assert first.returncode == 0, first.stderr[-3000:]
    assert "Timing every width: no saved latency table." in first.stdout
    assert "Saved the latency table m.tflite.latency.json" in first.stdout
    # The app's table is the package's format: it loads and matches.
    measured, table = profiling.load_latency_table(path, num_threads=1)
    assert sorted(measured) == [0.5, 1.0]
    assert all(t["runs"] == 3 for t in measured.values())
    second = run(f"--tflite={path}", "--budgets_ms=1000")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Read the latency table m.tflite.latency.json" in second.stdout
    median = measured[1.0]["median_ms"]
    assert f"width 1.0   {median:7.2f} ms (saved)" in second.stdout
    assert all(t["after_switch_median_ms"] > 0 for t in measured.values())
    # A table of the older format (every call timed after a switch) is
    # timed again.
    table_path = profiling.latency_table_path(path)
    old = json.loads(table_path.read_text())
    table_path.write_text(json.dumps(dict(old, version=1)))
    fourth = run(f"--tflite={path}", "--budgets_ms=1000")
    assert fourth.returncode == 0, fourth.stderr[-3000:]
    assert "Timing every width: the saved latency table is of version 1" in (
        fourth.stdout
    )
    # A damaged table is not trusted: timed again, saying why.
    table_path.write_text(json.dumps(old))
    table_path.write_text(table_path.read_text()[:40])
    third = run(f"--tflite={path}", "--budgets_ms=1000")
    assert third.returncode == 0, third.stderr[-3000:]
    assert "Timing every width: the saved latency table is damaged" in (
        third.stdout
    )
    assert "budget 1000 ms: switches to width 1.0," in third.stdout
