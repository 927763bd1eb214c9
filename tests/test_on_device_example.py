"""examples/on_device.py: one LiteRT file, measured, the width switched as
the latency budget changes."""

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
