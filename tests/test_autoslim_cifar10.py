"""Smoke test of `examples/autoslim_cifar10.py --quick` (issue 13).

Runs the whole path (train a US-MobileNet v1 on a few CIFAR-10 images,
search, build and train the AutoSlim model, compare with uniform widths)
into a temporary folder, never over `zoo/results`, and checks the table.
"""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "autoslim_cifar10.py"
DATA = Path("/work/data")


@pytest.mark.slow
@pytest.mark.skipif(
    not (DATA / "train").is_dir() or not (DATA / "test").is_dir(),
    reason=f"no CIFAR-10 image folders at {DATA}",
)
def test_quick_run_searches_trains_and_writes_the_table(tmp_path):
    markdown = tmp_path / "autoslim_cifar10.md"
    command = [
        sys.executable,
        str(SCRIPT),
        "--quick",
        f"--data_dir={DATA}",
        f"--output_dir={tmp_path / 'run'}",
        f"--output_markdown={markdown}",
    ]
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=600
    )
    assert completed.returncode == 0, completed.stderr[-3000:]

    rows = json.loads((tmp_path / "run" / "results.json").read_text())
    assert [r["switch"] for r in rows] == [2.0, 1.0]
    for r in rows:
        assert r["macs"] <= r["target"]
        assert r["width_macs"] <= r["macs"]
        for key in ("autoslim", "us", "snet"):
            assert 0.0 <= r[key] <= 1.0
    text = markdown.read_text()
    assert "| switch | target (M MACs) | AutoSlim MACs (M) |" in text
    assert f"{rows[0]['macs'] / 1e6:.2f}" in text
    searched = json.loads((tmp_path / "run" / "search.json").read_text())
    assert len(searched) == 2

    # A second run resumes: every stage is loaded, nothing retrained.
    again = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Trained" not in again.stdout and "Searched" not in again.stdout
    assert json.loads((tmp_path / "run" / "results.json").read_text()) == rows


def test_bad_targets_are_one_line_errors(tmp_path):
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--targets=1.5", "--quick",
         f"--output_dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert completed.returncode == 2
    assert "--targets are fractions" in completed.stderr
    assert "Received: --targets=['1.5']" in completed.stderr
