"""box_ap against pycocotools' COCOeval, and small cases computed by hand."""

import contextlib
import io

import numpy as np
import pytest

from keras_slimmable.detection.box_ap import box_ap

IMAGE_SIZE = 128


def _coco_stats(detections, ground_truth, num_classes, max_detections=100):
    """COCOeval's AP, AP50, AP75 (area all) for the same padded arrays."""
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def xywh(box):
        x1, y1, x2, y2 = (float(v) for v in box)
        return [x1, y1, x2 - x1, y2 - y1]

    count = len(ground_truth["boxes"])
    annotations = []
    for i in range(count):
        for box, label in zip(
            ground_truth["boxes"][i], ground_truth["labels"][i]
        ):
            if label < 0:
                continue
            bbox = xywh(box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i + 1,
                    "category_id": int(label) + 1,
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": 0,
                }
            )
    results = []
    for i in range(count):
        for box, score, label in zip(
            detections["boxes"][i],
            detections["confidence"][i],
            detections["labels"][i],
        ):
            if label >= 0:
                results.append(
                    {
                        "image_id": i + 1,
                        "category_id": int(label) + 1,
                        "bbox": xywh(box),
                        "score": float(score),
                    }
                )
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {
            "images": [
                {"id": i + 1, "width": IMAGE_SIZE, "height": IMAGE_SIZE}
                for i in range(count)
            ],
            "annotations": annotations,
            "categories": [{"id": c + 1} for c in range(num_classes)],
        }
        coco.createIndex()
        evaluation = COCOeval(coco, coco.loadRes(results), "bbox")
        if max_detections != 100:
            # summarize() reads maxDets=100 for stats[0]: read the
            # precision table (thresholds, recalls, classes, areas, maxDets)
            # as it does.
            evaluation.params.maxDets = [max_detections]
        evaluation.evaluate()
        evaluation.accumulate()
        if max_detections == 100:
            evaluation.summarize()
    if max_detections == 100:
        return evaluation.stats[:3]
    precision = evaluation.eval["precision"][:, :, :, 0, 0]
    return [
        precision[precision > -1].mean(),
        precision[0][precision[0] > -1].mean(),
        precision[5][precision[5] > -1].mean(),
    ]


def _random_case(
    seed, count=20, num_classes=3, max_objects=5, k=12, quantised_scores=False
):
    """Jittered ground truth as detections, with misses, wrong classes,
    duplicates, false positives and images without detections."""
    rng = np.random.default_rng(seed)
    gt_boxes = np.full((count, max_objects, 4), -1, np.float32)
    gt_labels = np.full((count, max_objects), -1, np.int32)
    boxes = np.full((count, k, 4), -1, np.float32)
    scores = np.zeros((count, k), np.float32)
    labels = np.full((count, k), -1, np.int32)
    for i in range(count):
        n = rng.integers(0, max_objects + 1)
        xy = rng.uniform(0, IMAGE_SIZE - 40, (n, 2))
        wh = rng.uniform(8, 40, (n, 2))
        gt_boxes[i, :n] = np.concatenate([xy, xy + wh], axis=1)
        gt_labels[i, :n] = rng.integers(0, num_classes, n)
        if rng.uniform() < 0.15:
            continue  # No detection in this image.
        found = []
        for j in range(n):
            if rng.uniform() < 0.2:
                continue  # Missed.
            copies = 2 if rng.uniform() < 0.2 else 1
            for _ in range(copies):
                jitter = rng.normal(0, 0.12, 4) * np.tile(wh[j], 2)
                label = gt_labels[i, j]
                if rng.uniform() < 0.1:
                    label = rng.integers(0, num_classes)
                found.append((gt_boxes[i, j] + jitter, label))
        for _ in range(rng.integers(0, 4)):  # False positives.
            xy1 = rng.uniform(0, IMAGE_SIZE - 30, 2)
            box = np.concatenate([xy1, xy1 + rng.uniform(5, 30, 2)])
            found.append((box, rng.integers(0, num_classes)))
        found = found[:k]
        for j, (box, label) in enumerate(found):
            boxes[i, j] = box
            labels[i, j] = label
        scores[i, : len(found)] = rng.uniform(0, 1, len(found))
        if quantised_scores:
            scores[i] = np.round(scores[i] * 4) / 4
    detections = {"boxes": boxes, "confidence": scores, "labels": labels}
    ground_truth = {"boxes": gt_boxes, "labels": gt_labels}
    return detections, ground_truth


