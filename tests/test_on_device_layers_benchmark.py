"""benchmarks/on_device_layers.py on a small setting: its layer list covers
every MAC-bearing layer of each width's plain model, and its MACs add up to
`profile`'s."""

import json
import math
import subprocess
import sys
from pathlib import Path

import keras
import pytest

import keras_slimmable as ks
from keras_slimmable import zoo

pytest.importorskip("ai_edge_litert")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = SCRIPT / "on_device_layers.py"
MODEL = "s_mobilenet_v1"
SIZE = 32
MAC_LAYERS = (
    keras.layers.Conv2D,
    keras.layers.DepthwiseConv2D,
    keras.layers.Dense,
)


def run(*args):
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def pooling_macs(plain):
    """What `profile` counts besides the convolutions and dense layers:
    one MAC per input element of an average pooling (counted here from
    the pooling layers' own input shapes)."""
    total = 0
    for layer in plain.layers:
        if isinstance(layer, keras.layers.GlobalAveragePooling2D):
            total += math.prod(layer.input.shape[1:])
        elif isinstance(layer, keras.layers.AveragePooling2D):
            raise AssertionError("count padded pools as profile does")
    return total


@pytest.mark.slow
def test_layers_cover_the_model_and_their_macs_add_up(tmp_path):
    out = tmp_path / "layers.json"
    result = run(
        f"--model={MODEL}",
        f"--image_size={SIZE}",
        "--widths=0.25",
        "--repeats=3",
        "--warmup=1",
        f"--json_out={out}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(out.read_text())
    # The widest width is added for the ratios.
    assert sorted(found["widths"]) == ["0.25", "1.0"]

    model = zoo.create_model(MODEL, input_shape=(SIZE, SIZE, 3))
    macs = {w: counts["macs"] for w, counts in ks.profile(model).items()}
    for text, measured in found["widths"].items():
        width = float(text)
        plain = model.materialize(width, fold_batch_norm=True)
        mac_layers = [
            layer for layer in plain.layers if isinstance(layer, MAC_LAYERS)
        ]
        names = [row["name"] for row in measured["layers"]]
        assert names == [layer.name for layer in mac_layers]
        # profile counts the whole model, pooling included; the script's
        # layers must hold every other MAC.
        assert measured["macs"] == macs[width] - pooling_macs(plain)
        assert measured["macs"] == sum(r["macs"] for r in measured["layers"])
        for row in measured["layers"]:
            assert row["ms"] > 0
            if row["channels"] % 16:
                assert row["rounded_channels"] == -(-row["channels"] // 16) * 16
                assert row["rounded_ms"] > 0
            else:
                assert row["rounded_channels"] is None
        assert measured["whole_ms"] > 0
    # At width 0.25 the stem has 8 output channels: it is probed.
    stem = found["widths"]["0.25"]["layers"][0]
    assert (stem["channels"], stem["rounded_channels"]) == (8, 16)
    assert stem["kind"] == "conv 3x3 /2 +pad +relu6"
    assert "| 0.25 | " in result.stdout and "| 1.0 | " in result.stdout
    assert "ESTIMATE, not a measurement" in result.stdout


@pytest.mark.slow
def test_unknown_width_is_one_line_error():
    result = run(f"--model={MODEL}", f"--image_size={SIZE}", "--widths=0.3")
    assert result.returncode == 2
    assert "Received: --widths=0.3" in result.stderr
    assert "Traceback" not in result.stderr
