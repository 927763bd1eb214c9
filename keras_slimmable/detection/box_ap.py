"""COCO-style box average precision in NumPy.

`box_ap` computes what `pycocotools.cocoeval.COCOeval` reports as AP,
AP50 and AP75 for boxes (area "all", at most `max_detections` per image
and class), from padded arrays as a detector's non-max suppression returns
them, without building COCO json.
"""

import numpy as np

# COCOeval's thresholds, computed as it does (0.7000000000000001 included).
_IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1)
_RECALL_THRESHOLDS = np.linspace(0.0, 1.0, int(np.round(1.0 / 0.01)) + 1)


def _array(value, name, ndim, last=None):
    array = np.asarray(value)
    if array.ndim != ndim or (last is not None and array.shape[-1] != last):
        expected = "(N, K, 4)" if last == 4 else ("(N, K)", "(N,)")[ndim == 1]
        raise ValueError(
            f"`{name}` must have shape {expected}. Received: "
            f"{name}.shape={array.shape}"
        )
    return array


def _check_labels(labels, name, num_classes):
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.isfinite(labels)) or np.any(
            labels != np.round(labels)
        ):
            raise ValueError(
                f"`{name}` must be integer class ids (-1 for padding). "
                f"Received: {name}.dtype={labels.dtype}"
            )
        labels = labels.astype(np.int64)
    bad = np.argwhere((labels < -1) | (labels >= num_classes))
    if len(bad):
        index = tuple(int(i) for i in bad[0])
        raise ValueError(
            f"`{name}` must be in [0, {num_classes}) or -1 for padding. "
            f"Received: {name}[{', '.join(map(str, index))}] = "
            f"{labels[index]}"
        )
    return labels


def _iou(boxes_a, boxes_b):
    """IoU of every box of `boxes_a` (N, K, 4) with every box of `boxes_b`
    (N, M, 4), both xyxy: (N, K, M). Computed in the same order as
    pycocotools (areas as width * height; union = a + b - intersection) so
    that IoUs equal to a threshold compare the same way."""
    a = boxes_a[:, :, None, :]
    b = boxes_b[:, None, :, :]
    width = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    height = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    intersection = np.where((width > 0) & (height > 0), width * height, 0.0)
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - intersection
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(intersection > 0, intersection / union, 0.0)


