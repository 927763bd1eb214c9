"""Smoke test of `examples/reproduce_us_cifar10.py --quick` (issue 13).

Runs the whole script (a few hundred CIFAR-10 images, one epoch, the two
universally slimmable networks and the S-Net) into a temporary folder,
never over `zoo/results`; checks the table and the plot; then resumes from
the kept models and results as a rerun after a kill would.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "reproduce_us_cifar10.py"
ARCHIVE = REPO.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"
# 0.25 to 1.0 every 1/16, written as the script's width names.
WIDTHS = [f"w{0.25 + 0.0625 * i}" for i in range(13)]
S_WIDTHS = ("w0.25", "w0.5", "w0.75", "w1.0")
METHODS = ("US + inplace distillation", "US, no distillation")
S_NET = "S-Net (Algorithm 1)"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not ARCHIVE.is_file(),
        reason=f"the CIFAR-10 archive is not beside the repository: {ARCHIVE}",
    ),
]


def run_script(folder):
    completed = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            f"--archive={ARCHIVE}",
            f"--output_dir={folder / 'run'}",
            f"--output_markdown={folder / 'results' / 'us.md'}",
            f"--output_plot={folder / 'results' / 'us.png'}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed


def table(text):
    header = next(line for line in text.splitlines() if "| width |" in line)
    columns = [cell.strip() for cell in header.strip("|").split("|")]
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells and cells[0] in WIDTHS:
            rows[cells[0]] = cells
    return columns, rows


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("us_cifar10")
    return folder, run_script(folder)


def test_quick_run_writes_every_width_and_the_plot(quick_run):
    folder, completed = quick_run
    text = (folder / "results" / "us.md").read_text()
    columns, rows = table(text)
    assert columns == ["width", "MACs (M)", *METHODS, S_NET]
    assert list(rows) == WIDTHS
    macs = [float(rows[w][1]) for w in WIDTHS]
    assert all(m > 0 for m in macs)
    assert all(a < b for a, b in zip(macs, macs[1:])), macs
    for width in WIDTHS:
        us = [float(cell) for cell in rows[width][2:4]]
        assert all(0.0 <= a <= 1.0 for a in us), rows[width]
        if width in S_WIDTHS:
            assert 0.0 <= float(rows[width][4]) <= 1.0, rows[width]
        else:
            assert rows[width][4] == "", rows[width]
    assert re.search(r"Command: `python examples/reproduce_us_cifar10.py", text)
    assert "--quick" in text
    assert re.search(r"Wall time of the last invocation: [0-9.]+ min", text)
    assert "calibrated on 100 training images without augmentation" in text
    # One progress line per trained network, each trained once.
    for label in (*METHODS, S_NET):
        assert completed.stdout.count(f"[{label}] epoch 1/1") == 1

    data = (folder / "results" / "us.png").read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert data[12:16] == b"IHDR"
    assert not list(folder.rglob("*.tmp*"))
    for method in ("us_distill", "us", "slimmable"):
        assert (folder / "run" / f"{method}.keras").is_file()


def test_a_rerun_resumes_from_the_kept_models(quick_run):
    folder, _ = quick_run
    first_text = (folder / "results" / "us.md").read_text()
    _, first = table(first_text)
    # As if killed after training US + distillation but before its
    # evaluation: its model is kept, its results are not.
    (folder / "run" / "us_distill.results.json").unlink()
    completed = run_script(folder)
    assert "epoch 1/1" not in completed.stdout
    assert "[US + inplace distillation] resumed from" in completed.stdout
    assert "after 1 epochs" in completed.stdout
    assert completed.stdout.count("finished earlier") == 2
    _, rows = table((folder / "results" / "us.md").read_text())
    # The reloaded model calibrates and evaluates to the same figures.
    assert rows == first
    saved = json.loads((folder / "run" / "us_distill.results.json").read_text())
    assert sorted(saved["top1"], key=float) == [w[1:] for w in WIDTHS]