@pytest.mark.parametrize(
    "seed, arguments",
    [
        (0, {}),
        (1, {"num_classes": 1}),
        (2, {"num_classes": 5, "count": 40}),
        (3, {"quantised_scores": True}),
        (4, {"max_objects": 1, "k": 3}),
        (5, {"count": 60, "num_classes": 4, "k": 20}),
    ],
)
def test_matches_cocoeval(seed, arguments):
    num_classes = arguments.get("num_classes", 3)
    detections, ground_truth = _random_case(seed, **arguments)
    expected = _coco_stats(detections, ground_truth, num_classes)
    result = box_ap(detections, ground_truth, num_classes=num_classes)
    np.testing.assert_allclose(
        [result["ap"], result["ap50"], result["ap75"]], expected, atol=1e-6
    )
    # Not a degenerate case: something between nothing and everything.
    assert 0.05 < result["ap50"] < 0.99


def test_max_detections_matches_cocoeval():
    detections, ground_truth = _random_case(6, k=12, count=30)
    expected = _coco_stats(detections, ground_truth, 3, max_detections=2)
    result = box_ap(detections, ground_truth, num_classes=3, max_detections=2)
    np.testing.assert_allclose(
        [result["ap"], result["ap50"], result["ap75"]], expected, atol=1e-6
    )
    assert result["ap50"] != box_ap(detections, ground_truth)["ap50"]


def test_num_detections_cuts_padding():
    detections, ground_truth = _random_case(7)
    kept = (detections["labels"] >= 0).sum(axis=1)
    padded = dict(detections, num_detections=kept)
    # Rows past num_detections carry junk with real-looking labels.
    for i, n in enumerate(kept):
        padded["labels"] = padded["labels"].copy()
        padded["labels"][i, n:] = 0
        padded["boxes"] = padded["boxes"].copy()
        padded["boxes"][i, n:] = ground_truth["boxes"][i, :1]
        padded["confidence"] = padded["confidence"].copy()
        padded["confidence"][i, n:] = 2.0
    assert box_ap(padded, ground_truth, 3) == box_ap(
        detections, ground_truth, 3
    )


def _one_image(gt_boxes, gt_labels, boxes, scores, labels):
    detections = {
        "boxes": np.array([boxes], np.float32).reshape(1, -1, 4),
        "confidence": np.array([scores], np.float32),
        "labels": np.array([labels], np.int32),
    }
    ground_truth = {
        "boxes": np.array([gt_boxes], np.float32),
        "labels": np.array([gt_labels], np.int32),
    }
    return detections, ground_truth


def test_perfect_detector_is_one():
    detections, ground_truth = _random_case(8)
    perfect = {
        "boxes": ground_truth["boxes"],
        "labels": ground_truth["labels"],
        "confidence": np.ones(ground_truth["labels"].shape),
    }
    assert box_ap(perfect, ground_truth) == {
        "ap": 1.0,
        "ap50": 1.0,
        "ap75": 1.0,
    }


def test_one_hit_of_two_objects():
    # One detection exactly on one of two objects: precision 1 up to recall
    # 0.5, nothing beyond. Of the 101 recall points 0, 0.01, ..., 1, the 51
    # up to 0.50 read precision 1 and the other 50 read 0: AP = 51 / 101 at
    # every IoU threshold.
    detections, ground_truth = _one_image(
        [[0, 0, 10, 10], [50, 50, 70, 70]],
        [0, 0],
        [[50, 50, 70, 70]],
        [0.9],
        [0],
    )
    expected = 51 / 101
    assert box_ap(detections, ground_truth) == pytest.approx(
        {"ap": expected, "ap50": expected, "ap75": expected}, abs=1e-12
    )


