"""examples/quickstart.ipynb runs from top to bottom without an error."""

import pathlib
import re

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOK = (
    pathlib.Path(__file__).resolve().parent.parent
    / "examples"
    / "quickstart.ipynb"
)


def _text(output):
    if output.get("output_type") == "stream":
        return output.get("text", "")
    return output.get("data", {}).get("text/plain", "")


def test_quickstart_notebook_runs(monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    )
    client.execute()

    outputs = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    ]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    assert not errors, [f"{e['ename']}: {e['evalue']}" for e in errors]
    printed = "".join(_text(o) for o in outputs)
    accuracies = {
        float(width): float(value)
        for width, value in re.findall(
            r"^width (\d\.\d+): test accuracy (\d\.\d+)$",
            printed,
            flags=re.MULTILINE,
        )
    }
    assert sorted(accuracies) == [0.25, 1.0], printed[-3000:]
    # A few epochs on the digits: far above chance (0.1) at full width.
    assert accuracies[1.0] > 0.5, accuracies
    assert "serving_w0_25" in printed
    # The compact progress lines; every per-width metric still logged.
    progress = [line for line in printed.splitlines() if " acc 0.25:" in line]
    assert len(progress) == 5, printed[:3000]
    assert all(len(line) <= 120 for line in progress), progress
    assert "'w0.25_accuracy', 'w0.25_loss', 'w1.0_accuracy'" in printed
