"""tf.data pipelines: image folders and TensorFlow Datasets (TF only).

Each returns `(dataset, class_names)`: a `tf.data.Dataset` of
`(images, labels)` batches (float32 `(batch, size, size, 3)`, int32
`(batch,)`) and the list of class names, label `i` being `class_names[i]`.
The dataset does not repeat: `model.fit(dataset, epochs=...)` iterates it
once per epoch, reshuffled and re-augmented each time.
"""

import os

import tensorflow as tf

from keras_slimmable.data import augment

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

_IMAGENET_TARS = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar")
_CIFAR10_ARCHIVE = "cifar-10-binary.tar.gz"


def _check_arguments(image_size, batch_size, crop_scale, crop_padding):
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(
            "`image_size` must be a positive int. Received: "
            f"image_size={image_size!r}"
        )
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(
            "`batch_size` must be a positive int. Received: "
            f"batch_size={batch_size!r}"
        )
    low, high = crop_scale
    if not 0 < low <= high <= 1:
        raise ValueError(
            "`crop_scale` must be (low, high) with 0 < low <= high <= 1. "
            f"Received: crop_scale={crop_scale!r}"
        )
    if crop_padding is not None and (
        not isinstance(crop_padding, int) or crop_padding < 0
    ):
        raise ValueError(
            "`crop_padding` must be None or an int >= 0. Received: "
            f"crop_padding={crop_padding!r}"
        )


def _decode_full(contents):
    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    return augment.to_float(image)


def _decode_random_resized_crop(contents, size, scale, seed):
    """Decodes only the crop of a JPEG (much less work than the whole
    image); other formats are decoded whole, then cropped.

    The same pixels as decoding whole then cropping, except that with
    4:2:0 chroma subsampling libjpeg may upsample the chroma of the crop's
    border pixels slightly differently."""

    def jpeg():
        shape = tf.image.extract_jpeg_shape(contents)
        top, left, height, width = augment.crop_window(shape, scale, seed=seed)
        image = tf.image.decode_and_crop_jpeg(
            contents, tf.stack([top, left, height, width]), channels=3
        )
        return augment.to_float(image)

    def other():
        image = _decode_full(contents)
        top, left, height, width = augment.crop_window(
            tf.shape(image), scale, seed=seed
        )
        return image[top : top + height, left : left + width]

    crop = tf.cond(tf.io.is_jpeg(contents), jpeg, other)
    return tf.image.resize(
        crop, (size, size), method="bilinear", antialias=True
    )


def _make_preprocess(
    training,
    image_size,
    crop_scale,
    resize_size,
    color_jitter,
    lighting,
    normalize,
    crop_padding,
):
    """`(encoded image, label, seed) -> (image, label)`."""

    def preprocess(contents, label, seed):
        if training:
            seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 4))
            if crop_padding is None:
                image = _decode_random_resized_crop(
                    contents, image_size, crop_scale, seeds[0]
                )
            else:
                image = augment.random_pad_crop(
                    _decode_full(contents),
                    image_size,
                    padding=crop_padding,
                    seed=seeds[0],
                )
            if color_jitter:
                image = augment.color_jitter(image, color_jitter, seeds[1])
            if lighting:
                image = augment.pca_lighting(image, lighting, seeds[2])
            image = augment.random_flip(image, seeds[3])
        else:
            image = augment.resize_and_center_crop(
                _decode_full(contents), image_size, resize_size
            )
        if normalize:
            image = augment.normalize(image)
        image = tf.ensure_shape(image, (image_size, image_size, 3))
        return image, tf.cast(label, tf.int32)

    return preprocess


