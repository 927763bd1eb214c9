"""tf.data pipelines: tiny image folders, a few real CIFAR-10 files, tfds
through `tfds.testing.mock_data`."""

import os
import pathlib
import tarfile

import numpy as np
import pytest
import tensorflow as tf

from keras_slimmable import data
from keras_slimmable.data import augment
from keras_slimmable.data import pipelines

# In the shared folder beside the repository.
CIFAR10_TARBALL = str(
    pathlib.Path(__file__).resolve().parents[2].parent
    / "shared"
    / "datasets"
    / "cifar10-jpeg.tar.gz"
)
CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])


def write_image(path, pixels):
    path = str(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if path.lower().endswith(".png"):
        encoded = tf.io.encode_png(pixels)
    else:
        encoded = tf.io.encode_jpeg(pixels, quality=95)
    tf.io.write_file(path, encoded)


def make_folder(root, size=8):
    """Three classes, out of order on disk; PNG, JPEG, an upper-case
    extension, a nested folder and a non-image file. Returns the expected
    `(relative path, label)` in sorted order and the PNG pixels."""
    rng = np.random.default_rng(0)
    layout = {
        "zebra": ["a.png", "b.JPEG"],
        "cat": ["x.jpg", "nested/y.png", "z.jpeg"],
        "dog": ["c.png"],
    }
    pixels = {}
    for name, files in layout.items():
        for file in files:
            image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            write_image(root / name / file, image)
            pixels[f"{name}/{file}"] = image
    (root / "cat" / "notes.txt").write_text("not an image")
    expected = [
        ("cat/nested/y.png", 0),
        ("cat/x.jpg", 0),
        ("cat/z.jpeg", 0),
        ("dog/c.png", 1),
        ("zebra/a.png", 2),
        ("zebra/b.JPEG", 2),
    ]
    return expected, pixels


def decoded(root, relative):
    contents = tf.io.read_file(str(root / relative))
    image = tf.io.decode_image(contents, channels=3, expand_animations=False)
    return image.numpy() / 255.0


def collect(dataset):
    images, labels = [], []
    for x, y in dataset:
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images), np.concatenate(labels)


# image_folder -----------------------------------------------------------


def test_image_folder_evaluation_reads_every_image_once(tmp_path):
    expected, _ = make_folder(tmp_path)
    dataset, class_names = data.image_folder(
        str(tmp_path),
        training=False,
        image_size=8,
        resize_size=8,
        batch_size=4,
        normalize=False,
    )
    assert class_names == ["cat", "dog", "zebra"]
    assert [len(y) for _, y in dataset] == [4, 2]  # the remainder is kept
    images, labels = collect(dataset)
    assert images.dtype == np.float32 and labels.dtype == np.int32
    assert sorted(labels) == sorted(label for _, label in expected)
    # Same size: no resize, no crop, the decoded pixels (PNG lossless);
    # every file exactly once, whatever the order.
    unused = list(expected)
    for image, label in zip(images, labels):
        match = [
            item
            for item in unused
            if item[1] == label
            and np.allclose(image, decoded(tmp_path, item[0]), atol=1e-6)
        ]
        assert match, label
        unused.remove(match[0])
    assert not unused


def test_image_folder_knows_its_length(tmp_path):
    # Six images: batches of 4 give 1 (training, remainder dropped) or 2
    # (evaluation, kept), as iterating them does; examples/train.py reads
    # the length to size an epoch.
    make_folder(tmp_path)
    arguments = dict(image_size=8, resize_size=8, batch_size=4)
    for training, batches in ((True, 1), (False, 2)):
        dataset, _ = data.image_folder(str(tmp_path), training, **arguments)
        assert int(dataset.cardinality()) == batches
        assert sum(1 for _ in dataset) == batches
    # Skipping unreadable files at run time leaves the length unknown.
    dataset, _ = data.image_folder(
        str(tmp_path), True, unreadable="skip", **arguments
    )
    assert int(dataset.cardinality()) == tf.data.UNKNOWN_CARDINALITY


def make_classes(root, counts, size=4):
    """`counts[i]` PNG files in class folder `c{i}`; file `k` of class `i`
    holds the pixel value `i` (so an image gives its class back)."""
    for label, count in enumerate(counts):
        for k in range(count):
            image = np.full((size, size, 3), label, np.uint8)
            write_image(root / f"c{label}" / f"{k:04d}.png", image)


