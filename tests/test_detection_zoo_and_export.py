"""Slimmable detection on TensorFlow: zoo backbones in the detector, SavedModel
export of every width, the optional keras-hub extra, and the results script
(`examples/reproduce_detection.py --quick`, into a temporary folder)."""

import re
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

pytest.importorskip("keras_hub")

from keras_slimmable import zoo  # noqa: E402
from keras_slimmable.detection import retinanet  # noqa: E402
from keras_slimmable.export import export_saved_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "reproduce_detection.py"
ARCHIVE = REPO.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"


@pytest.mark.parametrize(
    "builder, widths",
    [
        (zoo.s_mobilenet_v2, (0.35, 0.5, 0.75, 1.0)),
        (zoo.s_resnet50, (0.25, 0.5, 0.75, 1.0)),
    ],
)
def test_zoo_backbones_detect_at_every_width(builder, widths):
    backbone = builder(
        widths=widths, include_top=False, weights=None, input_shape=(64, 64, 3)
    )
    detector = retinanet(
        backbone,
        num_classes=4,
        min_level=3,
        max_level=6,
        fpn_channels=16,
        head_channels=16,
        head_convs=1,
    )
    assert detector.widths == widths
    # P3-P6 of 64x64: 8x8, 4x4, 2x2 and 1x1 locations, 9 anchors each.
    anchors = 9 * (64 + 16 + 4 + 1)
    assert detector.anchors.shape == (anchors, 4)
    x = np.random.default_rng(0).random((2, 64, 64, 3)).astype("float32")
    outputs = {w: detector(x, width=w) for w in widths}
    for output in outputs.values():
        assert output["boxes"].shape == (2, anchors, 4)
        assert output["classes"].shape == (2, anchors, 4)
    # The widths are different networks: their outputs differ (slightly:
    # the heads start with weights of standard deviation 0.01).
    narrow, wide = (
        keras.ops.convert_to_numpy(outputs[w]["boxes"])
        for w in (widths[0], widths[-1])
    )
    assert np.max(np.abs(narrow - wide)) > 1e-6


def small_detector():
    """A 64x64 S-MobileNet v2 RetinaNet at widths 0.35 and 1.0, 3 classes,
    P3-P5, small heads: the export tests' model."""
    backbone = zoo.s_mobilenet_v2(
        widths=(0.35, 1.0),
        include_top=False,
        weights=None,
        input_shape=(64, 64, 3),
    )
    return retinanet(
        backbone,
        num_classes=3,
        min_level=3,
        max_level=5,
        fpn_channels=16,
        head_channels=16,
        head_convs=1,
    )


def test_saved_model_serves_every_width(tmp_path):
    import tensorflow as tf

    detector = small_detector()
    path = export_saved_model(detector, tmp_path / "detector")
    loaded = tf.saved_model.load(str(path))
    assert set(loaded.signatures) == {
        "serving_w0_35",
        "serving_w1_0",
        "serving_default",
    }
    x = np.random.default_rng(0).random((2, 64, 64, 3)).astype("float32")
    for name, width in (("serving_w0_35", 0.35), ("serving_w1_0", 1.0)):
        served = loaded.signatures[name](images=tf.constant(x))
        expected = detector(x, width=width)
        for key in ("boxes", "classes"):
            np.testing.assert_allclose(
                served[key].numpy(),
                keras.ops.convert_to_numpy(expected[key]),
                atol=1e-5,
            )


def test_one_litert_file_detects_at_every_width(tmp_path):
    pytest.importorskip("ai_edge_litert")
    from ai_edge_litert.interpreter import Interpreter

    from keras_slimmable.export import export_tflite
    from keras_slimmable.export import signature_name

    detector = small_detector()
    # Untrained heads (weights of standard deviation 0.01) make the widths'
    # outputs differ by little; wider ones tell a signature's width apart.
    rng = np.random.default_rng(1)
    for variable in detector.weights:
        if variable.path.startswith(("class_head_", "box_head_")):
            values = rng.normal(scale=0.3, size=variable.shape)
            variable.assign(values.astype("float32"))
    path = export_tflite(detector, tmp_path / "detector.tflite", widths="all")
    interpreter = Interpreter(model_path=str(path))
    assert set(interpreter.get_signature_list()) == {
        "serving_w0_35",
        "serving_w1_0",
        "serving_default",
    }
    x = np.random.default_rng(0).random((1, 64, 64, 3)).astype("float32")
    expected = {
        width: {
            key: keras.ops.convert_to_numpy(value)
            for key, value in detector(x, width=width).items()
        }
        for width in (0.35, 1.0)
    }
    for width, other in ((0.35, 1.0), (1.0, 0.35)):
        run = interpreter.get_signature_runner(signature_name(width))
        served = run(images=x)
        for key in ("boxes", "classes"):
            np.testing.assert_allclose(
                served[key], expected[width][key], atol=1e-4
            )
            assert np.max(np.abs(served[key] - expected[other][key])) > 1e-2
        # An app decodes them with the detector's anchors
        # (`decode_predictions`), as the SavedModel's clients do.


def test_the_package_imports_without_keras_hub():
    """keras-hub is an optional extra: without it the package imports and
    the detection module names the extra to install."""
    code = (
        "import sys\n"
        "sys.modules['keras_hub'] = None\n"
        "import keras_slimmable\n"
        "from keras_slimmable import zoo\n"
        "zoo.s_mobilenet_v2(include_top=False, weights=None,\n"
        "                   input_shape=(64, 64, 3))\n"
        "try:\n"
        "    import keras_slimmable.detection\n"
        "except ImportError as error:\n"
        "    print('ImportError:', error)\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "ImportError:" in completed.stdout
    assert "pip install keras-slimmable[detection]" in completed.stdout


@pytest.mark.slow
@pytest.mark.skipif(
    not ARCHIVE.is_file(),
    reason=f"the CIFAR-10 archive is not beside the repository: {ARCHIVE}",
)
def test_reproduce_detection_quick(tmp_path):
    def run():
        completed = subprocess.run(
            [
                sys.executable,
                str(SCRIPT),
                "--quick",
                f"--archive={ARCHIVE}",
                f"--output_dir={tmp_path / 'run'}",
                f"--output_markdown={tmp_path / 'results' / 'detection.md'}",
                f"--output_plot={tmp_path / 'results' / 'detection.png'}",
            ],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        return completed.stdout

    first = run()
    markdown = (tmp_path / "results" / "detection.md").read_text()
    rows = [
        line for line in markdown.splitlines() if re.match(r"\| [01]\.", line)
    ]
    assert [row.split("|")[1].strip() for row in rows] == [
        "0.35",
        "0.5",
        "0.75",
        "1.0",
    ]
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")][3:]
        assert len(cells) == 3
        for cell in cells:
            ap, ap50 = re.fullmatch(r"([\d.]+) \(([\d.]+)\)", cell).groups()
            assert 0 <= float(ap) <= float(ap50) <= 100
    assert (tmp_path / "results" / "detection.png").stat().st_size > 1000
    assert "box AP" in first
    # A rerun finds every model's results and trains nothing.
    second = run()
    assert second.count("finished earlier") == 6
    assert "] epoch " not in second
