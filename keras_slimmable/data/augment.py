"""Image augmentation of the reference training recipe (TensorFlow only).

Every function takes one image `(height, width, 3)`, either float with
values in [0, 1] or `uint8` (converted to float32 in [0, 1] first), returns
float32, and works alone, eagerly or inside `tf.data`. The random ones take
`seed`: `None` draws from TensorFlow's global generator; an int or a pair of
ints makes the result a fixed function of `(image, seed)` (they use
TensorFlow's stateless random ops, which is also how the pipelines give
every example its own reproducible randomness).

The reference (PyTorch, torchvision) training transform is
`RandomResizedCrop(224, scale)`, `ColorJitter(0.4, 0.4, 0.4)`,
`Lighting(0.1)`, `RandomHorizontalFlip()`, then normalisation; evaluation is
`Resize(256)`, `CenterCrop(224)`, normalisation.
"""

import math
import numbers

from keras_slimmable._optional import require_tensorflow
from keras_slimmable.imagenet import IMAGENET_MEAN
from keras_slimmable.imagenet import IMAGENET_STD

tf = require_tensorflow("keras_slimmable.data (tf.data pipelines)")

# AlexNet's PCA of ImageNet RGB pixels (values in [0, 1]): the eigenvalues
# and, as columns, the eigenvectors (the constants of fb.resnet.torch and of
# the reference implementation).
IMAGENET_PCA_EIGENVALUES = (0.2175, 0.0188, 0.0045)
IMAGENET_PCA_EIGENVECTORS = (
    (-0.5675, 0.7192, 0.4009),
    (-0.5808, -0.0045, -0.8140),
    (-0.5836, -0.6948, 0.4203),
)

# ITU-R 601-2 luma, as PIL's and torchvision's grayscale conversion.
_LUMA = (0.299, 0.587, 0.114)

_MAX_ATTEMPTS = 10  # torchvision's RandomResizedCrop


def to_float(image):
    """`image` as float32 in [0, 1]: `uint8` is divided by 255, floats are
    cast and assumed to be in [0, 1] already."""
    image = tf.convert_to_tensor(image)
    if image.dtype == tf.uint8:
        return tf.cast(image, tf.float32) / 255.0
    if not image.dtype.is_floating:
        raise ValueError(
            "Expected an image of uint8 or float values in [0, 1]. "
            f"Received: dtype={image.dtype.name}"
        )
    return tf.cast(image, tf.float32)


def _seed(seed):
    """A stateless seed, shape `(2,)`, from None, an int or a pair."""
    if seed is None:
        return tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
    if isinstance(seed, numbers.Integral):
        return tf.constant([seed, 0], tf.int64)
    seed = tf.convert_to_tensor(seed)
    if not seed.dtype.is_integer or seed.shape.rank != 1:
        raise ValueError(
            "`seed` must be None, an int or a pair of ints. "
            f"Received: seed={seed!r}"
        )
    return seed


def _split(seed, count):
    return tf.unstack(
        tf.random.experimental.stateless_split(_seed(seed), count)
    )


def _check_range(value, name):
    low, high = value
    if not 0 < low <= high:
        raise ValueError(
            f"`{name}` must be a pair (low, high) with 0 < low <= high. "
            f"Received: {name}={value!r}"
        )


def _resize(image, size):
    """Bilinear, antialiased when shrinking, as PIL's resize in torchvision."""
    return tf.image.resize(
        image, (size, size), method="bilinear", antialias=True
    )


