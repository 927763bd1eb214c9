"""The slimmable RetinaNet on the active backend (rerun on JAX and PyTorch
by tests/test_backends.py): targets, per-width losses, decoding, saving,
materialize, and bad input.

Expected values are computed here in NumPy from their definitions (IoU
matching, center-xywh deltas, Huber and focal losses), not by the code
under test.
"""

import copy
import json

import keras
import numpy as np
import pytest

pytest.importorskip("keras_hub")

from keras_slimmable import SlimmableModel  # noqa: E402
from keras_slimmable.detection import BoxAPCallback  # noqa: E402
from keras_slimmable.detection import box_ap  # noqa: E402
from keras_slimmable.detection import retinanet  # noqa: E402
from keras_slimmable.layers import SlimmableConv2D  # noqa: E402
from keras_slimmable.layers import SwitchableBatchNormalization  # noqa: E402

WIDTHS = (0.5, 1.0)
SIZE = 64


def toy_backbone(widths=WIDTHS, levels=True):
    """Five stride-2 conv / batch norm / ReLU stages: P2..P5."""
    inputs = keras.Input((SIZE, SIZE, 3))
    x = inputs
    names = {}
    for k in range(1, 6):
        channels = tuple(int(8 * k * w) for w in widths)
        x = SlimmableConv2D(
            channels, 3, strides=2, padding=1, use_bias=False, name=f"c{k}"
        )(x)
        x = SwitchableBatchNormalization(channels, name=f"bn{k}")(x)
        x = keras.layers.ReLU(name=f"relu{k}")(x)
        if k >= 2:
            names[f"P{k}"] = f"relu{k}"
    return SlimmableModel(
        inputs,
        x,
        widths=widths,
        name="toy",
        pyramid_levels=names if levels else None,
    )


def toy_detector(**kwargs):
    keras.utils.set_random_seed(1)
    arguments = dict(
        num_classes=3,
        min_level=3,
        max_level=5,
        fpn_channels=16,
        head_channels=16,
        head_convs=1,
    )
    arguments.update(kwargs)
    return retinanet(toy_backbone(), **arguments)


def batch(count=4):
    rng = np.random.default_rng(0)
    images = rng.random((count, SIZE, SIZE, 3)).astype("float32")
    boxes = np.full((count, 3, 4), -1.0, "float32")
    labels = np.full((count, 3), -1, "int32")
    for i in range(count):
        boxes[i, 0] = [4 + i, 6, 30 + i, 34]
        boxes[i, 1] = [33, 20 + i, 60, 50 + i]
        labels[i, :2] = [i % 3, (i + 1) % 3]
    return images, {"boxes": boxes, "labels": labels}


def numpy(value):
    return keras.ops.convert_to_numpy(value)


def weights(model):
    return [numpy(v).copy() for v in model.weights]


# Targets -----------------------------------------------------------------


def numpy_targets(anchors, boxes, labels, num_classes, positive, negative):
    """RetinaNet targets from their definition, one anchor at a time."""
    count = len(boxes)
    deltas = np.zeros((count, len(anchors), 4))
    one_hot = np.zeros((count, len(anchors), num_classes))
    box_weight = np.zeros((count, len(anchors)))
    class_weight = np.zeros((count, len(anchors)))
    for i in range(count):
        real = [j for j in range(len(labels[i])) if labels[i][j] >= 0]
        for a, anchor in enumerate(anchors):
            ious = []
            for j in real:
                box = boxes[i][j]
                w = max(min(anchor[2], box[2]) - max(anchor[0], box[0]), 0)
                h = max(min(anchor[3], box[3]) - max(anchor[1], box[1]), 0)
                inter = w * h
                union = (
                    (anchor[2] - anchor[0]) * (anchor[3] - anchor[1])
                    + (box[2] - box[0]) * (box[3] - box[1])
                    - inter
                )
                ious.append(inter / union)
            best = int(np.argmax(ious))
            iou = ious[best]
            if iou >= positive:
                box = boxes[i][real[best]]
                aw, ah = anchor[2] - anchor[0], anchor[3] - anchor[1]
                bw, bh = box[2] - box[0], box[3] - box[1]
                deltas[i, a] = [
                    ((box[0] + box[2]) / 2 - (anchor[0] + anchor[2]) / 2) / aw,
                    ((box[1] + box[3]) / 2 - (anchor[1] + anchor[3]) / 2) / ah,
                    np.log(bw / aw),
                    np.log(bh / ah),
                ]
                one_hot[i, a, labels[i][real[best]]] = 1
                box_weight[i, a] = 1
                class_weight[i, a] = 1
            elif iou < negative:
                class_weight[i, a] = 1
    matched = max(box_weight.sum(), 1)
    return deltas, one_hot, box_weight / matched, class_weight / matched