def _finish(
    dataset,
    training,
    image_size,
    batch_size,
    crop_scale,
    resize_size,
    color_jitter,
    lighting,
    seed,
    drop_remainder,
    normalize,
    num_parallel_calls,
    crop_padding,
):
    """`(encoded image, label)` elements, already shuffled if wanted, to
    augmented, batched and prefetched `(images, labels)`."""
    # One stateless seed per example: reproducible for a given `seed`
    # whatever the parallelism, and new each epoch.
    seeds = tf.data.Dataset.random(
        seed=seed, rerandomize_each_iteration=True
    ).batch(2)
    dataset = tf.data.Dataset.zip(dataset, seeds).map(
        lambda example, example_seed: (*example, example_seed),
    )
    preprocess = _make_preprocess(
        training,
        image_size,
        crop_scale,
        resize_size,
        color_jitter,
        lighting,
        normalize,
        crop_padding,
    )
    dataset = dataset.map(preprocess, num_parallel_calls=num_parallel_calls)
    if drop_remainder is None:
        drop_remainder = bool(training)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _walk(top):
    # os.walk is much faster on local disks (ImageNet: 1.28M files).
    if "://" in top:
        return tf.io.gfile.walk(top)
    return os.walk(top, followlinks=True)


def _list_image_folder(directory):
    directory = os.fspath(directory)
    if not tf.io.gfile.isdir(directory):
        raise FileNotFoundError(
            f"Image folder not found: {directory!r}. Expected a folder "
            "holding one subfolder of images per class."
        )
    class_names = sorted(
        name.rstrip("/")
        for name in tf.io.gfile.listdir(directory)
        if tf.io.gfile.isdir(os.path.join(directory, name))
    )
    if not class_names:
        raise ValueError(
            f"Image folder {directory!r} has no class subfolders. Expected "
            "`directory/<class>/<image>.jpg` (or .jpeg, .png)."
        )

    files, labels, empty = [], [], []
    for label, name in enumerate(class_names):
        class_files = []
        for root, _, names in _walk(os.path.join(directory, name)):
            class_files.extend(
                os.path.join(root, file)
                for file in names
                if file.lower().endswith(IMAGE_EXTENSIONS)
            )
        if not class_files:
            empty.append(name)
        class_files.sort()
        files.extend(class_files)
        labels.extend([label] * len(class_files))
    if empty:
        raise ValueError(
            f"Image folder {directory!r}: no images "
            f"({', '.join(IMAGE_EXTENSIONS)}) in the class folder(s) "
            f"{', '.join(repr(e) for e in empty)}."
        )
    return files, labels, class_names


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
    crop_padding=None,
):
    """Images in `directory/<class>/*.{jpg,jpeg,png}` as a tf.data pipeline.

    Classes are the subfolders, label `i` the `i`-th in sorted order (as
    torchvision's `ImageFolder`); images are found in class folders
    recursively, by extension (any case). Training: shuffled,
    random-resized-crop (only the crop of a JPEG is decoded), colour
    jitter, PCA lighting, horizontal flip; evaluation: resize and centre
    crop. Then normalisation, batching and prefetching.

    Shuffling permutes the whole list of file names each epoch (names are
    cheap; a buffer of `shuffle_buffer` over a list sorted by class would
    hold only a few classes at a time), so here `shuffle_buffer` only
    switches shuffling off when it is `0`.

    Args:
        directory: the folder of class folders (a local path or any
            `tf.io.gfile` URL).
        training: `True` for the shuffled, augmented training pipeline,
            `False` for evaluation.
        image_size: the side of the output images. Defaults to `224`.
        batch_size: the batch size. Defaults to `32`.
        crop_scale: training: the area range of the random-resized-crop.
            Defaults to `(0.08, 1.0)` (the reference ResNet; the reference
            MobileNets use `(0.25, 1.0)`).
        resize_size: evaluation: the shorter side before the centre crop.
            Defaults to `round(image_size * 256 / 224)` (256 for 224); for
            CIFAR-sized images pass `resize_size=image_size`.
        color_jitter: training: the brightness, contrast and saturation
            strength. Defaults to `0.4`; `0` turns it off.
        lighting: training: the PCA lighting standard deviation. Defaults
            to `0.1`; `0` turns it off.
        shuffle_buffer: training: `0` turns shuffling off (see above).
            Defaults to `10000`.
        seed: makes shuffling and augmentation reproducible. Defaults to
            `None` (different every run).
        drop_remainder: whether to drop the last partial batch. Defaults
            to `None`: drop it when training, keep it otherwise.
        normalize: whether to normalise with the ImageNet mean and
            standard deviation (the zoo's input). `False` leaves float32 in
            [0, 1]. Defaults to `True`.
        num_parallel_calls: parallel decoding and augmentation. Defaults to
            `tf.data.AUTOTUNE`.
        crop_padding: training: `None` for the random-resized-crop, or an
            int `p` for `random_pad_crop` with padding `p` instead (the
            usual CIFAR augmentation: `crop_padding=4`). Defaults to
            `None`.

    Returns:
        `(dataset, class_names)`.

    Raises:
        FileNotFoundError: `directory` does not exist.
        ValueError: it has no class folders, or a class folder holds no
            images (naming them).

    Example (CIFAR-10 as JPEG folders):

    ```python
    train, classes = image_folder(
        "cifar10/train", training=True, image_size=32, batch_size=128,
        crop_padding=4, color_jitter=0, lighting=0,
    )
    test, _ = image_folder(
        "cifar10/test", training=False, image_size=32, resize_size=32,
    )
    ```
    """
    _check_arguments(image_size, batch_size, crop_scale, crop_padding)
    files, labels, class_names = _list_image_folder(directory)
    dataset = tf.data.Dataset.from_tensor_slices((files, labels))
    if training and shuffle_buffer:
        dataset = dataset.shuffle(
            len(files), seed=seed, reshuffle_each_iteration=True
        )
    dataset = dataset.map(
        lambda path, label: (tf.io.read_file(path), label),
        num_parallel_calls=num_parallel_calls,
    )
    dataset = _finish(
        dataset,
        training,
        image_size,
        batch_size,
        crop_scale,
        resize_size,
        color_jitter,
        lighting,
        seed,
        drop_remainder,
        normalize,
        num_parallel_calls,
        crop_padding,
    )
    return dataset, class_names


