"""A latency table saved beside a one-file model: `measure_latency(path,
save=True)`, read back by `select_width(path, ...)` instead of timing."""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import keras_slimmable as ks
from keras_slimmable import export
from keras_slimmable import profiling

pytest.importorskip("ai_edge_litert")

SIZE = 16
MEASURED = {
    0.5: {"median_ms": 2.0, "p10_ms": 1.9, "p90_ms": 2.1, "runs": 50},
    1.0: {"median_ms": 5.0, "p10_ms": 4.9, "p90_ms": 5.1, "runs": 50},
}


def _model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = ks.SlimmableConv2D((8, 16), 3, padding=1)(inputs)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = ks.SlimmableDense(5)(x)
    return ks.SlimmableModel(inputs, outputs, widths=(0.5, 1.0))


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("latency_table")
    return export.export_tflite(_model(), root / "a.tflite", widths="all")


@pytest.fixture
def path(exported, tmp_path):
    copy = tmp_path / "model.tflite"
    shutil.copyfile(exported, copy)
    return copy


def _no_timing(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("timed although a saved table matches")

    monkeypatch.setattr(profiling, "measure_latency", fail)


def test_measured_table_round_trips_and_select_width_reads_it(
    path, monkeypatch, caplog
):
    measured = ks.measure_latency(path, runs=2, warmup=1, save=True)
    table_path = profiling.latency_table_path(path)
    assert table_path.name == "model.tflite.latency.json"
    loaded, table = profiling.load_latency_table(path)
    assert loaded == measured
    assert table["signatures"] == {"serving_w0_5": 0.5, "serving_w1_0": 1.0}
    assert table["file"]["size"] == path.stat().st_size
    _no_timing(monkeypatch)
    with caplog.at_level(logging.INFO, "keras_slimmable.profiling"):
        assert ks.select_width(path, 1e9) == 1.0
    assert f"read the latency table {table_path}" in caplog.text


@pytest.mark.parametrize("budget, width", [(1.0, None), (3.0, 0.5), (9, 1.0)])
def test_select_width_chooses_from_the_saved_table(
    path, monkeypatch, budget, width
):
    # Chosen from the saved (hand-written) numbers, not from a timing.
    profiling.save_latency_table(path, MEASURED)
    _no_timing(monkeypatch)
    if width is None:
        with pytest.raises(ValueError, match="fastest measured median is 2"):
            ks.select_width(path, budget)
    else:
        assert ks.select_width(path, budget) == width


def _edit(table_path, change):
    table = json.loads(table_path.read_text())
    change(table)
    table_path.write_text(json.dumps(table))


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_text('{"format": "keras_sl'), "is damaged"),
        (lambda p: p.write_text("[]"), "is damaged"),
        (
            lambda p: _edit(p, lambda t: t["latency_ms"].pop("0.5")) or None,
            None,  # Loads; but select_width among 0.5 must refuse it.
        ),
        (
            lambda p: _edit(p, lambda t: t["file"].update(size=1)),
            "was measured on another file: 1 bytes",
        ),
        (
            lambda p: _edit(p, lambda t: t["device"].update(cpu_count=999)),
            "was measured on another device",
        ),
        (
            lambda p: _edit(p, lambda t: t["signatures"].pop("serving_w0_5")),
            "names the signatures",
        ),
        (
            # Version 1 timed every call right after another width.
            lambda p: _edit(p, lambda t: t.update(version=1)),
            "is not a latency table of version 2",
        ),
    ],
)
def test_damaged_or_mismatched_table_is_refused_or_ignored(
    path, damage, message
):
    profiling.save_latency_table(path, MEASURED)
    table_path = profiling.latency_table_path(path)
    damage(table_path)
    if message is None:
        message = "has no measurement for width 0.5"
        widths = [0.5]
    else:
        widths = None
        with pytest.raises(profiling.LatencyTableError, match=message):
            profiling.load_latency_table(path)
    with pytest.raises(ValueError, match=message):
        ks.select_width(path, 9, widths=widths, saved_table=True)
    # "auto": ignored with a warning naming why, and the widths timed.
    with pytest.warns(UserWarning, match="Ignoring the saved latency table"):
        width = ks.select_width(path, 1e9, widths=widths, runs=1)
    assert width == (0.5 if widths else 1.0)


def test_table_of_another_file_of_the_same_size_is_refused(path):
    profiling.save_latency_table(path, MEASURED)
    # The file changed (one byte of its weights); its old table stayed.
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(profiling.LatencyTableError, match="SHA-256"):
        profiling.load_latency_table(path)


def test_table_of_another_batch_size_or_thread_count(path):
    profiling.save_latency_table(path, MEASURED, num_threads=2)
    with pytest.raises(profiling.LatencyTableError, match="num_threads=2"):
        profiling.load_latency_table(path, num_threads=1)
    with pytest.raises(profiling.LatencyTableError, match="batch_size=1"):
        profiling.load_latency_table(path, batch_size=4)
    assert profiling.load_latency_table(path, 1, 2)[0] == MEASURED


def test_save_refuses_what_is_not_a_table_of_this_file(path, tmp_path):
    with pytest.raises(ValueError, match="no signature for width 0.25"):
        profiling.save_latency_table(path, {0.25: MEASURED[0.5]})
    with pytest.raises(ValueError, match="keyed by width"):
        profiling.save_latency_table(path, {"x": MEASURED[0.5]})
    with pytest.raises(ValueError, match="save=True"):
        ks.measure_latency({1.0: path}, save=True)
    assert not profiling.latency_table_path(path).exists()


def test_select_width_without_table_times_and_says_so(path, caplog):
    with caplog.at_level(logging.INFO, "keras_slimmable.profiling"):
        assert ks.select_width(path, 1e9, runs=1) == 1.0
    assert "timed" in caplog.text
    with pytest.raises(FileNotFoundError, match="No latency table"):
        ks.select_width(path, 1e9, saved_table=True)


KILLED_SAVE = """
import os, signal, sys
from keras_slimmable import profiling
path = sys.argv[1]
measured = {0.5: dict(median_ms=7.0, p10_ms=7.0, p90_ms=7.0, runs=1),
            1.0: dict(median_ms=8.0, p10_ms=8.0, p90_ms=8.0, runs=1)}
# Killed at the rename, after the new table is written and synced.
os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)
profiling.save_latency_table(path, measured)
"""


def test_a_killed_save_leaves_the_old_table_whole(path):
    old = profiling.save_latency_table(path, MEASURED).read_bytes()
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED_SAVE), str(path)],
        capture_output=True,
        timeout=300,
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    table_path = profiling.latency_table_path(path)
    assert table_path.read_bytes() == old
    assert profiling.load_latency_table(path)[0] == MEASURED
    leftovers = [n for n in os.listdir(path.parent) if ".partial-" in n]
    assert len(leftovers) == 1 and leftovers[0].startswith(".")
    # The next save removes what the killed one left.
    profiling.save_latency_table(path, MEASURED)
    assert sorted(os.listdir(path.parent)) == [
        "model.tflite",
        "model.tflite.latency.json",
    ]
    np.testing.assert_equal(
        profiling.load_latency_table(path)[0][1.0]["median_ms"], 5.0
    )