def test_partial_evaluation_samples_every_class(tmp_path):
    # Issue 9 item 1: sorted by class, the first batches held one class.
    counts = [40, 40, 40, 20, 60]
    make_classes(tmp_path, counts)
    arguments = dict(
        training=False, image_size=4, resize_size=4, normalize=False
    )
    dataset, _ = data.image_folder(str(tmp_path), batch_size=5, **arguments)
    first = np.concatenate([y.numpy() for _, y in dataset.take(2)])
    # The first two batches of 5 hold every class, even the rarest.
    assert set(first) == {0, 1, 2, 3, 4}, first
    # Each prefix of the order holds every class in proportion to its
    # share, within one image.
    images, labels = collect(dataset)
    np.testing.assert_array_equal(np.round(images[:, 0, 0, 0] * 255), labels)
    total = sum(counts)
    for end in range(1, total + 1):
        seen = np.bincount(labels[:end], minlength=len(counts))
        share = np.array(counts) * end / total
        assert np.all(np.abs(seen - share) <= 1), (end, seen, share)
    # The same order every call, whatever `seed` or batch size.
    for other in (
        data.image_folder(str(tmp_path), batch_size=5, **arguments)[0],
        data.image_folder(str(tmp_path), batch_size=7, seed=3, **arguments)[0],
    ):
        again_images, again_labels = collect(other)
        np.testing.assert_array_equal(again_labels, labels)
        np.testing.assert_array_equal(again_images, images)
    np.testing.assert_array_equal(collect(dataset)[1], labels)


def test_partial_evaluation_mixes_files_within_a_class(tmp_path):
    # Not just the first files of each class: a fixed shuffle within it.
    root = tmp_path / "folder"
    for k in range(20):
        write_image(
            root / "only" / f"{k:02d}.png", np.full((2, 2, 3), k, np.uint8)
        )
    dataset, _ = data.image_folder(
        str(root),
        training=False,
        image_size=2,
        resize_size=2,
        batch_size=20,
        normalize=False,
    )
    order = np.round(collect(dataset)[0][:, 0, 0, 0] * 255).astype(int)
    assert sorted(order) == list(range(20))
    assert list(order) != list(range(20))


def test_image_folder_normalizes_with_the_reference_statistics(tmp_path):
    make_folder(tmp_path)
    arguments = dict(training=False, image_size=8, resize_size=8, batch_size=6)
    raw, _ = collect(
        data.image_folder(str(tmp_path), normalize=False, **arguments)[0]
    )
    normalized, _ = collect(data.image_folder(str(tmp_path), **arguments)[0])
    np.testing.assert_allclose(normalized, (raw - MEAN) / STD, atol=1e-5)


def test_image_folder_evaluation_resizes_and_center_crops(tmp_path):
    image = np.random.default_rng(1).integers(0, 256, (30, 40, 3), np.uint8)
    write_image(tmp_path / "only" / "a.png", image)
    dataset, _ = data.image_folder(
        str(tmp_path), training=False, image_size=16, normalize=False
    )
    images, _ = collect(dataset)
    expected = augment.resize_and_center_crop(image, 16, resize_size=18)
    assert augment.default_resize_size(16) == 18
    np.testing.assert_allclose(images[0], expected.numpy(), atol=1e-6)


def test_image_folder_training_batches_shuffles_and_augments(tmp_path):
    expected, _ = make_folder(tmp_path, size=20)
    arguments = dict(training=True, image_size=12, batch_size=4, seed=7)
    dataset, _ = data.image_folder(str(tmp_path), **arguments)
    batches = list(dataset)
    assert len(batches) == 1  # 6 images: the partial batch is dropped
    x, y = batches[0]
    assert x.shape == (4, 12, 12, 3) and x.dtype == tf.float32
    # Normalised [0, 1] values lie within these bounds.
    assert x.numpy().min() >= ((0 - MEAN) / STD).min() - 1e-5
    assert x.numpy().max() <= ((1 - MEAN) / STD).max() + 1e-5
    # One epoch with batch 1 sees every image once, in a shuffled order.
    every, _ = data.image_folder(
        str(tmp_path), training=True, image_size=12, batch_size=1, seed=7
    )
    first = collect(every)
    second = collect(every)
    for _, labels in (first, second):
        assert sorted(labels) == sorted(label for _, label in expected)
    # A new epoch is re-augmented; the same seed repeats the same epochs.
    assert not np.array_equal(first[0], second[0])
    again, _ = data.image_folder(
        str(tmp_path), training=True, image_size=12, batch_size=1, seed=7
    )
    np.testing.assert_array_equal(collect(again)[0], first[0])
    other, _ = data.image_folder(
        str(tmp_path), training=True, image_size=12, batch_size=1, seed=8
    )
    assert not np.array_equal(collect(other)[0], first[0])


