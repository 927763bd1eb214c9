"""A RetinaNet whose backbone is slimmable: one detector, every width.

The backbone's pyramid levels change their channel count with the width;
the feature pyramid and the heads after them do not. The lateral 1x1
convolutions that enter the pyramid are `SlimmableConv2D` layers with a
fixed output count: at a narrower width they read the leading input
channels of their kernel. That equals the reference's zero padding of the
level back to its full channel count followed by a full lateral
convolution (the padded channels meet kernel rows that multiply zeros),
at a fraction of its cost (`docs/detection.md` measures both).

Anchors and non-max suppression are keras-hub's (`AnchorGenerator`,
`NonMaxSuppression`), boxes are encoded with Keras's bounding-box
utilities, and the losses are keras-hub's RetinaNet defaults (Huber on the
box deltas, focal cross-entropy on the classes, both summed and divided by
the batch's matched anchors).
"""

import math

import keras
import numpy as np
from keras import ops

from keras_slimmable.layers import SlimmableConv2D
from keras_slimmable.model import SlimmableModel
from keras_slimmable.widths import width_name

_DETECTION_ARGUMENTS = (
    "num_classes",
    "min_level",
    "max_level",
    "num_scales",
    "aspect_ratios",
    "anchor_size",
    "positive_threshold",
    "negative_threshold",
    "box_variance",
    "confidence_threshold",
    "iou_threshold",
    "max_detections",
)


def retinanet(
    backbone,
    num_classes,
    min_level=3,
    max_level=7,
    fpn_channels=256,
    head_channels=256,
    head_convs=4,
    prior_probability=0.01,
    name=None,
    **kwargs,
):
    """Builds a `SlimmableRetinaNet` on a slimmable backbone.

    The backbone's levels `min_level`..(its highest, at most `max_level`)
    enter a feature pyramid of `fpn_channels` channels through slimmable
    lateral 1x1 convolutions (top-down: each level adds its upsampled
    coarser neighbour, then a 3x3 convolution); the levels above the
    backbone's highest are stride-2 3x3 convolutions of the pyramid's
    coarsest level, as keras-hub's RetinaNet does. Two heads of
    `head_convs` 3x3 convolutions (ReLU) and an output convolution, shared
    by every level, predict per anchor the box deltas and the class logits.
    Only the backbone changes with the width.

    Args:
        backbone: a `SlimmableModel` with pyramid outputs, e.g.
            `keras_slimmable.zoo.s_mobilenet_v2(include_top=False,
            input_shape=(128, 128, 3), weights=None)`. Its input must have
            a fixed height and width (the anchors are computed from it).
        num_classes: the number of object classes.
        min_level, max_level: the pyramid levels the heads run on (level
            `k` has stride `2**k`). Defaults to 3 and 7, as keras-hub's.
        fpn_channels: the pyramid's channels at every width.
        head_channels: the heads' hidden channels.
        head_convs: the heads' hidden 3x3 convolutions.
        prior_probability: the classification bias's initial foreground
            probability (RetinaNet's 0.01).
        name: the model name; defaults to `<backbone name>_retinanet`.
        **kwargs: anchor, matching and decoding settings of
            `SlimmableRetinaNet` (`num_scales`, `aspect_ratios`,
            `anchor_size`, `positive_threshold`, `negative_threshold`,
            `box_variance`, `confidence_threshold`, `iou_threshold`,
            `max_detections`).

    Returns:
        A `SlimmableRetinaNet` with the backbone's widths (and width
        range).

    Raises:
        ValueError: a backbone that is not a `SlimmableModel`, has no
            pyramid outputs or lacks `min_level`; bad levels or counts.
    """
    levels = _backbone_levels(backbone, min_level, max_level)
    for argument, value in (
        ("num_classes", num_classes),
        ("fpn_channels", fpn_channels),
        ("head_channels", head_channels),
    ):
        _check_count(argument, value, minimum=1)
    _check_count("head_convs", head_convs, minimum=0)
    if not 0.0 < prior_probability < 1.0:
        raise ValueError(
            "`prior_probability` must be in (0, 1). Received: "
            f"prior_probability={prior_probability!r}"
        )
    anchors_per_location = kwargs.get("num_scales", 3) * len(
        kwargs.get("aspect_ratios", (0.5, 1.0, 2.0))
    )
    pyramid = backbone.pyramid_outputs
    features = _feature_pyramid(
        {level: pyramid[f"P{level}"] for level in levels},
        min_level,
        max_level,
        fpn_channels,
    )
    box_head = _head(
        "box_head", head_convs, head_channels, anchors_per_location * 4, 0.0
    )
    class_head = _head(
        "class_head",
        head_convs,
        head_channels,
        anchors_per_location * num_classes,
        -math.log((1.0 - prior_probability) / prior_probability),
    )
    boxes, classes = [], []
    for level in range(min_level, max_level + 1):
        feature = features[level]
        boxes.append(
            keras.layers.Reshape((-1, 4), name=f"boxes_P{level}")(
                box_head(feature)
            )
        )
        classes.append(
            keras.layers.Reshape((-1, num_classes), name=f"classes_P{level}")(
                class_head(feature)
            )
        )
    outputs = {
        "boxes": keras.layers.Concatenate(axis=1, name="boxes")(boxes),
        "classes": keras.layers.Concatenate(axis=1, name="classes")(classes),
    }
    return SlimmableRetinaNet(
        inputs=backbone.inputs[0],
        outputs=outputs,
        widths=backbone.widths,
        width_range=backbone.width_range,
        num_classes=num_classes,
        min_level=min_level,
        max_level=max_level,
        name=name or f"{backbone.name}_retinanet",
        **kwargs,
    )


