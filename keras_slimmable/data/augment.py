"""Image augmentation of the reference training recipe (TensorFlow only).

Every function takes one float32 image `(height, width, 3)` with values in
[0, 1] (except `normalize`'s output) and works alone, inside or outside
`tf.data`.
"""

import tensorflow as tf

from keras_slimmable.zoo.common import IMAGENET_MEAN
from keras_slimmable.zoo.common import IMAGENET_STD


def random_resized_crop(
    image, size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), seed=None
):
    """Inception-style random-resized-crop (not yet implemented)."""
    raise NotImplementedError


def random_flip(image, seed=None):
    """Mirrors the image left-right with probability 1/2."""
    raise NotImplementedError


def color_jitter(image, strength=0.4, seed=None):
    """Random brightness, contrast and saturation."""
    raise NotImplementedError


def pca_lighting(image, alphastd=0.1, seed=None, alpha=None):
    """AlexNet PCA lighting noise."""
    raise NotImplementedError


def resize_and_center_crop(image, size=224, resize_size=None):
    """Evaluation: shorter side to `resize_size`, then a centre crop."""
    raise NotImplementedError


def random_pad_crop(image, size, padding=4, seed=None):
    """CIFAR augmentation: zero-pad, then a random crop."""
    raise NotImplementedError


def normalize(image):
    """[0, 1] RGB to the reference's normalised input."""
    mean = tf.constant(IMAGENET_MEAN, image.dtype)
    std = tf.constant(IMAGENET_STD, image.dtype)
    return (image - mean) / std