def test_targets_match_their_definition():
    detector = toy_detector()
    _, y = batch()
    targets, sample_weight = detector.encode_targets(y["boxes"], y["labels"])
    deltas, one_hot, box_weight, class_weight = numpy_targets(
        detector.anchors, y["boxes"], y["labels"], 3, 0.5, 0.4
    )
    assert box_weight.sum() > 0 and (class_weight == 0).any()
    np.testing.assert_allclose(numpy(targets["boxes"]), deltas, atol=1e-5)
    np.testing.assert_array_equal(numpy(targets["classes"]), one_hot)
    np.testing.assert_allclose(
        numpy(sample_weight["boxes"]), box_weight, rtol=1e-6
    )
    np.testing.assert_allclose(
        numpy(sample_weight["classes"]), class_weight, rtol=1e-6
    )


def test_anchors_are_keras_hubs_in_output_order():
    import keras_hub

    detector = toy_detector()
    generator = keras_hub.layers.AnchorGenerator(
        "xyxy", 3, 5, num_scales=3, aspect_ratios=[0.5, 1.0, 2.0], anchor_size=4
    )
    levels = generator(np.zeros((1, SIZE, SIZE, 3), "float32"))
    expected = np.concatenate([numpy(levels[f"P{k}"]) for k in (3, 4, 5)])
    np.testing.assert_array_equal(detector.anchors, expected)
    outputs = detector(batch()[0], width=0.5)
    assert outputs["boxes"].shape == (4, len(expected), 4)
    assert outputs["classes"].shape == (4, len(expected), 3)


# Training ------------------------------------------------------------------


def numpy_loss(outputs, targets, sample_weight):
    """Huber (delta 1) on the deltas plus class-balanced binary focal
    cross-entropy (alpha 0.25, gamma 2) from logits, each summed over the
    anchors with the weights (Keras averages both over the last axis)."""
    error = outputs["boxes"] - targets["boxes"]
    absolute = np.abs(error)
    huber = np.where(absolute <= 1, 0.5 * error**2, absolute - 0.5)
    box = np.sum(huber.mean(-1) * sample_weight["boxes"])
    probability = 1 / (1 + np.exp(-outputs["classes"]))
    y = targets["classes"]
    p_t = y * probability + (1 - y) * (1 - probability)
    alpha = y * 0.25 + (1 - y) * 0.75
    cross_entropy = -np.log(np.clip(p_t, 1e-7, 1.0))
    focal = alpha * (1 - p_t) ** 2 * cross_entropy
    return box + np.sum(focal.mean(-1) * sample_weight["classes"])


def test_every_widths_loss_is_logged_and_summed():
    """Algorithm 1 with learning rate 0: the logs hold each width's
    detection loss of the step, computed here in NumPy from the outputs
    at that width in training mode."""
    detector = toy_detector()
    x, y = batch()
    targets, sample_weight = detector.encode_targets(y["boxes"], y["labels"])
    targets = {k: numpy(v) for k, v in targets.items()}
    sample_weight = {k: numpy(v) for k, v in sample_weight.items()}
    expected = {}
    for width in WIDTHS:
        outputs = detector(x, width=width, training=True)
        outputs = {k: numpy(v).astype("float64") for k, v in outputs.items()}
        expected[width] = numpy_loss(outputs, targets, sample_weight)
    detector.compile(keras.optimizers.SGD(0.0))
    logs = detector.fit(x, y, batch_size=4, epochs=1, verbose=0).history
    for width in WIDTHS:
        assert logs[f"w{width}_loss"][0] == pytest.approx(
            expected[width], rel=1e-4
        )
    assert logs["loss"][0] == pytest.approx(sum(expected.values()), rel=1e-4)


def test_fit_trains_every_width():
    detector = toy_detector()
    x, y = batch(8)
    detector.compile(keras.optimizers.Adam(2e-3))
    history = detector.fit(x, y, batch_size=4, epochs=10, verbose=0).history
    for width in WIDTHS:
        losses = history[f"w{width}_loss"]
        assert losses[-1] < 0.7 * losses[0], (width, losses)
    logs = detector.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)
    assert set(logs) >= {"loss", "w0.5_loss", "w1.0_loss"}


# Decoding and evaluation ------------------------------------------------


def test_decoding_perfect_predictions_finds_every_box():
    """Head outputs equal to the encoded targets (and confident logits on
    the matched anchors) decode to the ground truth: AP 1."""
    detector = toy_detector()
    _, y = batch()
    targets, _ = detector.encode_targets(y["boxes"], y["labels"])
    classes = numpy(targets["classes"])
    predictions = {
        "boxes": numpy(targets["boxes"]),
        "classes": np.where(classes > 0, 10.0, -10.0).astype("float32"),
    }
    detections = detector.decode_predictions(predictions)
    detections = {k: numpy(v) for k, v in detections.items()}
    np.testing.assert_array_equal(detections["num_detections"], [2] * 4)
    result = box_ap(detections, y, num_classes=3)
    assert result["ap"] == pytest.approx(1.0, abs=1e-6)


def test_box_ap_callback_logs_every_width():
    detector = toy_detector()
    x, y = batch()
    detector.compile(keras.optimizers.Adam(1e-3))
    history = detector.fit(
        x,
        y,
        batch_size=4,
        epochs=1,
        verbose=0,
        callbacks=[BoxAPCallback(x, y, batch_size=4)],
    ).history
    for width in WIDTHS:
        value = history[f"w{width}_box_ap"][0]
        assert 0.0 <= value <= 1.0
        assert f"w{width}_box_ap50" in history
    results = detector.evaluate_box_ap(x, y, batch_size=4)
    assert history["w1.0_box_ap"][0] == pytest.approx(results[1.0]["ap"])