def _check_count(argument, value, minimum):
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, np.integer))
        or value < minimum
    ):
        raise ValueError(
            f"`{argument}` must be an integer >= {minimum}. Received: "
            f"{argument}={value!r}"
        )


def _backbone_levels(backbone, min_level, max_level):
    """The backbone levels the pyramid reads: `min_level` up to the
    backbone's highest (at most `max_level`)."""
    if not isinstance(backbone, SlimmableModel):
        raise ValueError(
            "`backbone` must be a SlimmableModel with pyramid outputs (a zoo "
            "model built with include_top=False). Received: "
            f"backbone={backbone!r}"
        )
    pyramid = getattr(backbone, "pyramid_outputs", None) or {}
    if not pyramid:
        raise ValueError(
            f"Backbone '{backbone.name}' has no pyramid outputs. Build a zoo "
            "backbone with include_top=False, or give your SlimmableModel "
            "`pyramid_levels={'P3': <layer name>, ...}`."
        )
    _check_count("min_level", min_level, minimum=1)
    _check_count("max_level", max_level, minimum=1)
    if min_level > max_level:
        raise ValueError(
            "`min_level` must be <= `max_level`. Received: "
            f"min_level={min_level}, max_level={max_level}"
        )
    available = sorted(int(key[1:]) for key in pyramid)
    if min_level not in available:
        raise ValueError(
            f"Backbone '{backbone.name}' has the pyramid levels "
            f"{[f'P{k}' for k in available]}; min_level={min_level} asks "
            f"for P{min_level}."
        )
    top = min(max(available), max_level)
    missing = [k for k in range(min_level, top + 1) if k not in available]
    if missing:
        raise ValueError(
            f"Backbone '{backbone.name}' lacks the pyramid levels "
            f"{[f'P{k}' for k in missing]} between P{min_level} and P{top}."
        )
    height, width = backbone.inputs[0].shape[1:3]
    if height is None or width is None:
        raise ValueError(
            f"Backbone '{backbone.name}' takes images of any size "
            f"({backbone.inputs[0].shape}); a detector computes its anchors "
            "from a fixed size. Build the backbone with "
            "input_shape=(height, width, 3)."
        )
    return list(range(min_level, top + 1))


def _feature_pyramid(levels, min_level, max_level, channels):
    """The feature pyramid: fixed-width levels `min_level`..`max_level`
    from the backbone's slimmable ones."""
    top = max(levels)
    laterals = {
        level: SlimmableConv2D(channels, 1, name=f"fpn_lateral_P{level}")(
            feature
        )
        for level, feature in levels.items()
    }
    merged = {top: laterals[top]}
    for level in range(top - 1, min_level - 1, -1):
        upsampled = keras.layers.UpSampling2D(2, name=f"fpn_up_P{level + 1}")(
            merged[level + 1]
        )
        merged[level] = keras.layers.Add(name=f"fpn_add_P{level}")(
            [laterals[level], upsampled]
        )
    outputs = {
        level: keras.layers.Conv2D(
            channels, 3, padding="same", name=f"fpn_output_P{level}"
        )(merged[level])
        for level in merged
    }
    for level in range(top + 1, max_level + 1):
        previous = outputs[level - 1]
        if level > top + 1:
            previous = keras.layers.ReLU(name=f"fpn_relu_P{level - 1}")(
                previous
            )
        outputs[level] = keras.layers.Conv2D(
            channels,
            3,
            strides=2,
            padding="same",
            name=f"fpn_output_P{level}",
        )(previous)
    return outputs


