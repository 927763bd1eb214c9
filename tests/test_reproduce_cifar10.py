"""Smoke test of `examples/reproduce_cifar10.py --quick` (issue 5).

Runs the whole script (a few hundred CIFAR-10 images, one epoch, all three
methods) into a temporary folder, never over `zoo/results`, and checks the
table and the plot it writes.
"""

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "reproduce_cifar10.py"
ARCHIVE = REPO.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"
WIDTHS = ("w0.25", "w0.5", "w0.75", "w1.0")
METHODS = ("(a) individual", "(b) slimmable", "(c) naive")


@pytest.mark.slow
@pytest.mark.skipif(
    not ARCHIVE.is_file(),
    reason=f"the CIFAR-10 archive is not beside the repository: {ARCHIVE}",
)
def test_quick_run_writes_the_table_and_the_plot(tmp_path):
    markdown = tmp_path / "results" / "cifar10.md"
    plot = tmp_path / "results" / "cifar10.png"
    completed = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            f"--archive={ARCHIVE}",
            f"--output_markdown={markdown}",
            f"--output_plot={plot}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]

    text = markdown.read_text()
    header = next(line for line in text.splitlines() if "| width |" in line)
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    assert columns[:2] == ["width", "MACs (M)"]
    assert columns[2:] == list(METHODS)
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells and cells[0] in WIDTHS:
            rows[cells[0]] = cells
    assert sorted(rows) == sorted(WIDTHS)
    macs = [float(rows[w][1]) for w in WIDTHS]
    assert all(m > 0 for m in macs) and macs == sorted(macs)
    for width in WIDTHS:
        accuracies = [float(cell) for cell in rows[width][2:]]
        assert len(accuracies) == len(METHODS)
        assert all(0.0 <= a <= 1.0 for a in accuracies), rows[width]
    assert re.search(r"Command: `python examples/reproduce_cifar10.py", text)
    assert "--quick" in text
    assert re.search(r"Wall time: [0-9.]+ min", text)
    # The progress lines: one per epoch of every trained network.
    assert completed.stdout.count("epoch 1/1") == 2 + len(WIDTHS)

    data = plot.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert data[12:16] == b"IHDR"
    assert not list(tmp_path.rglob("*.tmp"))
