"""The pasted-objects detection set and check_targets."""

import os
import pathlib
import signal
import subprocess
import sys
import tarfile
import textwrap

import numpy as np
import pytest

from keras_slimmable.data import detection

Image = pytest.importorskip("PIL.Image")

CLASSES = ("cat", "dog", "ship")
SHARED = pathlib.Path(__file__).resolve().parent.parent.parent / "shared"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three classes of four 32x32 noise JPEGs, each image distinct."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name in CLASSES:
        (root / name).mkdir()
        for k in range(4):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{k:04d}.jpg")
    # Not images: ignored.
    (root / "cat" / "notes.txt").write_text("x")
    return root


def _sources(folder):
    """Every source image, decoded, with its class index."""
    sources = []
    for c, name in enumerate(CLASSES):
        for path in sorted((folder / name).glob("*.jpg")):
            with Image.open(path) as image:
                sources.append((c, image.convert("RGB")))
    return sources


def _real(data, i):
    keep = data["labels"][i] >= 0
    return data["boxes"][i][keep], data["labels"][i][keep]


def test_boxes_labels_and_pixels(folder):
    data = detection.pasted_objects(folder, 30, image_size=96, verbose=False)
    assert data["class_names"] == list(CLASSES)
    assert data["images"].shape == (30, 96, 96, 3)
    assert data["images"].dtype == np.uint8
    assert data["boxes"].shape == (30, 4, 4)
    assert data["boxes"].dtype == np.float32
    assert data["labels"].shape == (30, 4)
    assert data["labels"].dtype == np.int32
    detection.check_targets(
        data["images"], data["boxes"], data["labels"], len(CLASSES)
    )
    sources = _sources(folder)
    counts = []
    for i in range(30):
        boxes, labels = _real(data, i)
        counts.append(len(boxes))
        assert 1 <= len(boxes) <= 4
        # Padding follows the real rows.
        assert np.all(data["labels"][i, len(boxes) :] == -1)
        assert np.all(data["boxes"][i, len(boxes) :] == -1)
        for j, (box, label) in enumerate(zip(boxes, labels)):
            x1, y1, x2, y2 = box.astype(int)
            assert np.array_equal(box, [x1, y1, x2, y2])
            assert 0 <= x1 < x2 <= 96 and 0 <= y1 < y2 <= 96
            side = x2 - x1
            assert side == y2 - y1 and 24 <= side <= 64
            for other in boxes[j + 1 :]:
                overlap_x = min(x2, other[2]) - max(x1, other[0])
                overlap_y = min(y2, other[3]) - max(y1, other[1])
                assert overlap_x <= 0 or overlap_y <= 0
            # The box holds exactly one source image, resized, of its class.
            crop = data["images"][i, y1:y2, x1:x2]
            matches = [
                c
                for c, image in sources
                if np.array_equal(
                    np.asarray(image.resize((side, side), Image.BILINEAR)),
                    crop,
                )
            ]
            assert matches == [label]
    assert 2 <= np.mean(counts) <= 4
    assert len(set(data["labels"][data["labels"] >= 0].tolist())) == 3


def test_reproducible_from_seed(folder):
    first = detection.pasted_objects(folder, 8, image_size=64, verbose=False)
    again = detection.pasted_objects(folder, 8, image_size=64, verbose=False)
    prefix = detection.pasted_objects(folder, 3, image_size=64, verbose=False)
    other = detection.pasted_objects(
        folder, 8, image_size=64, seed=1, verbose=False
    )
    for key in ("images", "boxes", "labels"):
        np.testing.assert_array_equal(first[key], again[key])
        np.testing.assert_array_equal(first[key][:3], prefix[key])
    assert not np.array_equal(first["images"], other["images"])
    assert not np.array_equal(first["boxes"], other["boxes"])


def test_places_fewer_objects_when_they_do_not_fit(folder):
    # Two sides of at least 24 never fit side by side in 32 pixels.
    data = detection.pasted_objects(
        folder,
        5,
        image_size=32,
        objects_per_image=(3, 4),
        object_size=(24, 32),
        verbose=False,
    )
    assert np.all((data["labels"] >= 0).sum(axis=1) == 1)


def test_progress_bar(folder, capsys):
    detection.pasted_objects(folder, 5, image_size=64, verbose=True)
    assert "5/5" in capsys.readouterr().out


