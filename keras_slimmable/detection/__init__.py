"""Slimmable object detection: a RetinaNet on a slimmable backbone.

One detector runs at every width of its backbone (`set_width`, `width=`),
trained by Algorithm 1 (`fit` sums every width's detection loss and takes
one step). The backbone's pyramid levels (`pyramid_outputs` of a zoo model
built with `include_top=False`) feed a feature pyramid and heads shared by
all widths; see `docs/detection.md`.

It needs keras-hub (anchors and non-max suppression):
`pip install keras-slimmable[detection]`.
"""

from keras_slimmable._optional import require_keras_hub

require_keras_hub("keras_slimmable.detection")

from keras_slimmable.detection.box_ap import box_ap  # noqa: E402
from keras_slimmable.detection.retinanet import BoxAPCallback  # noqa: E402
from keras_slimmable.detection.retinanet import SlimmableRetinaNet  # noqa: E402
from keras_slimmable.detection.retinanet import retinanet  # noqa: E402

__all__ = ["BoxAPCallback", "SlimmableRetinaNet", "box_ap", "retinanet"]
