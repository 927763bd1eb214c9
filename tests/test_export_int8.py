"""Full-integer (int8) LiteRT export, every width calibrated on its own
activations, in one file or one width per file; and its bad input."""

import keras
import numpy as np
import pytest

import keras_slimmable as ks
from keras_slimmable import export

pytest.importorskip("ai_edge_litert")
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

SIZE = 16


def _model():
    widths = (0.5, 1.0)
    inputs = keras.Input((SIZE, SIZE, 3))
    x = ks.SlimmableConv2D((8, 16), 3, padding=1, use_bias=False)(inputs)
    x = ks.SwitchableBatchNormalization((8, 16))(x)
    x = keras.layers.ReLU()(x)
    x = ks.SlimmableDepthwiseConv2D(3, padding=1, use_bias=False)(x)
    x = ks.SwitchableBatchNormalization((8, 16))(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = ks.SlimmableDense(5)(x)
    model = ks.SlimmableModel(inputs, outputs, widths=widths)
    # Non-trivial statistics and scales, so the widths differ.
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, ks.SwitchableBatchNormalization):
            for batch_norm in layer.batch_norms:
                n = batch_norm.gamma.shape[0]
                batch_norm.set_weights(
                    [
                        rng.uniform(0.5, 1.5, n),
                        rng.normal(0, 0.2, n),
                        rng.normal(0, 0.2, n),
                        rng.uniform(0.5, 1.5, n),
                    ]
                )
    return model


def _images(n, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, SIZE, SIZE, 3)).astype("float32")


def _run(path, signature, images):
    runner = Interpreter(model_path=str(path)).get_signature_runner(signature)
    return np.concatenate(
        [runner(images=image[None])["output_0"] for image in images]
    )


def test_one_int8_file_matches_every_width_within_quantization_error(
    tmp_path,
):
    model = _model()
    path = export.export_tflite(
        model,
        tmp_path / "int8.tflite",
        widths="all",
        quantization="int8",
        representative_dataset=_images(64, seed=1),
    )
    test = _images(16, seed=2)
    # `serving_default` (the default width) is quantized too: the same
    # outputs as that width's own signature, not a float32 copy's.
    np.testing.assert_array_equal(
        _run(path, "serving_default", test), _run(path, "serving_w1_0", test)
    )
    for width in model.widths:
        expected = keras.ops.convert_to_numpy(model(test, width=width))
        name = "serving_" + ks.widths.width_name(width, "_")
        found = _run(path, name, test)
        spread = expected.max() - expected.min()
        error = np.abs(found - expected).max()
        # int8 keeps about 1/255 of each range; a few steps add up. A
        # float32 file would be within 1e-6: the error shows the
        # quantization.
        assert 1e-4 * spread < error < 0.08 * spread, (width, error, spread)
        # The widths really differ: each signature is its own width.
        other = keras.ops.convert_to_numpy(
            model(test, width=[w for w in model.widths if w != width][0])
        )
        assert np.abs(found - other).max() > 4 * error


def test_a_single_width_int8_file(tmp_path):
    model = _model()
    path = export.export_tflite(
        model,
        tmp_path / "w0_5.tflite",
        width=0.5,
        quantization="int8",
        representative_dataset=[_images(8, seed=3), _images(8, seed=4)],
    )
    test = _images(8, seed=5)
    expected = keras.ops.convert_to_numpy(model(test, width=0.5))
    found = _run(path, "serving_default", test)
    spread = expected.max() - expected.min()
    assert np.abs(found - expected).max() < 0.08 * spread


@pytest.mark.parametrize(
    "dataset, quantization, message",
    [
        (None, "int8", "needs `representative_dataset`"),
        (
            np.zeros((4, SIZE, SIZE, 1), "float32"),
            "int8",
            r"shape \(n,\) \+ \(16, 16, 3\). Received an array of shape "
            r"\(4, 16, 16, 1\)",
        ),
        (
            np.zeros((SIZE, SIZE, 3), "float32"),
            "int8",
            r"Received an array of shape \(16, 16, 3\)",
        ),
        (np.zeros((4, SIZE, SIZE, 3), "uint8"), "int8", "dtype uint8"),
        (np.zeros((0, SIZE, SIZE, 3), "float32"), "int8", "no image"),
        (
            np.full((2, SIZE, SIZE, 3), np.nan, "float32"),
            "int8",
            "NaN or infinite",
        ),
        (
            np.zeros((4, SIZE, SIZE, 3), "float32"),
            "float16",
            "calibrates quantization='int8' only",
        ),
    ],
    ids=["missing", "channels", "no-batch", "uint8", "empty", "nan", "float16"],
)
def test_a_bad_representative_dataset_writes_nothing(
    tmp_path, dataset, quantization, message
):
    path = tmp_path / "out" / "m.tflite"
    with pytest.raises(ValueError, match=message):
        export.export_tflite(
            _model(),
            path,
            widths="all",
            quantization=quantization,
            representative_dataset=dataset,
        )
    assert not (tmp_path / "out").exists()
