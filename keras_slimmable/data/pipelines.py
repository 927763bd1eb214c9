"""tf.data pipelines: image folders and TensorFlow Datasets (TF only)."""

import tensorflow as tf


def image_folder(
    directory,
    training,
    image_size=224,
    batch_size=32,
    crop_scale=(0.08, 1.0),
    resize_size=None,
    color_jitter=0.4,
    lighting=0.1,
    shuffle_buffer=10000,
    seed=None,
    drop_remainder=None,
    normalize=True,
    num_parallel_calls=tf.data.AUTOTUNE,
):
    """`(dataset, class_names)` from `directory/<class>/*.jpg`."""
    raise NotImplementedError


def tfds_dataset(
    name,
    split,
    training,
    data_dir=None,
    manual_dir=None,
    download=True,
    **kwargs,
):
    """`(dataset, class_names)` from a TensorFlow Datasets builder."""
    raise NotImplementedError


def imagenet(split, training, data_dir=None, manual_dir=None, **kwargs):
    """ImageNet (ILSVRC 2012) through tfds."""
    return tfds_dataset(
        "imagenet2012",
        split,
        training,
        data_dir=data_dir,
        manual_dir=manual_dir,
        **kwargs,
    )


def cifar10(split, training, data_dir=None, download=True, **kwargs):
    """CIFAR-10 through tfds."""
    return tfds_dataset(
        "cifar10",
        split,
        training,
        data_dir=data_dir,
        download=download,
        **kwargs,
    )