def box_ap(detections, ground_truth, num_classes=None, max_detections=100):
    """COCO box AP, AP50 and AP75 of detections against ground truth.

    Follows `pycocotools`' `COCOeval` (area "all", no crowd boxes): per
    image and class, detections are sorted by confidence and the first
    `max_detections` kept; each detection in turn is matched to the
    not-yet-matched ground-truth box of its class with the highest IoU at
    or above the threshold. Per class, over all images, detections sorted
    by confidence give a precision-recall curve; precision is made
    non-increasing and read at the 101 recalls 0, 0.01, ..., 1 (0 past the
    highest recall reached). AP is the mean over the classes that have
    ground truth (a class with ground truth and no detection counts 0;
    detections of classes without ground truth are ignored) and, for
    `"ap"`, over the IoU thresholds 0.50, 0.55, ..., 0.95.

    Args:
        detections: a dict of arrays, as a detector's non-max suppression
            returns them: `"boxes"` `(N, K, 4)` absolute `"xyxy"`,
            `"confidence"` `(N, K)`, `"labels"` `(N, K)` with -1 for
            padding, and optionally `"num_detections"` `(N,)`, the number
            of real detections at the start of each row.
        ground_truth: a dict with `"boxes"` `(N, M, 4)` absolute `"xyxy"`
            and `"labels"` `(N, M)`, -1 for padding.
        num_classes: the number of classes, or `None` to infer it from the
            largest label. Labels must be below it.
        max_detections: detections kept per image and class (COCO's
            `maxDets`).

    Returns:
        A dict of Python floats: `"ap"` (IoU 0.50:0.95), `"ap50"` and
        `"ap75"`.

    Raises:
        ValueError: on shapes or labels that do not fit, or when the
            ground truth has no box.
    """
    for name, value in (
        ("detections", detections),
        ("ground_truth", ground_truth),
    ):
        if not hasattr(value, "keys"):
            raise ValueError(
                f"`{name}` must be a dict of arrays. Received: "
                f"{name}={type(value).__name__}"
            )
    for key in ("boxes", "confidence", "labels"):
        if key not in detections:
            raise ValueError(
                f"`detections` must have the key {key!r}. Received: keys "
                f"{sorted(detections.keys())}"
            )
    for key in ("boxes", "labels"):
        if key not in ground_truth:
            raise ValueError(
                f"`ground_truth` must have the key {key!r}. Received: keys "
                f"{sorted(ground_truth.keys())}"
            )
    if not isinstance(max_detections, (int, np.integer)) or max_detections < 1:
        raise ValueError(
            "`max_detections` must be a positive int. Received: "
            f"max_detections={max_detections!r}"
        )
    det_boxes = _array(detections["boxes"], "detections['boxes']", 3, 4)
    scores = _array(detections["confidence"], "detections['confidence']", 2)
    det_labels = _array(detections["labels"], "detections['labels']", 2)
    gt_boxes = _array(ground_truth["boxes"], "ground_truth['boxes']", 3, 4)
    gt_labels = _array(ground_truth["labels"], "ground_truth['labels']", 2)
    count, k = det_boxes.shape[:2]
    for name, array in (
        ("detections['confidence']", scores),
        ("detections['labels']", det_labels),
    ):
        if array.shape != (count, k):
            raise ValueError(
                f"`{name}` must have shape {(count, k)}, as "
                f"detections['boxes']. Received: {name}.shape={array.shape}"
            )
    if gt_boxes.shape[0] != count:
        raise ValueError(
            f"`ground_truth['boxes']` must have shape (N, M, 4) with N = "
            f"{count} images, as the detections. Received: "
            f"ground_truth['boxes'].shape={gt_boxes.shape}"
        )
    if gt_labels.shape != gt_boxes.shape[:2]:
        raise ValueError(
            f"`ground_truth['labels']` must have shape "
            f"{gt_boxes.shape[:2]}, as ground_truth['boxes']. Received: "
            f"ground_truth['labels'].shape={gt_labels.shape}"
        )
    if num_classes is None:
        num_classes = (
            int(max(det_labels.max(initial=-1), gt_labels.max(initial=-1))) + 1
        )
    elif not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(
            "`num_classes` must be None or a positive int. Received: "
            f"num_classes={num_classes!r}"
        )
    det_labels = _check_labels(det_labels, "detections['labels']", num_classes)
    gt_labels = _check_labels(gt_labels, "ground_truth['labels']", num_classes)

    det_valid = det_labels >= 0
    if "num_detections" in detections:
        kept = _array(
            detections["num_detections"], "detections['num_detections']", 1
        )
        if kept.shape != (count,) or np.any(kept < 0) or np.any(kept > k):
            raise ValueError(
                f"`detections['num_detections']` must have shape ({count},) "
                f"with values in [0, {k}]. Received: {kept!r}"
            )
        det_valid &= np.arange(k)[None, :] < kept[:, None]
    gt_valid = gt_labels >= 0
    bad = np.argwhere(det_valid & ~np.isfinite(scores))
    if len(bad):
        i, j = bad[0]
        raise ValueError(
            "Detection confidences must be finite. Received: "
            f"detections['confidence'][{i}, {j}] = {scores[i, j]}"
        )
    gt_per_class = np.bincount(gt_labels[gt_valid], minlength=num_classes)
    if not gt_per_class.any():
        raise ValueError(
            "`ground_truth` has no box (every label is -1): AP is undefined."
        )

    det_boxes = det_boxes.astype(np.float64)
    gt_boxes = gt_boxes.astype(np.float64)
    scores = scores.astype(np.float64)

    # Per image, detections by decreasing confidence (stable, as COCOeval's
    # mergesort), padding last.
    order = np.argsort(
        np.where(det_valid, -scores, np.inf), axis=1, kind="stable"
    )
    det_boxes = np.take_along_axis(det_boxes, order[..., None], axis=1)
    scores = np.take_along_axis(scores, order, axis=1)
    det_labels = np.take_along_axis(det_labels, order, axis=1)
    det_valid = np.take_along_axis(det_valid, order, axis=1)
    # Rank of each detection among those of its image and class.
    one_hot = det_valid[..., None] & (
        det_labels[..., None] == np.arange(num_classes)
    )
    rank = np.cumsum(one_hot, axis=1)[one_hot].reshape(-1)
    det_rank = np.full(det_valid.shape, -1)
    det_rank[det_valid] = rank - 1
    det_valid &= det_rank < max_detections

    iou = _iou(det_boxes, gt_boxes)
    same_class = (
        det_valid[:, :, None]
        & gt_valid[:, None, :]
        & (det_labels[:, :, None] == gt_labels[:, None, :])
    )
    iou = np.where(same_class, iou, -1.0)
    thresholds = np.minimum(_IOU_THRESHOLDS, 1 - 1e-10)
    num_thresholds = len(thresholds)
    m = gt_boxes.shape[1]
    # Greedy matching, one detection rank at a time for every image and
    # threshold at once (classes do not interact: other classes' IoUs are
    # -1).
    gt_matched = np.zeros((num_thresholds, count, m), bool)
    det_matched = np.zeros((num_thresholds, count, k), bool)
    if m:
        for j in range(k):
            candidates = iou[None, :, j, :] >= thresholds[:, None, None]
            candidates &= ~gt_matched
            ious = np.where(candidates, iou[None, :, j, :], -np.inf)
            # COCOeval keeps the last of equal IoUs.
            best = m - 1 - np.argmax(ious[..., ::-1], axis=-1)
            found = candidates.any(axis=-1)
            det_matched[:, :, j] = found
            t_index, image_index = np.nonzero(found)
            gt_matched[t_index, image_index, best[found]] = True

    # Per class over all images: by decreasing confidence, ties by image,
    # then by rank in the image (COCOeval's stable sorts).
    images = np.broadcast_to(np.arange(count)[:, None], (count, k))
    flat = det_valid.reshape(-1)
    labels_flat = det_labels.reshape(-1)[flat]
    scores_flat = scores.reshape(-1)[flat]
    images_flat = images.reshape(-1)[flat]
    rank_flat = det_rank.reshape(-1)[flat]
    tp_flat = det_matched.reshape(num_thresholds, -1)[:, flat]
    order = np.lexsort((rank_flat, images_flat, -scores_flat, labels_flat))
    labels_flat = labels_flat[order]
    tp_flat = tp_flat[:, order]
    starts = np.searchsorted(labels_flat, np.arange(num_classes + 1))

    precision = np.zeros((num_thresholds, num_classes, len(_RECALL_THRESHOLDS)))
    for c in np.flatnonzero(gt_per_class):
        tp = tp_flat[:, starts[c] : starts[c + 1]]
        if not tp.shape[1]:
            continue
        tp_sum = np.cumsum(tp, axis=1).astype(float)
        fp_sum = np.cumsum(~tp, axis=1).astype(float)
        recall = tp_sum / gt_per_class[c]
        pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
        pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
        for t in range(num_thresholds):
            index = np.searchsorted(recall[t], _RECALL_THRESHOLDS, side="left")
            inside = index < len(recall[t])
            precision[t, c, inside] = pr[t, index[inside]]
    classes = gt_per_class > 0
    per_threshold = precision[:, classes].mean(axis=(1, 2))
    return {
        "ap": float(per_threshold.mean()),
        "ap50": float(per_threshold[0]),
        "ap75": float(per_threshold[5]),
    }