def test_loose_box_counts_at_low_thresholds_only():
    # IoU of [0, 0, 10, 6.2] with [0, 0, 10, 10] is 62 / 100 = 0.62: a hit
    # at the thresholds 0.50, 0.55, 0.60 (3 of 10), a miss at 0.75.
    detections, ground_truth = _one_image(
        [[0, 0, 10, 10]], [1], [[0, 0, 10, 6.2]], [0.5], [1]
    )
    result = box_ap(detections, ground_truth)
    assert result == pytest.approx({"ap": 0.3, "ap50": 1.0, "ap75": 0.0})


def test_wrong_class_and_classes_without_ground_truth():
    # A perfect box with the wrong class scores 0; a class that has no
    # ground truth (2) does not enter the mean.
    detections, ground_truth = _one_image(
        [[0, 0, 10, 10], [20, 20, 40, 40]],
        [0, 1],
        [[0, 0, 10, 10], [20, 20, 40, 40], [60, 60, 80, 80]],
        [0.9, 0.8, 0.99],
        [0, 0, 2],
    )
    result = box_ap(detections, ground_truth, num_classes=3)
    assert result == pytest.approx({"ap": 0.5, "ap50": 0.5, "ap75": 0.5})


def _good():
    return _one_image([[0, 0, 10, 10]], [0], [[0, 0, 10, 10]], [0.9], [0])


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda d, g: d.update(boxes=d["boxes"][..., :3]),
            r"boxes'\]` must have shape \(N, K, 4\)",
        ),
        (
            lambda d, g: d.update(confidence=d["confidence"][0]),
            r"confidence'\]` must have shape \(N, K\)",
        ),
        (
            lambda d, g: d.update(labels=np.zeros((1, 2), np.int32)),
            r"labels'\]` must have shape \(1, 1\)",
        ),
        (lambda d, g: g.update(boxes=np.zeros((2, 1, 4))), r"N = 1 images"),
        (
            lambda d, g: g.update(labels=np.zeros((1, 3), np.int32)),
            r"labels'\].shape=\(1, 3\)",
        ),
        (lambda d, g: d.pop("confidence"), r"key 'confidence'"),
        (lambda d, g: g.update(labels=np.array([[-1]])), r"no box"),
        (
            lambda d, g: d.update(labels=np.array([[5]])),
            r"Received: detections\['labels'\]\[0, 0\] = 5",
        ),
        (
            lambda d, g: d.update(num_detections=np.array([3])),
            r"num_detections",
        ),
        (lambda d, g: d.update(confidence=np.array([[np.nan]])), r"finite"),
    ],
)
def test_bad_input_raises(change, message):
    detections, ground_truth = _good()
    change(detections, ground_truth)
    with pytest.raises(ValueError, match=message):
        box_ap(detections, ground_truth, num_classes=2)


def test_equal_ious_take_the_last_object_as_cocoeval():
    # The first detection overlaps both objects equally (IoU 90 / 110 =
    # 0.82); COCOeval matches it to the later object, B, leaving A to the
    # second detection, an exact hit. Up to threshold 0.80 (7 thresholds)
    # both hit: AP 1. From 0.85 (3 thresholds) the first misses and the
    # second hits: precision 1/2 up to recall 1/2, AP = 0.5 * 51 / 101.
    # Matching the first to A would leave B (IoU 80 / 120 = 0.67) to the
    # second: AP75 would be 51 / 101.
    detections, ground_truth = _one_image(
        [[0, 0, 10, 10], [2, 0, 12, 10]],
        [0, 0],
        [[1, 0, 11, 10], [0, 0, 10, 10]],
        [0.9, 0.8],
        [0, 0],
    )
    expected = [(7 + 3 * 0.5 * 51 / 101) / 10, 1.0, 1.0]
    result = box_ap(detections, ground_truth)
    np.testing.assert_allclose(
        [result["ap"], result["ap50"], result["ap75"]], expected, atol=1e-12
    )
    np.testing.assert_allclose(
        _coco_stats(detections, ground_truth, 1), expected, atol=1e-12
    )