def test_training_without_augmentation_is_a_crop_of_the_image(tmp_path):
    # No jitter, no lighting, crop scale 1 of a square image: the whole
    # image, maybe mirrored.
    image = np.random.default_rng(2).integers(0, 256, (10, 10, 3), np.uint8)
    write_image(tmp_path / "one" / "a.png", image)
    dataset, _ = data.image_folder(
        str(tmp_path),
        training=True,
        image_size=10,
        batch_size=1,
        crop_scale=(1.0, 1.0),
        color_jitter=0,
        lighting=0,
        normalize=False,
        seed=0,
    )
    flips = set()
    for _ in range(6):
        (out,), _ = collect(dataset)
        if np.allclose(out, image[:, ::-1] / 255, atol=1e-6):
            flips.add(True)
        else:
            np.testing.assert_allclose(out, image / 255, atol=1e-6)
            flips.add(False)
    assert flips == {True, False}


def test_jpeg_crop_decoding_equals_decoding_then_cropping():
    image = np.random.default_rng(3).integers(0, 256, (48, 64, 3), np.uint8)
    for chroma_downsampling in (False, True):
        contents = tf.io.encode_jpeg(
            image, quality=90, chroma_downsampling=chroma_downsampling
        )
        full = tf.io.decode_jpeg(contents, channels=3)
        for seed in range(5):
            seed = tf.constant([seed, 1], tf.int64)
            fast = pipelines._decode_random_resized_crop(
                contents, 16, (0.08, 1.0), seed
            ).numpy()
            slow = augment.random_resized_crop(full, 16, seed=seed).numpy()
            if not chroma_downsampling:
                np.testing.assert_allclose(fast, slow, atol=1e-6)
            else:
                # With 4:2:0 chroma, libjpeg upsamples the chroma of a crop
                # that starts or ends on an odd column differently at that
                # edge: the border pixels may differ, the interior not.
                np.testing.assert_allclose(
                    fast[1:-1, 1:-1], slow[1:-1, 1:-1], atol=1e-6
                )
                assert np.abs(fast - slow).max() < 0.1


def test_crop_padding_is_the_cifar_augmentation(tmp_path):
    image = np.random.default_rng(4).integers(1, 256, (8, 8, 3), np.uint8)
    write_image(tmp_path / "one" / "a.png", image)
    dataset, _ = data.image_folder(
        str(tmp_path),
        training=True,
        image_size=8,
        batch_size=1,
        crop_padding=2,
        color_jitter=0,
        lighting=0,
        normalize=False,
        seed=0,
    )
    padded = np.pad(image / 255, [(2, 2), (2, 2), (0, 0)])
    for _ in range(4):
        (out,), _ = collect(dataset)
        windows = [
            padded[i : i + 8, j : j + 8][:, ::flip]
            for i in range(5)
            for j in range(5)
            for flip in (1, -1)
        ]
        assert any(np.allclose(out, w, atol=1e-6) for w in windows)