def crop_window(
    image_shape,
    scale=(0.08, 1.0),
    ratio=(3 / 4, 4 / 3),
    seed=None,
    sampler="torchvision",
):
    """Samples the box of a random-resized-crop, `(top, left, height,
    width)` as int32 scalars, for an image of shape `image_shape`.

    `sampler="torchvision"` (the default) is torchvision's
    `RandomResizedCrop.get_params`: up to 10 attempts of an area uniform in
    `scale` times the image area and an aspect ratio (width / height)
    log-uniform in `ratio`, sides rounded, the first box that fits is
    placed uniformly at random; if none fits, a centre crop of the whole
    image with its aspect ratio clamped to `ratio`.

    `sampler="inception"` uses `tf.image.sample_distorted_bounding_box`
    (TF-slim's Inception preprocessing) with the same ranges and the same
    centre-crop fallback. Its draws are distributed differently (measured:
    the area's density falls with the area, and aspect ratios above 1 are
    more frequent than below), so its crops are smaller on average: on a
    1000 x 1000 image with `scale=(0.08, 1)`, a mean area fraction of 0.41
    against 0.48 for torchvision's.
    """
    _check_range(scale, "scale")
    _check_range(ratio, "ratio")
    if sampler not in ("torchvision", "inception"):
        raise ValueError(
            "`sampler` must be 'torchvision' or 'inception'. "
            f"Received: sampler={sampler!r}"
        )
    shape = tf.cast(tf.convert_to_tensor(image_shape), tf.int32)
    height, width = shape[0], shape[1]
    seeds = _split(seed, 3)
    if sampler == "inception":
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.stack([height, width, 3]),
            bounding_boxes=tf.zeros([1, 0, 4]),
            seed=seeds[0],
            min_object_covered=0.0,
            aspect_ratio_range=ratio,
            area_range=scale,
            max_attempts=_MAX_ATTEMPTS,
            use_image_if_no_bounding_boxes=True,
        )
        # It returns the whole image when every attempt fails; the
        # fallback is the whole image too unless its aspect is out of range.
        found = tf.logical_not(
            tf.logical_and(tf.equal(size[0], height), tf.equal(size[1], width))
        )
        box = (begin[0], begin[1], size[0], size[1])
    else:
        area = tf.cast(height * width, tf.float32)
        target_area = area * tf.random.stateless_uniform(
            [_MAX_ATTEMPTS], seeds[0], minval=scale[0], maxval=scale[1]
        )
        aspect = tf.exp(
            tf.random.stateless_uniform(
                [_MAX_ATTEMPTS],
                seeds[1],
                minval=math.log(ratio[0]),
                maxval=math.log(ratio[1]),
            )
        )
        # Python's round() is round-half-to-even, like tf.round.
        widths = tf.cast(tf.round(tf.sqrt(target_area * aspect)), tf.int32)
        heights = tf.cast(tf.round(tf.sqrt(target_area / aspect)), tf.int32)
        fits = (
            (widths > 0)
            & (widths <= width)
            & (heights > 0)
            & (heights <= height)
        )
        found = tf.reduce_any(fits)
        first = tf.argmax(tf.cast(fits, tf.int32), output_type=tf.int32)
        crop_height, crop_width = heights[first], widths[first]
        offsets = tf.random.stateless_uniform(
            [2], seeds[2], minval=0.0, maxval=1.0
        )
        top = tf.cast(
            tf.floor(offsets[0] * tf.cast(height - crop_height + 1, "float32")),
            tf.int32,
        )
        left = tf.cast(
            tf.floor(offsets[1] * tf.cast(width - crop_width + 1, "float32")),
            tf.int32,
        )
        box = (
            tf.minimum(top, height - crop_height),
            tf.minimum(left, width - crop_width),
            crop_height,
            crop_width,
        )
    fallback = _center_crop_window(height, width, ratio)
    return tuple(
        tf.where(found, a, b) for a, b in zip(box, fallback, strict=True)
    )


