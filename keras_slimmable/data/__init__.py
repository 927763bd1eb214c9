"""Input pipelines for training and evaluation (TensorFlow only: tf.data).

The pipelines reproduce the reference augmentation of the slimmable
networks (random-resized-crop, colour jitter, PCA lighting, horizontal flip;
resize and centre crop for evaluation; normalisation by the ImageNet mean
and standard deviation) with `tf.image` ops, and batch with `tf.data`. They
need TensorFlow whatever the Keras backend; `tensorflow_datasets` is
imported only when a tfds dataset is asked for.

- `image_folder`: a `directory/<class>/*.jpg` tree.
- `tfds_dataset`, `imagenet`, `cifar10`: TensorFlow Datasets builders.
- `keras_slimmable.data.augment`: the augmentation functions, each usable
  alone.
"""

from keras_slimmable.data import augment
from keras_slimmable.data.augment import color_jitter
from keras_slimmable.data.augment import normalize
from keras_slimmable.data.augment import pca_lighting
from keras_slimmable.data.augment import random_flip
from keras_slimmable.data.augment import random_pad_crop
from keras_slimmable.data.augment import random_resized_crop
from keras_slimmable.data.augment import resize_and_center_crop
from keras_slimmable.data.pipelines import cifar10
from keras_slimmable.data.pipelines import image_folder
from keras_slimmable.data.pipelines import imagenet
from keras_slimmable.data.pipelines import tfds_dataset

__all__ = [
    "augment",
    "cifar10",
    "color_jitter",
    "image_folder",
    "imagenet",
    "normalize",
    "pca_lighting",
    "random_flip",
    "random_pad_crop",
    "random_resized_crop",
    "resize_and_center_crop",
    "tfds_dataset",
]
