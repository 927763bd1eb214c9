"""tf.data pipelines: image folders and TensorFlow Datasets (TF only).

Each returns `(dataset, class_names)`: a `tf.data.Dataset` of
`(images, labels)` batches (float32 `(batch, size, size, 3)`, int32
`(batch,)`) and the list of class names, label `i` being `class_names[i]`.
The dataset does not repeat: `model.fit(dataset, epochs=...)` iterates it
once per epoch, reshuffled and re-augmented each time.
"""

import logging
import os
import sys

import numpy as np

from keras_slimmable._optional import require_tensorflow
from keras_slimmable.data import augment

tf = require_tensorflow("keras_slimmable.data (tf.data pipelines)")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

# The evaluation order is fixed, whatever `seed`: results stay comparable.
_EVALUATION_SEED = 0

# How each format decode_image reads begins, and how a complete file ends
# (BMP has no end marker).
_SIGNATURES = (
    (b"\xff\xd8\xff", b"\xff\xd9"),
    (b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"),
    (b"GIF87a", b"\x3b"),
    (b"GIF89a", b"\x3b"),
    (b"BM", b""),
)
_UNREADABLE_CHOICES = ("error", "skip")

_logger = logging.getLogger("keras_slimmable.data")

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


def _track(dataset, image_size, num_parallel_calls):
    """`(path, label)` elements to `(contents, label, position, previous)`,
    for `_check_positions`: each file's position in this pass and the path
    of the file before it, and at the end a sentinel (label `-1`, a blank
    image) so that a failure of the last file is noticed too."""
    blank = tf.io.encode_png(tf.zeros((image_size, image_size, 3), tf.uint8))
    sentinel = tf.data.Dataset.from_tensors((tf.constant(""), -1))
    dataset = dataset.concatenate(sentinel).enumerate()

    def attach_previous(previous, element):
        position, (path, label) = element
        return path, (path, label, position, previous)

    def read(path, label, position, previous):
        contents = tf.cond(
            label < 0, lambda: blank, lambda: tf.io.read_file(path)
        )
        return contents, label, position, previous

    dataset = dataset.scan(tf.constant(""), attach_previous)
    return dataset.map(read, num_parallel_calls=num_parallel_calls)


def _check_positions(dataset, unreadable, length=None):
    """Names (`"error"`) or reports (`"skip"`) the files whose reading or
    decoding failed, and drops the sentinel.

    With `"error"`, every one of the `length` files either arrives or stops
    the pass, so the result is declared to hold `length` elements (the
    filter would otherwise leave its length unknown to `cardinality()`).

    A decoding error cannot be caught inside a tf.data function, so the
    failed elements are dropped (`ignore_errors`) and found afterwards as
    gaps in the positions; the element after a gap carries the path of
    the file just before it.
    """

    def check(expected, element):
        image, label, position, previous = element
        missed = position - expected
        if unreadable == "error":
            checked = tf.debugging.Assert(
                tf.equal(missed, 0),
                [
                    "Could not read the image file",
                    previous,
                    "(not a JPEG, PNG, GIF or BMP image, or damaged; "
                    "unreadable files in a row, ending with it:",
                    missed,
                    "). Remove or replace it, or pass unreadable='skip' to "
                    "skip such files.",
                ],
            )
        else:
            checked = tf.cond(
                tf.equal(missed, 0),
                lambda: tf.constant(True),
                lambda: _log_skipped(previous, missed),
            )
        with tf.control_dependencies([checked]):
            position = tf.identity(position)
        return position + 1, (image, label)

    dataset = dataset.ignore_errors()
    dataset = dataset.scan(tf.constant(0, tf.int64), check)
    dataset = dataset.filter(lambda image, label: label >= 0)
    if unreadable == "error" and length is not None:
        dataset = dataset.apply(tf.data.experimental.assert_cardinality(length))
    return dataset


def _log_skipped(path, count):
    printed = tf.print(
        "keras_slimmable.data: skipped",
        count,
        "unreadable image file(s) in a row, ending with",
        path,
        output_stream=sys.stderr,
    )
    with tf.control_dependencies([printed]):
        return tf.constant(True)


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
    """`(encoded image, label, seed, *passed) -> (image, label, *passed)`."""

    def preprocess(contents, label, seed, *passed):
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
        return (image, tf.cast(label, tf.int32), *passed)

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
    unreadable=None,
    length=None,
):
    """`(encoded image, label)` elements, already shuffled if wanted, to
    augmented, batched and prefetched `(images, labels)`.

    With `unreadable` (`"error"` or `"skip"`), the elements are `_track`'s
    (`length` files) and the files that fail to read or decode are named
    or skipped."""
    # One stateless seed per example: reproducible for a given `seed`
    # whatever the parallelism, and new each epoch.
    seeds = tf.data.Dataset.random(
        seed=seed, rerandomize_each_iteration=True
    ).batch(2)
    dataset = tf.data.Dataset.zip(dataset, seeds).map(
        lambda example, example_seed: (*example[:2], example_seed, *example[2:])
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
    if unreadable is not None:
        dataset = _check_positions(dataset, unreadable, length)
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


def _check_file(path):
    """`None` if `path` looks like a whole image file, else why not.

    Reads only the first and last 16 bytes: a known image signature at
    the start and the format's end marker at the end (a truncated copy
    or download lacks it). A file that fails this is decoded once to be
    sure (a JPEG followed by metadata, or a format known to
    `tf.io.decode_image` but not listed here, still passes).
    """
    try:
        with open(path, "rb") as file:
            head = file.read(16)
            size = file.seek(0, os.SEEK_END)
            file.seek(max(0, size - 16))
            tail = file.read()
    except OSError as error:
        return f"cannot be read: {error.strerror or error}"
    reason = f"not an image: it starts with {head[:12]!r}"
    for start, end in _SIGNATURES:
        if head.startswith(start):
            if tail.endswith(end):
                return None
            reason = "truncated or damaged: it does not decode"
            break
    try:
        tf.io.decode_image(
            tf.io.read_file(path), channels=3, expand_animations=False
        )
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
        return reason
    return None


def _find_unreadable(files):
    """`[(path, reason), ...]` of the files that are not whole images.

    About 1 s for CIFAR-10's 60,000 files on a local disk (a full decode
    takes about 6 s there, and hours for ImageNet). Remote folders
    (`gs://...`) are not checked up front: two reads per file would be
    slow there; their files are named when they fail to decode.
    """
    unreadable = []
    for path in files:
        if "://" in path:
            continue
        reason = _check_file(path)
        if reason is not None:
            unreadable.append((path, reason))
    return unreadable


def _evaluation_order(labels):
    """A fixed order of `labels`' indices in which every prefix holds each
    class in proportion to its share (within one image); the images within
    a class in a fixed shuffled order.

    Each image gets the key `(rank + 0.5) / class size`, its rank in its
    class being a seeded permutation, and the images are sorted by key.
    """
    labels = np.asarray(labels)
    keys = np.empty(len(labels))
    rng = np.random.default_rng(_EVALUATION_SEED)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        ranks = rng.permutation(len(members))
        keys[members] = (ranks + 0.5) / len(members)
    return np.lexsort((labels, keys))


def _without_unreadable(directory, files, labels, class_names, unreadable):
    """`(files, labels, skipped)`: raises naming the unreadable files, or
    drops them (`unreadable="skip"`), logging how many."""
    found = _find_unreadable(files)
    if not found:
        return files, labels, ()
    listed = "; ".join(f"{path!r} ({reason})" for path, reason in found[:10])
    if len(found) > 10:
        listed += f"; and {len(found) - 10} more"
    if unreadable == "error":
        raise ValueError(
            f"Image folder {directory!r}: {len(found)} unreadable image "
            f"file(s) of {len(files)}: {listed}. Remove or replace them, or "
            "pass unreadable='skip' to skip them."
        )
    skipped = {path for path, _ in found}
    kept = [(f, y) for f, y in zip(files, labels) if f not in skipped]
    remaining = {y for _, y in kept}
    empty = [n for i, n in enumerate(class_names) if i not in remaining]
    if empty:
        raise ValueError(
            f"Image folder {directory!r}: no readable images in the class "
            f"folder(s) {', '.join(repr(e) for e in empty)}. Unreadable: "
            f"{listed}."
        )
    _logger.warning(
        "Skipped %d unreadable image files of %d in %r: %s",
        len(found),
        len(files),
        directory,
        listed,
    )
    files, labels = (list(column) for column in zip(*kept))
    return files, labels, tuple(path for path, _ in found)


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
    unreadable="error",
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

    Evaluation reads the images in a fixed order, the same every call
    whatever `seed`, stratified by class: every prefix (so the first
    batches of a partial evaluation, `dataset.take(steps)`) holds each
    class in proportion to its share, within one image, and the images
    of a class in a fixed shuffled order. Sorted by class, the first
    batches would hold one class only; a seeded shuffle would sample the
    classes only on average (missing some of ImageNet's 1000 classes in a
    few hundred images).

    Unreadable files (not an image, or truncated) are found before any
    batch, by reading the first and last bytes of every file (about 1 s
    for 60,000 files on a local disk, where decoding them all takes about
    6 s; a file that looks wrong is decoded to be sure; a remote folder is
    not checked up front). With `unreadable="error"` they raise a
    `ValueError` naming them; with `"skip"` they are left out and counted:
    the returned dataset's `skipped_files` attribute is the tuple of their
    paths (read it before `take`, `repeat` and the like, which return new
    datasets), and a warning on the `"keras_slimmable.data"` logger says
    how many. A file that passes the check but fails to read or decode
    later (changed on disk, damaged inside) raises an
    `InvalidArgumentError` naming it, or is skipped with a message on
    standard error.

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
        unreadable: `"error"` to stop, naming the unreadable files, or
            `"skip"` to leave them out (see above). Defaults to `"error"`.

    Returns:
        `(dataset, class_names)`. `dataset.skipped_files` is the tuple of
        the files skipped up front (empty unless `unreadable="skip"`).

    Raises:
        FileNotFoundError: `directory` does not exist.
        ValueError: it has no class folders, a class folder holds no
            (readable) images, or (`unreadable="error"`) some files are
            unreadable, naming them.

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
    if unreadable not in _UNREADABLE_CHOICES:
        raise ValueError(
            "`unreadable` must be one of "
            f"{', '.join(repr(c) for c in _UNREADABLE_CHOICES)}. Received: "
            f"unreadable={unreadable!r}"
        )
    files, labels, class_names = _list_image_folder(directory)
    files, labels, skipped = _without_unreadable(
        directory, files, labels, class_names, unreadable
    )
    if not training:
        order = _evaluation_order(labels)
        files = [files[i] for i in order]
        labels = [labels[i] for i in order]
    dataset = tf.data.Dataset.from_tensor_slices((files, labels))
    if training and shuffle_buffer:
        dataset = dataset.shuffle(
            len(files), seed=seed, reshuffle_each_iteration=True
        )
    dataset = _track(dataset, image_size, num_parallel_calls)
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
        unreadable,
        length=len(files),
    )
    dataset.skipped_files = skipped
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