def _head(name, convs, channels, outputs, bias):
    """A prediction head, shared by every pyramid level: `convs` 3x3
    convolutions with ReLU, then an output convolution. Returns a function
    applying the same layers to a level."""
    initializer = keras.initializers.RandomNormal(stddev=0.01)
    layers = [
        keras.layers.Conv2D(
            channels,
            3,
            padding="same",
            activation="relu",
            kernel_initializer=initializer,
            name=f"{name}_conv{i + 1}",
        )
        for i in range(convs)
    ]
    layers.append(
        keras.layers.Conv2D(
            outputs,
            3,
            padding="same",
            kernel_initializer=initializer,
            bias_initializer=keras.initializers.Constant(bias),
            name=f"{name}_output",
        )
    )

    def apply(feature):
        for layer in layers:
            feature = layer(feature)
        return feature

    return apply


@keras.saving.register_keras_serializable("keras_slimmable")
class SlimmableRetinaNet(SlimmableModel):
    """A RetinaNet detector that runs at every width of its backbone.

    Build one with `keras_slimmable.detection.retinanet(backbone, ...)`.
    `model(images, width=w)` returns the raw head outputs
    `{"boxes": (N, anchors, 4) deltas, "classes": (N, anchors, classes)
    logits}`; `predict` and `detect` decode them into boxes with non-max
    suppression: `{"boxes": (N, max_detections, 4) "xyxy" pixels,
    "confidence", "labels", "num_detections"}`, padded with -1.

    Training (`fit(images, {"boxes": (N, M, 4), "labels": (N, M)})`, boxes
    "xyxy" in pixels, padded with label -1): every step encodes the boxes
    against the anchors once, then runs every width (Algorithm 1), sums
    their detection losses and takes one optimizer step; the logs hold
    `w<width>_loss` per width. `evaluate_box_ap` measures COCO box AP per
    width; `BoxAPCallback` logs it during `fit`.

    Args:
        inputs, outputs, widths, width, width_range, name: as for
            `SlimmableModel`; `outputs` is `{"boxes": ..., "classes": ...}`.
        num_classes: the number of classes.
        min_level, max_level: the pyramid levels of the outputs, in order.
        num_scales, aspect_ratios, anchor_size: keras-hub
            `AnchorGenerator` settings (defaults 3, (0.5, 1, 2), 4).
        positive_threshold, negative_threshold: an anchor whose best IoU
            with a box is at least `positive_threshold` learns that box;
            below `negative_threshold`, background; between, ignored.
        box_variance: the box-delta scale of Keras's `encode_box_to_deltas`.
        confidence_threshold, iou_threshold, max_detections: decoding.
    """

    _config_arguments = _DETECTION_ARGUMENTS

    def __init__(
        self,
        inputs,
        outputs,
        widths,
        num_classes,
        min_level=3,
        max_level=7,
        num_scales=3,
        aspect_ratios=(0.5, 1.0, 2.0),
        anchor_size=4.0,
        positive_threshold=0.5,
        negative_threshold=0.4,
        box_variance=(1.0, 1.0, 1.0, 1.0),
        confidence_threshold=0.05,
        iou_threshold=0.5,
        max_detections=100,
        width=None,
        width_range=None,
        name=None,
        **kwargs,
    ):
        super().__init__(
            inputs=inputs,
            outputs=outputs,
            widths=widths,
            width=width,
            width_range=width_range,
            name=name,
            **kwargs,
        )
        if not isinstance(outputs, dict) or set(outputs) != {
            "boxes",
            "classes",
        }:
            raise ValueError(
                "A SlimmableRetinaNet's outputs are {'boxes': ..., "
                f"'classes': ...}}. Received: outputs={outputs!r}"
            )
        if not 0.0 <= negative_threshold <= positive_threshold <= 1.0:
            raise ValueError(
                "Thresholds must satisfy 0 <= negative_threshold <= "
                "positive_threshold <= 1. Received: "
                f"negative_threshold={negative_threshold!r}, "
                f"positive_threshold={positive_threshold!r}"
            )
        self.num_classes = int(num_classes)
        self.min_level = int(min_level)
        self.max_level = int(max_level)
        self.num_scales = int(num_scales)
        self.aspect_ratios = tuple(float(r) for r in aspect_ratios)
        self.anchor_size = float(anchor_size)
        self.positive_threshold = float(positive_threshold)
        self.negative_threshold = float(negative_threshold)
        self.box_variance = tuple(float(v) for v in box_variance)
        self.confidence_threshold = float(confidence_threshold)
        self.iou_threshold = float(iou_threshold)
        self.max_detections = int(max_detections)
        self.image_shape = tuple(self.inputs[0].shape[1:])
        self._anchors = self._make_anchors()
        count = outputs["boxes"].shape[1]
        if count != len(self._anchors):
            raise ValueError(
                f"The outputs predict {count} boxes per image, but levels "
                f"P{min_level}-P{max_level} with {self.num_scales} scales and "
                f"{len(self.aspect_ratios)} aspect ratios have "
                f"{len(self._anchors)} anchors."
            )

    # Anchors, targets, decoding -------------------------------------------

    def _make_anchors(self):
        import keras_hub

        generator = keras_hub.layers.AnchorGenerator(
            bounding_box_format="xyxy",
            min_level=self.min_level,
            max_level=self.max_level,
            num_scales=self.num_scales,
            aspect_ratios=list(self.aspect_ratios),
            anchor_size=self.anchor_size,
        )
        anchors = generator(np.zeros((1,) + self.image_shape, "float32"))
        levels = range(self.min_level, self.max_level + 1)
        return np.concatenate(
            [keras.ops.convert_to_numpy(anchors[f"P{k}"]) for k in levels]
        ).astype("float32")

    @property
    def anchors(self):
        """The anchors, `(count, 4)` "xyxy" pixels, in output order."""
        return self._anchors.copy()

    def _prepare_targets(self, x, y, sample_weight):
        if not isinstance(y, dict) or not {"boxes", "labels"} <= set(y):
            raise ValueError(
                f"SlimmableRetinaNet '{self.name}' trains on "
                "y={'boxes': (N, M, 4) xyxy pixels, 'labels': (N, M)} "
                f"(padded with label -1). Received: y={y!r}"
            )
        if sample_weight is not None:
            raise ValueError(
                "SlimmableRetinaNet weights each anchor itself; "
                "`sample_weight` is not supported. Received: "
                f"sample_weight={sample_weight!r}"
            )
        return self.encode_targets(y["boxes"], y["labels"])

    def encode_targets(self, boxes, labels):
        """The training targets of a batch of boxes.

        Each anchor is matched to the box of highest IoU: at least
        `positive_threshold`, it learns that box's deltas and class; below
        `negative_threshold`, background (all classes 0); in between, it is
        ignored. Weights are divided by the batch's matched anchors.

        Args:
            boxes: `(N, M, 4)` "xyxy" pixels.
            labels: `(N, M)` class indices, -1 for padding.

        Returns:
            `(y, sample_weight)` for the compiled losses: `y` is
            `{"boxes": (N, A, 4) deltas, "classes": (N, A, C) one-hot}`,
            `sample_weight` `{"boxes": (N, A), "classes": (N, A)}`.
        """
        boxes = ops.cast(boxes, "float32")
        labels = ops.cast(labels, "int32")
        anchors = ops.convert_to_tensor(self._anchors)
        iou = _pairwise_iou(anchors, boxes)  # (N, A, M)
        iou = ops.where(ops.expand_dims(labels >= 0, 1), iou, -1.0)
        best = ops.argmax(iou, axis=-1)
        best_iou = ops.max(iou, axis=-1)
        positive = best_iou >= self.positive_threshold
        counted = ops.logical_or(positive, best_iou < self.negative_threshold)
        matched = ops.take_along_axis(boxes, ops.expand_dims(best, -1), axis=1)
        deltas = keras.utils.bounding_boxes.encode_box_to_deltas(
            anchors=ops.expand_dims(anchors, 0),
            boxes=matched,
            anchor_format="xyxy",
            box_format="xyxy",
            encoding_format="center_xywh",
            variance=list(self.box_variance),
        )
        deltas = ops.where(ops.expand_dims(positive, -1), deltas, 0.0)
        classes = ops.take_along_axis(labels, best, axis=1)
        one_hot = ops.one_hot(
            ops.where(positive, classes, 0), self.num_classes
        ) * ops.expand_dims(ops.cast(positive, "float32"), -1)
        normalizer = ops.maximum(ops.sum(ops.cast(positive, "float32")), 1.0)
        weights = {
            "boxes": ops.cast(positive, "float32") / normalizer,
            "classes": ops.cast(counted, "float32") / normalizer,
        }
        return {"boxes": deltas, "classes": one_hot}, weights

    def decode_predictions(self, predictions):
        """Boxes, confidences and labels from raw head outputs: the deltas
        applied to the anchors, clipped to the image, then keras-hub's
        class-agnostic non-max suppression."""
        import keras_hub

        height, width = self.image_shape[:2]
        predictions = {
            key: ops.convert_to_tensor(predictions[key], "float32")
            for key in ("boxes", "classes")
        }
        boxes = keras.utils.bounding_boxes.decode_deltas_to_boxes(
            anchors=ops.convert_to_tensor(self._anchors),
            boxes_delta=predictions["boxes"],
            anchor_format="xyxy",
            box_format="xyxy",
            encoded_format="center_xywh",
            variance=list(self.box_variance),
        )
        upper = ops.convert_to_tensor([width, height, width, height], "float32")
        boxes = ops.clip(boxes, 0.0, upper)
        suppression = keras_hub.layers.NonMaxSuppression(
            bounding_box_format="xyxy",
            from_logits=True,
            iou_threshold=self.iou_threshold,
            confidence_threshold=self.confidence_threshold,
            max_detections=self.max_detections,
        )
        return suppression(boxes, predictions["classes"])

    def predict_step(self, *args):
        # `(data)`, or `(state, data)` on JAX, which also returns the state.
        outputs = super().predict_step(*args)
        if isinstance(outputs, tuple):
            return self.decode_predictions(outputs[0]), outputs[1]
        return self.decode_predictions(outputs)

    def detect(self, images, width=None, batch_size=32, verbose=0):
        """Detections at `width` (default: the model's width), as NumPy:
        `{"boxes", "confidence", "labels", "num_detections"}`."""
        previous = self.width
        if width is not None:
            self.set_width(width)
        try:
            return self.predict(images, batch_size=batch_size, verbose=verbose)
        finally:
            self.set_width(previous)

    # Training and evaluation ----------------------------------------------

    def compile(
        self,
        optimizer="adam",
        box_loss="auto",
        classification_loss="auto",
        **kwargs,
    ):
        """Configures training, with keras-hub's RetinaNet losses by default.

        Args:
            optimizer: as for `keras.Model.compile`.
            box_loss: `"auto"` (`keras.losses.Huber(reduction="sum")`) or a
                loss on the box deltas.
            classification_loss: `"auto"` (binary focal cross-entropy from
                logits, alpha 0.25, gamma 2, `reduction="sum"`) or a loss on
                the one-hot classes.
            **kwargs: as for `SlimmableModel.compile` (`sandwich_rule`,
                ...); not `loss`, `metrics` or `inplace_distillation`.
        """
        for argument in ("loss", "metrics", "inplace_distillation"):
            if kwargs.get(argument):
                raise ValueError(
                    f"SlimmableRetinaNet.compile sets its own losses and "
                    f"takes no `{argument}`; pass `box_loss` and "
                    f"`classification_loss`. Received: {argument}="
                    f"{kwargs[argument]!r}"
                )
            kwargs.pop(argument, None)
        if box_loss == "auto":
            box_loss = keras.losses.Huber(reduction="sum")
        if classification_loss == "auto":
            classification_loss = keras.losses.BinaryFocalCrossentropy(
                apply_class_balancing=True,
                alpha=0.25,
                gamma=2.0,
                from_logits=True,
                reduction="sum",
            )
        super().compile(optimizer=optimizer, **kwargs)
        self._box_loss = keras.losses.get(box_loss)
        self._classification_loss = keras.losses.get(classification_loss)
        self._compile_config.config.update(
            box_loss=box_loss, classification_loss=classification_loss
        )

    def _check_compiled_loss(self):
        if getattr(self, "_box_loss", None) is None:
            raise ValueError(
                f"Detector '{self.name}' is not compiled: call `compile()` "
                "before `fit` or `evaluate`."
            )

    def _data_loss(self, y, y_pred, sample_weight):
        """The detection loss of one width: the box loss on the matched
        anchors plus the classification loss on every counted anchor."""
        return self._box_loss(
            y["boxes"], y_pred["boxes"], sample_weight["boxes"]
        ) + self._classification_loss(
            y["classes"], y_pred["classes"], sample_weight["classes"]
        )

    def fit(self, x=None, y=None, *args, **kwargs):
        """`keras.Model.fit`; NumPy boxes are checked first (inside the
        image, known classes, at least one per image)."""
        self._check_numpy_targets(x, y)
        return super().fit(x, y, *args, **kwargs)

    def evaluate(self, x=None, y=None, *args, **kwargs):
        self._check_numpy_targets(x, y)
        return super().evaluate(x, y, *args, **kwargs)

    def _check_numpy_targets(self, x, y):
        if isinstance(x, np.ndarray) and isinstance(y, dict):
            from keras_slimmable.data.detection import check_targets

            check_targets(
                x,
                y.get("boxes"),
                y.get("labels"),
                num_classes=self.num_classes,
            )
            if tuple(x.shape[1:]) != self.image_shape:
                raise ValueError(
                    f"Detector '{self.name}' takes images of shape "
                    f"{self.image_shape}. Received: images of shape "
                    f"{x.shape[1:]}"
                )

    def evaluate_box_ap(
        self, images, ground_truth, widths=None, batch_size=32, verbose=0
    ):
        """COCO box AP of every width (default: `self.widths`).

        Args:
            images: `(N, H, W, 3)` images.
            ground_truth: `{"boxes": (N, M, 4) xyxy, "labels": (N, M)}`.

        Returns:
            `{width: {"ap": ..., "ap50": ..., "ap75": ...}}`.
        """
        from keras_slimmable.detection.box_ap import box_ap

        widths = self.widths if widths is None else widths
        results = {}
        for width in widths:
            detections = self.detect(
                images, width=width, batch_size=batch_size, verbose=verbose
            )
            results[width] = box_ap(
                detections, ground_truth, num_classes=self.num_classes
            )
        return results