def _assert_same(a, b):
    assert a["class_names"] == b["class_names"]
    for key in ("images", "boxes", "labels"):
        np.testing.assert_array_equal(a[key], b[key])
        assert a[key].dtype == b[key].dtype


def test_cache_round_trip_and_corruption(folder, tmp_path, monkeypatch):
    arguments = dict(directory=folder, num_images=6, image_size=64)
    built = detection.pasted_objects(
        **arguments, cache_dir=tmp_path, verbose=False
    )
    (path,) = tmp_path.glob("pasted_objects-*.npz")
    assert not list(tmp_path.glob(".*"))  # No temporary file left.
    original = path.read_bytes()

    # The second call reads the file: making canvases would fail.
    def fail(*args, **kwargs):
        raise AssertionError("rebuilt instead of reading the cache")

    with monkeypatch.context() as patch:
        patch.setattr(detection, "_make_canvas", fail)
        _assert_same(
            detection.pasted_objects(**arguments, cache_dir=tmp_path), built
        )
    # Other arguments, other file.
    detection.pasted_objects(
        **dict(arguments, seed=3), cache_dir=tmp_path, verbose=False
    )
    assert len(list(tmp_path.glob("pasted_objects-*.npz"))) == 2

    for corrupt in (
        b"not a zip file",
        original[: len(original) // 2],
        b"",
    ):
        path.write_bytes(corrupt)
        _assert_same(
            detection.pasted_objects(
                **arguments, cache_dir=tmp_path, verbose=False
            ),
            built,
        )
        assert path.read_bytes() == original

    # A readable file of the wrong shape (another version's, say).
    np.savez(
        path,
        images=np.zeros(3),
        boxes=np.zeros(3),
        labels=np.zeros(3),
        class_names=np.array(["a"]),
    )
    _assert_same(
        detection.pasted_objects(
            **arguments, cache_dir=tmp_path, verbose=False
        ),
        built,
    )
    assert path.read_bytes() == original


def test_cache_write_killed_before_rename(folder, tmp_path):
    """A process killed while writing leaves no file under the cache's
    name; the next call builds and caches the set."""
    script = textwrap.dedent(
        f"""
        import os, signal
        from keras_slimmable.data import detection
        def die(*args):
            os.kill(os.getpid(), signal.SIGKILL)
        os.replace = die
        detection.pasted_objects({str(folder)!r}, 4, image_size=64,
                                 cache_dir={str(tmp_path)!r}, verbose=False)
        """
    )
    process = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, timeout=120
    )
    assert process.returncode == -signal.SIGKILL, process.stderr[-2000:]
    assert len(list(tmp_path.glob(".pasted_objects-*"))) == 1
    assert not list(tmp_path.glob("pasted_objects-*"))
    built = detection.pasted_objects(
        folder, 4, image_size=64, cache_dir=tmp_path, verbose=False
    )
    assert len(list(tmp_path.glob("pasted_objects-*.npz"))) == 1
    _assert_same(
        built,
        detection.pasted_objects(folder, 4, image_size=64, verbose=False),
    )


@pytest.mark.parametrize(
    "arguments, message",
    [
        ({"num_images": 0}, "num_images=0"),
        ({"object_size": (24, 200)}, r"object_size=\(24, 200\)"),
        ({"objects_per_image": (0, 2)}, r"objects_per_image=\(0, 2\)"),
        ({"seed": -1}, "seed=-1"),
        ({"directory": "/nonexistent/folder"}, "not a folder"),
    ],
)
def test_bad_arguments(folder, arguments, message):
    arguments = dict({"directory": folder, "num_images": 2}, **arguments)
    with pytest.raises(ValueError, match=message):
        detection.pasted_objects(**arguments, verbose=False)


def test_class_folder_without_images(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "readme.txt").write_text("x")
    with pytest.raises(ValueError, match="holds none"):
        detection.pasted_objects(tmp_path, 2, verbose=False)


def _targets():
    images = np.zeros((2, 40, 50, 3), np.uint8)
    boxes = np.array(
        [
            [[0, 0, 50, 40], [-1, -1, -1, -1]],
            [[10, 5, 20, 30], [30, 10, 49.5, 39]],
        ],
        np.float32,
    )
    labels = np.array([[0, -1], [2, 1]], np.int32)
    return images, boxes, labels


