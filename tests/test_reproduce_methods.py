"""The reproduction scripts that train several methods refuse an unknown
`--methods` entry before doing anything (one shared check,
`examples/reproduce_cifar10.py`'s `check_methods`)."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize(
    "script, good",
    [("reproduce_us_cifar10.py", "us"), ("reproduce_detection.py", "naive")],
)
def test_unknown_method_is_one_error_line_and_writes_nothing(
    tmp_path, script, good
):
    output = tmp_path / "run"
    completed = subprocess.run(
        [
            sys.executable,
            str(REPO / "examples" / script),
            f"--methods={good},bogus",
            f"--output_dir={output}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 2, completed.stderr[-3000:]
    (line,) = [
        line
        for line in completed.stderr.splitlines()
        if f"examples/{script}: error:" in line
    ]
    assert "Unknown methods ['bogus']" in line
    assert f"--methods={good},bogus" in line
    assert not output.exists()
