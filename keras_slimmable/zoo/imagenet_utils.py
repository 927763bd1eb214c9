"""ImageNet input preprocessing and prediction decoding, as
`keras.applications.imagenet_utils` offers them, for the zoo's models.

The class names ship with the package (`imagenet_classes.py`): nothing is
downloaded.
"""

import keras
import numpy as np
from keras.applications import imagenet_utils as keras_imagenet_utils

from keras_slimmable.zoo.imagenet_classes import IMAGENET_CLASSES


def preprocess_input(x, data_format=None):
    """Normalises RGB images in [0, 255] as the reference models expect.

    Exactly `keras.applications.imagenet_utils.preprocess_input(x,
    data_format, mode="torch")`, to which it delegates: scales to [0, 1],
    then subtracts the ImageNet mean `(0.485, 0.456, 0.406)` and divides by
    the standard deviation `(0.229, 0.224, 0.225)`, per RGB channel. Two
    differences, both where Keras would fail or surprise: integer tensors
    (such as decoded `uint8` images) are cast to `keras.config.floatx()`
    first, as Keras already does for NumPy arrays, and the caller's array
    is never overwritten (Keras writes float NumPy arrays in place).

    Args:
        x: a NumPy array or a tensor of RGB images, values in [0, 255]:
            one image (3D) or a batch (4D).
        data_format: `"channels_last"` or `"channels_first"`; `None` for
            `keras.config.image_data_format()`. The zoo's models take
            channels last. Defaults to `None`.

    Returns:
        The normalised images: a NumPy array for a NumPy input, else a
        tensor; float, of the input's float type or `floatx`.

    Raises:
        ValueError: for an unknown `data_format`.

    Example:

    ```python
    model = keras_slimmable.zoo.s_mobilenet_v1(weights="imagenet")
    logits = model(keras_slimmable.zoo.preprocess_input(images))
    ```
    """
    if isinstance(x, (list, tuple)):
        x = np.asarray(x)
    if isinstance(x, np.ndarray):
        if np.issubdtype(x.dtype, np.floating):
            x = x.copy()
    elif not keras.backend.is_float_dtype(x.dtype):
        x = keras.ops.cast(x, keras.config.floatx())
    elif keras.backend.backend() == "torch":
        x = keras.ops.copy(x)  # Keras divides torch tensors in place.
    return keras_imagenet_utils.preprocess_input(
        x, data_format=data_format, mode="torch"
    )


def decode_predictions(preds, top=5):
    """The top ImageNet classes of each prediction, with their names.

    The output format, order and errors of
    `keras.applications.imagenet_utils.decode_predictions`, with the
    class names shipped in this package (Keras's names; see
    `keras_slimmable.zoo.imagenet_classes`) instead of a download.

    The zoo's models output logits by default: decode them as they are
    (the order is that of the probabilities) or build the model with
    `classifier_activation="softmax"` to read probabilities as scores.

    Args:
        preds: a batch of predictions over the 1000 ImageNet classes, a
            NumPy array or tensor of shape `(samples, 1000)`.
        top: how many classes to return per sample. Defaults to `5`.

    Returns:
        One list per sample of `(wnid, class_name, score)` tuples, the
        highest score first, for example
        `("n02504458", "African_elephant", 0.92)`.

    Raises:
        ValueError: if `preds` is not of shape `(samples, 1000)` or `top`
            is not a positive int.

    Example:

    ```python
    model = keras_slimmable.zoo.s_resnet50(
        weights="imagenet", classifier_activation="softmax"
    )
    probabilities = model.predict(keras_slimmable.zoo.preprocess_input(x))
    keras_slimmable.zoo.decode_predictions(probabilities, top=3)
    ```
    """
    if isinstance(preds, (list, tuple)):
        preds = np.asarray(preds)
    if len(preds.shape) != 2 or preds.shape[1] != len(IMAGENET_CLASSES):
        # Keras's message, word for word.
        raise ValueError(
            "`decode_predictions` expects "
            "a batch of predictions "
            "(i.e. a 2D array of shape (samples, 1000)). "
            f"Received array with shape: {preds.shape}"
        )
    if (
        isinstance(top, bool)
        or not isinstance(top, (int, np.integer))
        or top < 1
    ):
        raise ValueError(f"`top` must be a positive int. Received: top={top!r}")
    results = []
    for pred in keras.ops.convert_to_numpy(preds):
        top_indices = pred.argsort()[-top:][::-1]
        result = [IMAGENET_CLASSES[i] + (pred[i],) for i in top_indices]
        result.sort(key=lambda entry: entry[2], reverse=True)
        results.append(result)
    return results