# Saving and materialize -------------------------------------------------


def test_keras_file_round_trip_at_every_width(tmp_path):
    detector = toy_detector()
    x, y = batch()
    detector.compile(keras.optimizers.Adam(1e-3))
    detector.fit(x, y, batch_size=4, epochs=1, verbose=0)
    path = tmp_path / "detector.keras"
    detector.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(detector)
    assert json.dumps(loaded.get_config()) == json.dumps(detector.get_config())
    np.testing.assert_array_equal(loaded.anchors, detector.anchors)
    for width in WIDTHS:
        for key in ("boxes", "classes"):
            np.testing.assert_array_equal(
                numpy(loaded(x, width=width)[key]),
                numpy(detector(x, width=width)[key]),
            )
    # The optimizer and its losses come back: training continues.
    loaded.fit(x, y, batch_size=4, epochs=1, verbose=0)


def test_materialize_one_width():
    detector = toy_detector()
    x, y = batch()
    detector.compile(keras.optimizers.Adam(1e-2))
    detector.fit(x, y, batch_size=4, epochs=2, verbose=0)
    for width in WIDTHS:
        plain = detector.materialize(width)
        assert not isinstance(plain, SlimmableModel)
        for key in ("boxes", "classes"):
            np.testing.assert_allclose(
                numpy(plain(x)[key]),
                numpy(detector(x, width=width)[key]),
                atol=1e-5,
            )


def test_slimmable_lateral_equals_zero_padding():
    """The pyramid's lateral 1x1 convolution at a narrower width equals a
    full convolution of the level zero-padded to its full channels (the
    reference's design), computed here in NumPy."""
    detector = toy_detector()
    lateral = detector.get_layer("fpn_lateral_P4")
    feature_model = keras.Model(
        detector.inputs, detector.get_layer("relu4").output
    )
    x, _ = batch()
    inner = SlimmableModel(
        detector.inputs,
        lateral.output,
        widths=WIDTHS,
    )
    features = numpy(
        SlimmableModel(
            feature_model.inputs, feature_model.outputs[0], widths=WIDTHS
        )(x, width=0.5)
    )
    assert features.shape[-1] == 16
    full = lateral.kernel.shape[2]
    padded = np.concatenate(
        [features, np.zeros(features.shape[:-1] + (full - 16,))], -1
    )
    kernel = numpy(lateral.kernel)[0, 0]
    expected = padded @ kernel + numpy(lateral.bias)
    np.testing.assert_allclose(numpy(inner(x, width=0.5)), expected, atol=1e-5)


# Bad input ------------------------------------------------------------------


def _refused(detector, x, y, match):
    before = weights(detector)
    with pytest.raises(ValueError, match=match):
        detector.fit(x, y, batch_size=4, epochs=1, verbose=0)
    for old, new in zip(before, weights(detector)):
        np.testing.assert_array_equal(old, new)


def test_boxes_outside_the_image_are_refused():
    detector = toy_detector()
    detector.compile(keras.optimizers.Adam(1e-2))
    x, y = batch()
    bad = copy.deepcopy(y)
    bad["boxes"][2, 1] = [33, 20, 70, 50]
    _refused(detector, x, bad, r"boxes\[2, 1\]")


def test_an_image_without_boxes_is_refused():
    detector = toy_detector()
    detector.compile(keras.optimizers.Adam(1e-2))
    x, y = batch()
    bad = copy.deepcopy(y)
    bad["labels"][1] = -1
    bad["boxes"][1] = -1
    _refused(detector, x, bad, "1")


def test_images_of_another_size_are_refused():
    detector = toy_detector()
    detector.compile(keras.optimizers.Adam(1e-2))
    _, y = batch()
    x = np.zeros((4, 2 * SIZE, 2 * SIZE, 3), "float32")
    _refused(detector, x, y, r"\(64, 64, 3\)")


def test_a_width_the_detector_does_not_have():
    detector = toy_detector()
    x, _ = batch()
    with pytest.raises(ValueError, match="0.3"):
        detector(x, width=0.3)
    with pytest.raises(ValueError, match="0.3"):
        detector.detect(x, width=0.3)
    assert detector.width == 1.0


def test_a_backbone_without_pyramid_outputs():
    with pytest.raises(ValueError, match="has no pyramid outputs"):
        retinanet(toy_backbone(levels=False), num_classes=3)
    with pytest.raises(ValueError, match="P2"):
        retinanet(toy_backbone(), num_classes=3, min_level=1)
    with pytest.raises(ValueError, match="SlimmableModel"):
        retinanet(keras.Sequential([keras.layers.Dense(2)]), num_classes=3)
    with pytest.raises(ValueError, match="num_classes"):
        retinanet(toy_backbone(), num_classes=0)


def test_compile_refuses_a_loss():
    detector = toy_detector()
    with pytest.raises(ValueError, match="box_loss"):
        detector.compile("adam", loss="mse")