def _base_name(name):
    return name.split(":")[0].split("/")[0]


def _check_imagenet_manual_dir(builder, manual_dir):
    default = os.path.join(str(builder.data_dir_root), "downloads", "manual")
    location = default if manual_dir is None else manual_dir
    missing = [
        tar
        for tar in _IMAGENET_TARS
        if not tf.io.gfile.exists(os.path.join(location, tar))
    ]
    if missing:
        raise FileNotFoundError(
            "tfds 'imagenet2012' is not prepared in "
            f"{str(builder.data_dir)!r} and cannot be downloaded "
            "automatically: get ILSVRC2012_img_train.tar and "
            "ILSVRC2012_img_val.tar from https://image-net.org (after "
            "registering), put them in one folder and pass it as "
            f"`manual_dir` (or place them in tfds's default {default!r}). "
            f"Missing in {location!r}: {', '.join(missing)}. Received: "
            f"manual_dir={manual_dir!r}"
        )


def _prepare(builder, name, manual_dir):
    import tensorflow_datasets as tfds

    base = _base_name(name)
    if base == "imagenet2012":
        _check_imagenet_manual_dir(builder, manual_dir)
    config = tfds.download.DownloadConfig(manual_dir=manual_dir)
    try:
        builder.download_and_prepare(download_config=config)
    except OSError as error:
        if base != "cifar10":
            raise
        raise OSError(
            f"tfds 'cifar10' could not download {_CIFAR10_ARCHIVE} from "
            "https://www.cs.toronto.edu/~kriz/ (offline, this fails after "
            "minutes of retries). Put that file in `manual_dir`, pass a "
            "`data_dir` where cifar10 is already prepared, or use "
            "`image_folder` on CIFAR-10 as image files. Received: "
            f"manual_dir={manual_dir!r}"
        ) from error