def _center_crop_window(height, width, ratio):
    """torchvision's fallback: the whole image, aspect clamped to `ratio`."""
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    aspect = w / h
    crop_w = tf.where(
        aspect > ratio[1], tf.round(h * ratio[1]), tf.cast(width, tf.float32)
    )
    crop_h = tf.where(
        aspect < ratio[0], tf.round(w / ratio[0]), tf.cast(height, tf.float32)
    )
    crop_h = tf.cast(crop_h, tf.int32)
    crop_w = tf.cast(crop_w, tf.int32)
    return ((height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w)


def random_resized_crop(
    image,
    size,
    scale=(0.08, 1.0),
    ratio=(3 / 4, 4 / 3),
    seed=None,
    sampler="torchvision",
):
    """Inception-style random-resized-crop: a random box, resized to
    `size` x `size`.

    The box covers a fraction of the image area in `scale` and has an
    aspect ratio (width / height) in `ratio`; if 10 attempts find no such
    box, a centre crop is taken instead. The crop is resized bilinearly
    (antialiased when shrinking, like PIL's resize in torchvision). See
    `crop_window` for the two samplers: `"torchvision"` (the reference's
    `RandomResizedCrop`, the default) and `"inception"`
    (`tf.image.sample_distorted_bounding_box`).

    Works for small images too: for CIFAR's 32 x 32, e.g. `size=32,
    scale=(0.5, 1.0)`, or use `random_pad_crop`.

    Args:
        image: `(height, width, 3)`, uint8 or float in [0, 1].
        size: the output side.
        scale: the range of the crop's area fraction. Defaults to
            `(0.08, 1.0)`; the reference MobileNets use `(0.25, 1.0)`.
        ratio: the range of the crop's aspect ratio (width / height).
            Defaults to `(3/4, 4/3)`.
        seed: `None`, an int or a pair of ints (see the module docstring).
        sampler: `"torchvision"` or `"inception"`.

    Returns:
        A float32 image `(size, size, 3)` in [0, 1].
    """
    image = to_float(image)
    top, left, height, width = crop_window(
        tf.shape(image), scale, ratio, seed=seed, sampler=sampler
    )
    crop = image[top : top + height, left : left + width]
    return _resize(crop, size)


def random_flip(image, seed=None):
    """Mirrors the image left-right with probability 1/2.

    Args:
        image: `(height, width, channels)`, uint8 or float in [0, 1].
        seed: `None`, an int or a pair of ints.

    Returns:
        The float32 image, flipped or not.
    """
    image = to_float(image)
    return tf.image.stateless_random_flip_left_right(image, _seed(seed))


def _grayscale(image):
    return tf.tensordot(image, tf.constant(_LUMA, image.dtype), axes=1)


def adjust_brightness(image, factor):
    """PIL's `ImageEnhance.Brightness`: `image * factor`, clipped."""
    return tf.clip_by_value(image * factor, 0.0, 1.0)


def adjust_contrast(image, factor):
    """PIL's `ImageEnhance.Contrast`: blends with the mean grey level of
    the whole image (one number, the mean of its luma), clipped.

    Unlike `tf.image.adjust_contrast`, which uses each channel's own mean.
    """
    mean = tf.reduce_mean(_grayscale(image))
    return tf.clip_by_value(mean + factor * (image - mean), 0.0, 1.0)


def adjust_saturation(image, factor):
    """PIL's `ImageEnhance.Color`: blends with the image's grayscale
    version (per-pixel luma), clipped.

    Unlike `tf.image.adjust_saturation`, which scales S in HSV.
    """
    gray = _grayscale(image)[..., None]
    return tf.clip_by_value(gray + factor * (image - gray), 0.0, 1.0)


_ADJUSTMENTS = (adjust_brightness, adjust_contrast, adjust_saturation)


def sample_color_jitter(strength=0.4, seed=None):
    """The random draw of `color_jitter`: `(factors, order)`.

    `factors` holds the brightness, contrast and saturation factors, each
    uniform in `[max(0, 1 - strength), 1 + strength]`; `order` is a random
    permutation of `(0, 1, 2)`, the order the three are applied in.
    """
    seeds = _split(seed, 2)
    factors = tf.random.stateless_uniform(
        [3], seeds[0], minval=max(0.0, 1.0 - strength), maxval=1.0 + strength
    )
    order = tf.argsort(tf.random.stateless_uniform([3], seeds[1]))
    return factors, tf.cast(order, tf.int32)


def apply_color_jitter(image, factors, order):
    """Applies brightness, contrast and saturation `factors` (in that
    order of the vector) in the order of the permutation `order`."""
    image = to_float(image)
    factors = tf.convert_to_tensor(factors, tf.float32)
    order = tf.convert_to_tensor(order, tf.int32)
    for position in range(3):
        index = order[position]
        image = tf.switch_case(
            index,
            [
                (lambda f=f, i=i, x=image: f(x, factors[i]))
                for i, f in enumerate(_ADJUSTMENTS)
            ],
        )
    return image


def color_jitter(image, strength=0.4, seed=None):
    """Random brightness, contrast and saturation, as torchvision's
    `ColorJitter(strength, strength, strength)`.

    Each factor is uniform in `[max(0, 1 - strength), 1 + strength]` and
    the three adjustments are applied in a random order; they follow PIL's
    `ImageEnhance` (see `adjust_brightness`, `adjust_contrast`,
    `adjust_saturation`), on floats instead of uint8. No hue change (the
    reference has none).

    Args:
        image: `(height, width, 3)`, uint8 or float in [0, 1].
        strength: the factor range. Defaults to `0.4`; `0` returns the
            image unchanged.
        seed: `None`, an int or a pair of ints.

    Returns:
        The float32 image in [0, 1].
    """
    if strength < 0:
        raise ValueError(
            f"`strength` must be >= 0. Received: strength={strength}"
        )
    image = to_float(image)
    if strength == 0:
        return image
    factors, order = sample_color_jitter(strength, seed)
    return apply_color_jitter(image, factors, order)


def pca_lighting(image, alphastd=0.1, seed=None, alpha=None):
    """AlexNet's PCA lighting noise.

    Adds `eigenvectors @ (alpha * eigenvalues)` to every pixel, with
    `alpha ~ Normal(0, alphastd)` per principal component and ImageNet's
    RGB eigenvalues and eigenvectors (for values in [0, 1]:
    `IMAGENET_PCA_EIGENVALUES`, `IMAGENET_PCA_EIGENVECTORS`), then clips to
    [0, 1].

    The reference applies its `Lighting` to the uint8 PIL image with the
    same [0, 1]-scale offset (at most a few hundredths) and casts back to
    uint8, so there it only ever lowers some channels by one grey level.
    This is the intended augmentation (as fb.resnet.torch), on floats.

    Args:
        image: `(height, width, 3)`, uint8 or float in [0, 1].
        alphastd: the standard deviation of `alpha`. Defaults to `0.1`.
        seed: `None`, an int or a pair of ints.
        alpha: optional, a fixed `alpha` (3 values) instead of a random one.

    Returns:
        The float32 image in [0, 1].
    """
    image = to_float(image)
    if alpha is None:
        if alphastd == 0:
            return image
        alpha = alphastd * tf.random.stateless_normal([3], _seed(seed))
    alpha = tf.convert_to_tensor(alpha, tf.float32)
    eigenvalues = tf.constant(IMAGENET_PCA_EIGENVALUES, tf.float32)
    eigenvectors = tf.constant(IMAGENET_PCA_EIGENVECTORS, tf.float32)
    offset = tf.linalg.matvec(eigenvectors, alpha * eigenvalues)
    return tf.clip_by_value(image + offset, 0.0, 1.0)


def default_resize_size(size):
    """The evaluation resize of the reference, scaled: 256 for 224."""
    return int(round(size * 256 / 224))


def resize_and_center_crop(image, size=224, resize_size=None):
    """Evaluation: the shorter side to `resize_size`, then the centre
    `size` x `size` crop (torchvision's `Resize(resize_size)` and
    `CenterCrop(size)`).

    The longer side becomes `int(resize_size * longer / shorter)`; the
    crop's top-left corner is `round((side - size) / 2)`, rounding half to
    even as torchvision does. Bilinear, antialiased when shrinking.

    Args:
        image: `(height, width, 3)`, uint8 or float in [0, 1].
        size: the output side. Defaults to `224`.
        resize_size: the shorter side after resizing. Defaults to
            `round(size * 256 / 224)` (256 for 224). For CIFAR-sized images
            pass `resize_size=size` to crop without zooming in.

    Returns:
        A float32 image `(size, size, 3)`.
    """
    if resize_size is None:
        resize_size = default_resize_size(size)
    if resize_size < size:
        raise ValueError(
            "`resize_size` must be at least `size`. Received: "
            f"size={size}, resize_size={resize_size}"
        )
    image = to_float(image)
    shape = tf.shape(image)
    height, width = shape[0], shape[1]
    shorter = tf.minimum(height, width)
    new_height = tf.where(
        height <= width, resize_size, resize_size * height // shorter
    )
    new_width = tf.where(
        width < height, resize_size, resize_size * width // shorter
    )
    image = tf.image.resize(
        image,
        tf.stack([new_height, new_width]),
        method="bilinear",
        antialias=True,
    )
    top = tf.cast(tf.round(tf.cast(new_height - size, tf.float32) / 2), "int32")
    left = tf.cast(tf.round(tf.cast(new_width - size, tf.float32) / 2), "int32")
    image = image[top : top + size, left : left + size]
    return tf.ensure_shape(image, (size, size, None))


def random_pad_crop(image, size, padding=4, seed=None):
    """The usual CIFAR augmentation: zero-pad `padding` pixels on every
    side, then take a random `size` x `size` crop (torchvision's
    `RandomCrop(size, padding=padding)`).

    Args:
        image: `(height, width, 3)`, uint8 or float in [0, 1], at least
            `size - 2 * padding` on each side.
        size: the output side, e.g. `32`.
        padding: the zero padding. Defaults to `4`.
        seed: `None`, an int or a pair of ints.

    Returns:
        A float32 image `(size, size, 3)`.
    """
    image = to_float(image)
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]])
    return tf.image.stateless_random_crop(
        padded, [size, size, tf.shape(image)[-1]], seed=_seed(seed)
    )


def normalize(image):
    """[0, 1] RGB to the reference models' input: minus the ImageNet mean,
    divided by the standard deviation, per channel (channels last).

    The constants are `keras_slimmable.imagenet.IMAGENET_MEAN` and
    `IMAGENET_STD`; `keras_slimmable.zoo.preprocess_input` does the same
    for [0, 255] images.
    """
    image = to_float(image)
    mean = tf.constant(IMAGENET_MEAN, image.dtype)
    std = tf.constant(IMAGENET_STD, image.dtype)
    return (image - mean) / std