def _pairwise_iou(anchors, boxes):
    """IoU of `(A, 4)` anchors with `(N, M, 4)` boxes, xyxy: `(N, A, M)`."""
    a = ops.reshape(anchors, (1, -1, 1, 4))
    b = ops.expand_dims(boxes, 1)
    width = ops.maximum(
        ops.minimum(a[..., 2], b[..., 2]) - ops.maximum(a[..., 0], b[..., 0]),
        0.0,
    )
    height = ops.maximum(
        ops.minimum(a[..., 3], b[..., 3]) - ops.maximum(a[..., 1], b[..., 1]),
        0.0,
    )
    intersection = width * height
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return intersection / ops.maximum(area_a + area_b - intersection, 1e-8)


class BoxAPCallback(keras.callbacks.Callback):
    """Logs every width's COCO box AP at the end of each `every` epochs:
    `w<width>_box_ap` and `w<width>_box_ap50`.

    Args:
        images, ground_truth: the evaluation set, as for `evaluate_box_ap`.
        every: evaluate every this many epochs (and after the last).
        batch_size: the detection batch size.
    """

    def __init__(self, images, ground_truth, every=1, batch_size=32):
        super().__init__()
        self.images = images
        self.ground_truth = ground_truth
        self.every = every
        self.batch_size = batch_size

    def on_epoch_end(self, epoch, logs=None):
        if logs is None or (epoch + 1) % self.every:
            return
        results = self.model.evaluate_box_ap(
            self.images, self.ground_truth, batch_size=self.batch_size
        )
        for width, values in results.items():
            logs[f"{width_name(width)}_box_ap"] = values["ap"]
            logs[f"{width_name(width)}_box_ap50"] = values["ap50"]