def test_check_targets_accepts_good_targets():
    images, boxes, labels = _targets()
    copies = [a.copy() for a in (images, boxes, labels)]
    detection.check_targets(images, boxes, labels, 3)
    for a, b in zip((images, boxes, labels), copies):
        np.testing.assert_array_equal(a, b)
    # The same boxes in other formats.
    xywh = boxes.copy()
    xywh[..., 2:] -= xywh[..., :2]
    detection.check_targets(
        images,
        np.where(labels[..., None] >= 0, xywh, -1),
        labels,
        3,
        bounding_box_format="xywh",
    )
    relative = boxes / np.array([50, 40, 50, 40], np.float32)
    detection.check_targets(images, relative, labels, 3, "rel_xyxy")
    detection.check_targets(images, boxes[..., [1, 0, 3, 2]], labels, 3, "yxyx")


def _change(index, value):
    def apply(images, boxes, labels):
        target = {"images": images, "boxes": boxes, "labels": labels}
        target[index[0]][index[1:]] = value
        return images, boxes, labels

    return apply


@pytest.mark.parametrize(
    "change, message",
    [
        (
            _change(("boxes", 1, 1, 2), 50.5),
            r"x2 <= 50 .*Received: boxes\[1, 1\] = \[30.0, 10.0, 50.5, 39.0\]",
        ),
        (
            _change(("boxes", 1, 0, 1), -2),
            r"Received: boxes\[1, 0\] = \[10.0, -2.0",
        ),
        (_change(("boxes", 1, 0, 2), 10), r"x1 < x2.*boxes\[1, 0\]"),
        (_change(("boxes", 1, 0, 3), 41), r"y2 <= 40.*boxes\[1, 0\]"),
        (_change(("boxes", 0, 0, 0), np.nan), r"boxes\[0, 0\] = \[nan"),
        (
            _change(("labels", 1, 1), 3),
            r"\[0, 3\).*Received: labels\[1, 1\] = 3",
        ),
        (_change(("labels", 0, 1), -2), r"Received: labels\[0, 1\] = -2"),
        (_change(("labels", 0, 0), -1), r"image 0 has none"),
        (lambda i, b, y: (i[0], b, y), r"images.shape=\(40, 50, 3\)"),
        (
            lambda i, b, y: (i, b[:1], y),
            r"N = 2 images.*boxes.shape=\(1, 2, 4\)",
        ),
        (lambda i, b, y: (i, b[..., :3], y), r"boxes.shape=\(2, 2, 3\)"),
        (lambda i, b, y: (i, b, y[:, :1]), r"labels.shape=\(2, 1\)"),
        (lambda i, b, y: (i, b, y.astype(float)), r"labels.dtype=float64"),
    ],
)
def test_check_targets_errors(change, message):
    images, boxes, labels = change(*_targets())
    with pytest.raises(ValueError, match=message):
        detection.check_targets(images, boxes, labels, 3)


def test_check_targets_other_format_and_arguments():
    images, boxes, labels = _targets()
    relative = boxes / np.array([50, 40, 50, 40], np.float32)
    relative[1, 1, 2] = 1.2
    with pytest.raises(ValueError, match=r"rel_xyxy.*absolute xyxy \[30"):
        detection.check_targets(images, relative, labels, 3, "rel_xyxy")
    with pytest.raises(ValueError, match="bounding_box_format='xyz'"):
        detection.check_targets(images, boxes, labels, 3, "xyz")
    with pytest.raises(ValueError, match="num_classes=0"):
        detection.check_targets(images, boxes, labels, 0)


def test_cifar10_folder_from_shared_datasets(tmp_path):
    archive = SHARED / "datasets" / "cifar10-jpeg.tar.gz"
    if not archive.is_file():
        pytest.skip(f"the CIFAR-10 JPEG archive ({archive}) is not present")
    # Twenty test images per class are enough.
    with tarfile.open(archive) as tar:
        members = [
            m
            for m in tar
            if m.isfile()
            and m.name.startswith("test/")
            and int(os.path.basename(m.name)[:4]) < 20
        ]
        tar.extractall(tmp_path, members=members, filter="data")
    data = detection.pasted_objects(tmp_path / "test", 40, verbose=False)
    assert data["class_names"] == [
        "airplane", "automobile", "bird", "cat", "deer",
        "dog", "frog", "horse", "ship", "truck",
    ]  # fmt: skip
    assert data["images"].shape == (40, 128, 128, 3)
    detection.check_targets(data["images"], data["boxes"], data["labels"], 10)
