"""Unreadable files in an image folder are named, or skipped and counted
(issue 10 item 8: a non-image `bad.jpg` stopped training in epoch 2 with
"Unknown image file format" and no path)."""

import logging
import os

import numpy as np
import pytest
import tensorflow as tf

from keras_slimmable import data


def write_jpeg(path, value, size=8):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.full((size, size, 3), value, np.uint8)
    tf.io.write_file(str(path), tf.io.encode_jpeg(pixels, quality=100))


def make_folder(root):
    """Two classes of good JPEGs (pixel value 10 * class), a text file
    named `bad.jpg` and a JPEG cut short. Returns the bad paths."""
    for label in range(2):
        for k in range(3):
            write_jpeg(root / f"c{label}" / f"{k}.jpg", 10 * label)
    text = root / "c0" / "bad.jpg"
    text.write_text("this is not an image\n")
    truncated = root / "c1" / "cut.jpg"
    write_jpeg(truncated, 200)
    contents = truncated.read_bytes()
    truncated.write_bytes(contents[: len(contents) // 2])
    return str(text), str(truncated)


def labels_of(dataset):
    return sorted(int(y) for _, labels in dataset for y in labels.numpy())


ARGUMENTS = dict(image_size=8, resize_size=8, batch_size=2, normalize=False)


@pytest.mark.parametrize("training", [True, False])
def test_unreadable_files_are_named_before_any_batch(tmp_path, training):
    text, truncated = make_folder(tmp_path)
    with pytest.raises(ValueError) as info:
        data.image_folder(str(tmp_path), training=training, **ARGUMENTS)
    message = str(info.value)
    assert text in message and truncated in message, message
    assert "2 unreadable" in message and "unreadable='skip'" in message
    assert "not an image" in message and "truncated" in message


def test_skip_yields_the_good_images_and_counts_the_rest(tmp_path, caplog):
    text, truncated = make_folder(tmp_path)
    with caplog.at_level(logging.WARNING, logger="keras_slimmable"):
        dataset, classes = data.image_folder(
            str(tmp_path), training=False, unreadable="skip", **ARGUMENTS
        )
    assert classes == ["c0", "c1"]
    assert dataset.skipped_files == (text, truncated)
    assert "Skipped 2 unreadable image files of 8" in caplog.text
    assert text in caplog.text
    assert labels_of(dataset) == [0, 0, 0, 1, 1, 1]
    pixels = np.concatenate([x.numpy() for x, _ in dataset])
    # Only the good images: values 0 and 10 (never the truncated 200).
    assert pixels.max() < 20 / 255
    train, _ = data.image_folder(
        str(tmp_path), training=True, unreadable="skip", seed=0, **ARGUMENTS
    )
    assert train.skipped_files == (text, truncated)
    assert labels_of(train) == [0, 0, 0, 1, 1, 1]


def test_a_clean_folder_skips_nothing(tmp_path):
    for k in range(2):
        write_jpeg(tmp_path / "a" / f"{k}.jpg", 0)
    dataset, _ = data.image_folder(
        str(tmp_path), training=False, unreadable="skip", **ARGUMENTS
    )
    assert dataset.skipped_files == ()


def test_a_jpeg_with_data_after_its_end_is_readable(tmp_path):
    # The up-front check looks at the ends of the file; a JPEG followed by
    # extra bytes (as some cameras write) still decodes and is kept.
    path = tmp_path / "a" / "extra.jpg"
    write_jpeg(path, 50)
    path.write_bytes(path.read_bytes() + b"trailing metadata")
    dataset, _ = data.image_folder(str(tmp_path), training=False, **ARGUMENTS)
    assert labels_of(dataset) == [0]


def test_a_file_damaged_after_the_check_is_named_when_read(tmp_path, capfd):
    # Passes the up-front check, then changes on disk: decoding fails in
    # the middle of an epoch, and the error still names the file.
    for k in range(4):
        write_jpeg(tmp_path / "a" / f"{k}.jpg", 0)
    late = tmp_path / "a" / "2.jpg"
    for training in (True, False):
        write_jpeg(late, 0)
        dataset, _ = data.image_folder(
            str(tmp_path), training=training, seed=0, **ARGUMENTS
        )
        late.write_text("replaced by text\n")
        with pytest.raises(tf.errors.InvalidArgumentError, match="2.jpg"):
            labels_of(dataset)
    skipping, _ = data.image_folder(
        str(tmp_path), training=False, unreadable="skip", **ARGUMENTS
    )
    assert skipping.skipped_files == (str(late),)
    write_jpeg(late, 0)
    skipping, _ = data.image_folder(
        str(tmp_path), training=False, unreadable="skip", **ARGUMENTS
    )
    late.write_text("replaced by text\n")
    capfd.readouterr()
    assert labels_of(skipping) == [0, 0, 0]
    printed = capfd.readouterr().err
    assert (
        f'skipped 1 unreadable image file(s) in a row, ending with "{late}"'
        in printed
    )


@pytest.mark.parametrize("training", [True, False])
def test_the_last_file_and_files_in_a_row_are_named_too(tmp_path, training):
    # Failures are found as gaps before the next good element; the last
    # file has none after it, and several in a row make one gap.
    only = tmp_path / "one" / "a" / "only.jpg"
    write_jpeg(only, 0)
    dataset, _ = data.image_folder(
        str(tmp_path / "one"), training=training, **ARGUMENTS
    )
    only.write_text("gone bad\n")
    with pytest.raises(tf.errors.InvalidArgumentError, match="only.jpg"):
        labels_of(dataset)
    paths = [tmp_path / "two" / "a" / f"{k}.jpg" for k in range(2)]
    for path in paths:
        write_jpeg(path, 0)
    dataset, _ = data.image_folder(
        str(tmp_path / "two"), training=training, **ARGUMENTS
    )
    for path in paths:
        path.write_text("gone bad\n")
    with pytest.raises(tf.errors.InvalidArgumentError) as info:
        labels_of(dataset)
    message = str(info.value)
    assert "in a row, ending with it:] [2]" in message, message
    assert any(str(path) in message for path in paths), message


def test_unreadable_must_be_error_or_skip(tmp_path):
    write_jpeg(tmp_path / "a" / "0.jpg", 0)
    with pytest.raises(ValueError, match="unreadable='ignore'"):
        data.image_folder(str(tmp_path), training=False, unreadable="ignore")