def test_image_folder_errors_name_the_folder(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        data.image_folder(str(missing), training=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty.*no class subfolders"):
        data.image_folder(str(tmp_path / "empty"), training=True)
    write_image(
        tmp_path / "root" / "full" / "a.png", np.zeros((4, 4, 3), "uint8")
    )
    (tmp_path / "root" / "hollow").mkdir()
    (tmp_path / "root" / "hollow" / "readme.txt").write_text("no images")
    with pytest.raises(ValueError, match="'hollow'"):
        data.image_folder(str(tmp_path / "root"), training=False)
    with pytest.raises(ValueError, match="crop_scale"):
        data.image_folder(str(tmp_path / "root"), True, crop_scale=(0.5, 2))


# CIFAR-10 as JPEG files -------------------------------------------------


@pytest.fixture(scope="module")
def cifar_folder(tmp_path_factory):
    """Three images of each of the first two classes of the shared CIFAR-10
    tarball, extracted one by one (the tarball is in class order)."""
    if not os.path.exists(CIFAR10_TARBALL):
        pytest.skip(f"{CIFAR10_TARBALL} is not available on this machine")
    root = tmp_path_factory.mktemp("cifar10")
    wanted = {"airplane": 3, "automobile": 3}
    with tarfile.open(CIFAR10_TARBALL) as archive:
        for member in archive:
            parts = member.name.split("/")
            if len(parts) != 3 or parts[0] != "train" or not member.isfile():
                continue
            if parts[1] not in wanted:
                break  # past the two classes
            if wanted[parts[1]]:
                wanted[parts[1]] -= 1
                archive.extract(member, root, filter="data")
    return root / "train"


def test_cifar10_jpeg_files(cifar_folder):
    dataset, class_names = data.image_folder(
        str(cifar_folder),
        training=False,
        image_size=32,
        resize_size=32,
        batch_size=10,
        normalize=False,
    )
    assert class_names == CIFAR10_CLASSES[:2]
    images, labels = collect(dataset)
    assert sorted(labels) == [0, 0, 0, 1, 1, 1]
    # Stratified: the two classes alternate.
    assert sorted(labels[:2]) == [0, 1]
    files = sorted(p for p in cifar_folder.glob("*/*.jpg"))
    references = [decoded(path.parent, path.name) for path in files]
    for image, label in zip(images, labels):
        assert any(
            np.allclose(image, reference, atol=1e-6)
            for reference in references[3 * label : 3 * label + 3]
        )
    train, _ = data.image_folder(
        str(cifar_folder),
        training=True,
        image_size=32,
        batch_size=2,
        crop_padding=4,
        color_jitter=0,
        lighting=0,
        seed=0,
    )
    x, y = next(iter(train))
    assert x.shape == (2, 32, 32, 3) and y.shape == (2,)


# tfds -------------------------------------------------------------------


def test_tfds_cifar10_with_mock_data():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=6):
        reference = [
            (example["image"].numpy(), int(example["label"]))
            for example in tfds.load("cifar10", split="test")
        ]
        dataset, class_names = data.cifar10(
            "test", training=False, batch_size=4, normalize=False
        )
        images, labels = collect(dataset)
        train, _ = data.cifar10("train", training=True, batch_size=4, seed=0)
        x, y = next(iter(train))
    assert len(class_names) == 10
    # Evaluation at 32 x 32 is the image itself, as tfds decodes it.
    np.testing.assert_array_equal(labels, [label for _, label in reference])
    for image, (expected, _) in zip(images, reference):
        np.testing.assert_allclose(image, expected / 255.0, atol=1e-6)
    assert x.shape == (4, 32, 32, 3) and y.dtype == tf.int32


def imagenet_manual_dir(path):
    path.mkdir(exist_ok=True)
    for name in ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar"):
        (path / name).write_bytes(b"")
    return path


def test_tfds_imagenet_with_mock_data(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    manual_dir = str(imagenet_manual_dir(tmp_path / "manual"))
    with tfds.testing.mock_data(num_examples=5):
        validation, class_names = data.imagenet(
            "validation",
            training=False,
            manual_dir=manual_dir,
            image_size=24,
            batch_size=4,
        )
        train, _ = data.imagenet(
            "train",
            training=True,
            manual_dir=manual_dir,
            image_size=24,
            batch_size=2,
        )
        images, labels = collect(validation)
        x, y = next(iter(train))
    assert len(class_names) == 1000 and class_names[0] == "n01440764"
    assert images.shape == (5, 24, 24, 3) and len(labels) == 5
    assert np.all((labels >= 0) & (labels < 1000))
    # Training drops the partial batch: 2 full batches of 2.
    assert x.shape == (2, 24, 24, 3) and len(list(train)) == 2


def test_imagenet_without_manual_dir_says_what_to_do(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(FileNotFoundError) as error:
        data.imagenet("train", training=True, data_dir=str(tmp_path))
    message = str(error.value)
    for text in (
        "ILSVRC2012_img_train.tar",
        "ILSVRC2012_img_val.tar",
        "manual_dir",
        os.path.join(str(tmp_path), "downloads", "manual"),
    ):
        assert text in message
    half = tmp_path / "half"
    half.mkdir()
    (half / "ILSVRC2012_img_train.tar").write_bytes(b"")
    with pytest.raises(
        FileNotFoundError,
        match="Missing in .*half.*: ILSVRC2012_img_val.tar\\.",
    ):
        data.imagenet(
            "train", training=True, data_dir=str(tmp_path), manual_dir=str(half)
        )


def test_cifar10_download_failure_says_it_is_offline(tmp_path, monkeypatch):
    tfds = pytest.importorskip("tensorflow_datasets")

    def offline(self, *args, **kwargs):
        raise ConnectionError("Failed to resolve 'www.cs.toronto.edu'")

    monkeypatch.setattr(
        tfds.core.DatasetBuilder, "download_and_prepare", offline
    )
    with pytest.raises(OSError, match="cifar-10-binary.tar.gz") as error:
        data.cifar10("train", training=True, data_dir=str(tmp_path))
    assert isinstance(error.value.__cause__, ConnectionError)