def tfds_dataset(
    name,
    split,
    training,
    data_dir=None,
    manual_dir=None,
    download=True,
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
    crop_padding=None,
):
    """A TensorFlow Datasets image classification dataset as a tf.data
    pipeline, with the same preprocessing as `image_folder`.

    Any tfds dataset with `image` and `label` features works; two need
    their archives at hand:

    - `"imagenet2012"` cannot be downloaded automatically: `manual_dir`
      must hold `ILSVRC2012_img_train.tar` and `ILSVRC2012_img_val.tar`
      (from https://image-net.org) the first time, when tfds prepares it
      into `data_dir` (hours, about 150 GB). Without them this raises
      `FileNotFoundError` saying so and where to put them.
    - `"cifar10"`: the stock builder downloads `cifar-10-binary.tar.gz`
      from https://www.cs.toronto.edu/~kriz/. Without network access (as
      on this project's build machines) that fails, after minutes of
      retries, with an `OSError` saying so; put the archive in
      `manual_dir`, or use `image_folder` on CIFAR-10 as image files.

    Images are read still encoded (`tfds.decode.SkipDecoding`) so that
    training decodes only each JPEG's crop. Training shuffles the files
    (`shuffle_files=True`) and then examples in a buffer of
    `shuffle_buffer` encoded images.

    Args:
        name: the tfds name, e.g. `"imagenet2012"` or `"cifar10"`
            (optionally with `:version`).
        split: the tfds split, e.g. `"train"`, `"validation"`,
            `"train[:90%]"`.
        training: `True` for the shuffled, augmented training pipeline,
            `False` for evaluation.
        data_dir: where tfds keeps prepared datasets. Defaults to tfds's
            (`~/tensorflow_datasets` or `$TFDS_DATA_DIR`).
        manual_dir: the folder of manually downloaded archives. Defaults
            to `<data_dir>/downloads/manual`.
        download: whether to prepare the dataset if it is not prepared yet.
            Defaults to `True`.
        image_size, batch_size, crop_scale, resize_size, color_jitter,
        lighting, shuffle_buffer, seed, drop_remainder, normalize,
        num_parallel_calls, crop_padding: as for `image_folder`.

    Returns:
        `(dataset, class_names)`.
    """
    import tensorflow_datasets as tfds

    _check_arguments(image_size, batch_size, crop_scale, crop_padding)
    builder = tfds.builder(name, data_dir=data_dir)
    if download and not builder.is_prepared():
        _prepare(builder, name, manual_dir)
    read_config = tfds.ReadConfig(shuffle_seed=seed)
    dataset = builder.as_dataset(
        split=split,
        shuffle_files=bool(training and shuffle_buffer),
        decoders={"image": tfds.decode.SkipDecoding()},
        read_config=read_config,
    )
    dataset = dataset.map(lambda example: (example["image"], example["label"]))
    if training and shuffle_buffer:
        dataset = dataset.shuffle(
            shuffle_buffer, seed=seed, reshuffle_each_iteration=True
        )
    dataset = _finish(
        dataset,
        training,
        image_size,
        batch_size,
        crop_scale,
        resize_size,
        color_jitter,
        lighting,
        seed,
        drop_remainder,
        normalize,
        num_parallel_calls,
        crop_padding,
    )
    return dataset, list(builder.info.features["label"].names)


def imagenet(split, training, data_dir=None, manual_dir=None, **kwargs):
    """ImageNet (ILSVRC 2012) through tfds, with the reference's
    preprocessing: `tfds_dataset("imagenet2012", ...)`.

    `manual_dir` must hold `ILSVRC2012_img_train.tar` and
    `ILSVRC2012_img_val.tar` until tfds has prepared the dataset in
    `data_dir`. The splits are `"train"` and `"validation"`. Other keyword
    arguments as for `tfds_dataset`.
    """
    return tfds_dataset(
        "imagenet2012",
        split,
        training,
        data_dir=data_dir,
        manual_dir=manual_dir,
        **kwargs,
    )


def cifar10(split, training, data_dir=None, manual_dir=None, **kwargs):
    """CIFAR-10 through tfds: `tfds_dataset("cifar10", ...)` with CIFAR
    defaults.

    The defaults are the usual CIFAR augmentation at 32 x 32:
    `image_size=32`, `crop_padding=4` (pad and random crop), horizontal
    flip, no colour jitter or lighting, and evaluation on the image itself
    (`resize_size=32`); any of them can be overridden. Normalisation is
    still ImageNet's (the zoo's input). The stock builder downloads
    `cifar-10-binary.tar.gz`, which fails offline (see `tfds_dataset`).
    The splits are `"train"` and `"test"`.
    """
    defaults = dict(
        image_size=32,
        resize_size=32,
        crop_padding=4,
        color_jitter=0.0,
        lighting=0.0,
    )
    defaults.update(kwargs)
    return tfds_dataset(
        "cifar10",
        split,
        training,
        data_dir=data_dir,
        manual_dir=manual_dir,
        **defaults,
    )
