"""Object-detection data built from an image-classification folder.

No detection dataset can be downloaded on the machines this package is
developed on, so detectors are trained and evaluated on canvases made of
classification images (CIFAR-10's 32x32 pictures, say) pasted at known
places: the boxes and classes are known exactly.

`pasted_objects(directory, num_images)` reads a `directory/<class>/*.jpg`
tree (the class list is the sorted subfolder names, label `i` being
`class_names[i]`) and makes each `image_size` x `image_size` canvas so:

- Background: one image of the folder, drawn uniformly from all files; a
  random square crop of it (side between half and all of its shorter side)
  is resized (bilinear) to the canvas and darkened to half its brightness,
  so that the pasted objects stand out. Upsampling a 16 to 32 pixel crop to
  128 pixels blurs it; it is not labelled even when it shows an object.
- Objects: between `objects_per_image[0]` and `objects_per_image[1]`
  images, each of a uniformly drawn class and then a uniformly drawn file of
  that class, resized whole (bilinear, Pillow) to a random square side in
  `object_size` (inclusive bounds) and pasted at a random integer position
  fully inside the canvas and overlapping no object already placed
  (touching edges allowed). Each object gets a bounded number of random
  positions; one that finds no free place is dropped, so an image may hold
  fewer objects than drawn, but never none (the first always fits).

Canvas `i` depends only on `(seed, i)` and the folder's contents (each
canvas has its own `numpy.random.Generator` seeded with `[seed, i]`): the
first 100 canvases of a 1000-canvas set are the 100-canvas set.

The result is a dict of NumPy arrays:

- `"images"`: uint8 `(N, S, S, 3)`.
- `"boxes"`: float32 `(N, M, 4)`, absolute pixel `"xyxy"` `(x1, y1, x2,
  y2)` with `x2 = x1 + side` (the object covers pixel columns `x1` to
  `x2 - 1`), padded with -1 rows up to `M = objects_per_image[1]`.
- `"labels"`: int32 `(N, M)`, padded with -1.
- `"class_names"`: the list of class names.

`check_targets` validates such arrays (or any others) before training.

Reading the images needs Pillow (`pip install pillow`).
"""

import hashlib
import json
import logging
import os
import tempfile
import zipfile

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

# Random positions tried for each object before it is dropped.
_PLACEMENT_TRIES = 50
# Bump when the way canvases are made changes: it invalidates caches.
_FORMAT_VERSION = 1
_BACKGROUND_BRIGHTNESS = 0.5

_BOX_FORMATS = ("xyxy", "yxyx", "xywh", "center_xywh", "rel_xyxy", "rel_yxyx")

_logger = logging.getLogger("keras_slimmable.data")


def _require_pillow():
    try:
        from PIL import Image
    except ImportError as error:
        raise ImportError(
            "keras_slimmable.data.detection reads images with Pillow, which "
            "is not installed. Install it with `pip install pillow` (or "
            "`pip install keras-slimmable[detection]`)."
        ) from error
    return Image


def _check_int_range(name, value, low_limit, high_limit):
    ok = (
        isinstance(value, (tuple, list))
        and len(value) == 2
        and all(isinstance(v, (int, np.integer)) for v in value)
        and low_limit <= value[0] <= value[1] <= high_limit
    )
    if not ok:
        raise ValueError(
            f"`{name}` must be (low, high), ints with {low_limit} <= low <= "
            f"high <= {high_limit}. Received: {name}={value!r}"
        )
    return int(value[0]), int(value[1])


def _list_classes(directory):
    if not os.path.isdir(directory):
        raise ValueError(
            "`directory` must be a folder with one subfolder of images per "
            f"class. Received: directory={directory!r} (not a folder)"
        )
    class_names = sorted(
        entry.name for entry in os.scandir(directory) if entry.is_dir()
    )
    if not class_names:
        raise ValueError(
            "`directory` must hold one subfolder of images per class. "
            f"Received: directory={directory!r} (no subfolders)"
        )
    files = []
    for name in class_names:
        folder = os.path.join(directory, name)
        paths = sorted(
            entry.path
            for entry in os.scandir(folder)
            if entry.is_file() and entry.name.lower().endswith(IMAGE_EXTENSIONS)
        )
        if not paths:
            raise ValueError(
                f"Every class folder must hold images ({IMAGE_EXTENSIONS}). "
                f"Received: {folder!r} holds none"
            )
        files.append(paths)
    return class_names, files


def _load(image_module, path):
    with image_module.open(path) as image:
        return image.convert("RGB")


def _make_canvas(
    Image, rng, files, all_files, image_size, objects_per_image, object_size
):
    background = _load(Image, all_files[rng.integers(len(all_files))])
    shorter = min(background.size)
    side = int(rng.integers(max(1, shorter // 2), shorter + 1))
    left = int(rng.integers(background.size[0] - side + 1))
    top = int(rng.integers(background.size[1] - side + 1))
    background = background.crop((left, top, left + side, top + side))
    background = background.resize((image_size, image_size), Image.BILINEAR)
    canvas = np.asarray(background, dtype=np.float32) * _BACKGROUND_BRIGHTNESS
    canvas = np.round(canvas).astype(np.uint8)

    count = int(rng.integers(objects_per_image[0], objects_per_image[1] + 1))
    boxes = []
    labels = []
    for _ in range(count):
        label = int(rng.integers(len(files)))
        path = files[label][rng.integers(len(files[label]))]
        size = int(rng.integers(object_size[0], object_size[1] + 1))
        for _ in range(_PLACEMENT_TRIES):
            x = int(rng.integers(image_size - size + 1))
            y = int(rng.integers(image_size - size + 1))
            if all(
                x >= x2 or x + size <= x1 or y >= y2 or y + size <= y1
                for x1, y1, x2, y2 in boxes
            ):
                break
        else:
            continue
        picture = _load(Image, path).resize((size, size), Image.BILINEAR)
        canvas[y : y + size, x : x + size] = np.asarray(picture)
        boxes.append((x, y, x + size, y + size))
        labels.append(label)
    return canvas, boxes, labels


def _cache_path(cache_dir, arguments):
    key = json.dumps(
        dict(arguments, version=_FORMAT_VERSION), sort_keys=True
    ).encode()
    digest = hashlib.sha256(key).hexdigest()[:20]
    return os.path.join(cache_dir, f"pasted_objects-{digest}.npz")


def _read_cache(path, num_images, image_size, max_objects):
    try:
        with np.load(path, allow_pickle=False) as data:
            result = {
                "images": data["images"],
                "boxes": data["boxes"],
                "labels": data["labels"],
                "class_names": [str(name) for name in data["class_names"]],
            }
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as e:
        _logger.warning("Rebuilding the unreadable cache %s: %s", path, e)
        return None
    expected = {
        "images": ((num_images, image_size, image_size, 3), np.uint8),
        "boxes": ((num_images, max_objects, 4), np.float32),
        "labels": ((num_images, max_objects), np.int32),
    }
    for key, (shape, dtype) in expected.items():
        if result[key].shape != shape or result[key].dtype != dtype:
            _logger.warning(
                "Rebuilding the cache %s: %s has shape %s, dtype %s; "
                "expected %s, %s",
                path,
                key,
                result[key].shape,
                result[key].dtype,
                shape,
                np.dtype(dtype),
            )
            return None
    return result


def _write_cache(path, result):
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=directory, prefix=".pasted_objects-", suffix=".npz.tmp"
    )
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(
                file,
                images=result["images"],
                boxes=result["boxes"],
                labels=result["labels"],
                class_names=np.array(result["class_names"], dtype=str),
            )
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def pasted_objects(
    directory,
    num_images,
    image_size=128,
    objects_per_image=(2, 4),
    object_size=(24, 64),
    seed=0,
    cache_dir=None,
    verbose="auto",
):
    """Builds a detection set by pasting folder images on canvases.

    See the module docstring for how each canvas is made.

    Args:
        directory: a folder with one subfolder of images per class
            (`directory/<class>/*.jpg`); the classes are the sorted
            subfolder names.
        num_images: the number of canvases, a positive int.
        image_size: the canvas side in pixels.
        objects_per_image: `(low, high)`, the inclusive range of the number
            of objects drawn per canvas (`low >= 1`). The boxes and labels
            are padded to `high` rows.
        object_size: `(low, high)`, the inclusive range of an object's
            side in pixels (`high <= image_size`).
        seed: an int >= 0. Canvas `i` depends only on `(seed, i)`.
        cache_dir: `None`, or a folder in which the set is saved as an
            `.npz` file named by a hash of the other arguments (written
            atomically) and read back by later calls. The folder's
            contents are not part of the hash: clear the cache when they
            change. An unreadable cache file is rebuilt.
        verbose: `"auto"` (a progress bar unless the set comes from the
            cache), `True` or `False`.

    Returns:
        A dict: `"images"` uint8 `(N, S, S, 3)`, `"boxes"` float32
        `(N, M, 4)` in absolute `"xyxy"` pixels, `"labels"` int32 `(N, M)`
        (both padded with -1) and `"class_names"`, a list of str.
    """
    if not isinstance(num_images, (int, np.integer)) or num_images < 1:
        raise ValueError(
            "`num_images` must be a positive int. Received: "
            f"num_images={num_images!r}"
        )
    if not isinstance(image_size, (int, np.integer)) or image_size < 1:
        raise ValueError(
            "`image_size` must be a positive int. Received: "
            f"image_size={image_size!r}"
        )
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"`seed` must be an int >= 0. Received: seed={seed!r}")
    objects_per_image = _check_int_range(
        "objects_per_image", objects_per_image, 1, np.inf
    )
    object_size = _check_int_range("object_size", object_size, 1, image_size)
    num_images, image_size, seed = int(num_images), int(image_size), int(seed)
    class_names, files = _list_classes(directory)
    max_objects = objects_per_image[1]

    path = None
    if cache_dir is not None:
        arguments = {
            "directory": os.path.realpath(directory),
            "num_images": num_images,
            "image_size": image_size,
            "objects_per_image": objects_per_image,
            "object_size": object_size,
            "seed": seed,
        }
        path = _cache_path(cache_dir, arguments)
        if os.path.exists(path):
            result = _read_cache(path, num_images, image_size, max_objects)
            if result is not None:
                return result

    images = np.empty((num_images, image_size, image_size, 3), np.uint8)
    boxes = np.full((num_images, max_objects, 4), -1, np.float32)
    labels = np.full((num_images, max_objects), -1, np.int32)
    progbar = None
    if verbose:  # "auto" too: a cached set returned above.
        import keras

        progbar = keras.utils.Progbar(num_images, unit_name="image")
    Image = _require_pillow()
    all_files = [path for paths in files for path in paths]
    for index in range(num_images):
        rng = np.random.default_rng([seed, index])
        canvas, image_boxes, image_labels = _make_canvas(
            Image,
            rng,
            files,
            all_files,
            image_size,
            objects_per_image,
            object_size,
        )
        images[index] = canvas
        boxes[index, : len(image_boxes)] = image_boxes
        labels[index, : len(image_labels)] = image_labels
        if progbar is not None and (
            (index + 1) % 100 == 0 or index + 1 == num_images
        ):
            progbar.update(index + 1)
    result = {
        "images": images,
        "boxes": boxes,
        "labels": labels,
        "class_names": class_names,
    }
    if path is not None:
        _write_cache(path, result)
    return result


def _to_absolute_xyxy(boxes, bounding_box_format, height, width):
    a, b, c, d = np.moveaxis(boxes, -1, 0)
    if bounding_box_format == "xyxy":
        x1, y1, x2, y2 = a, b, c, d
    elif bounding_box_format == "yxyx":
        y1, x1, y2, x2 = a, b, c, d
    elif bounding_box_format == "xywh":
        x1, y1, x2, y2 = a, b, a + c, b + d
    elif bounding_box_format == "center_xywh":
        x1, y1, x2, y2 = a - c / 2, b - d / 2, a + c / 2, b + d / 2
    elif bounding_box_format == "rel_xyxy":
        x1, y1, x2, y2 = a * width, b * height, c * width, d * height
    else:  # rel_yxyx
        y1, x1, y2, x2 = a * height, b * width, c * height, d * width
    return np.stack([x1, y1, x2, y2], axis=-1)


def check_targets(
    images, boxes, labels, num_classes, bounding_box_format="xyxy"
):
    """Checks detection images and targets, raising on the first problem.

    Meant for NumPy arrays before training: the shapes agree (`images`
    `(N, H, W, C)`, `boxes` `(N, M, 4)`, `labels` `(N, M)`); every real
    box (label >= 0) is finite and inside its image with positive size
    (`0 <= x1 < x2 <= W`, `0 <= y1 < y2 <= H` in absolute `"xyxy"`) and
    has a label in `[0, num_classes)`; padding rows have label -1 (their
    boxes are not checked); every image has at least one real box.
    Nothing is returned or changed.

    Args:
        images: `(N, H, W, C)` array.
        boxes: `(N, M, 4)` array in `bounding_box_format`.
        labels: `(N, M)` integer array, -1 for padding.
        num_classes: the number of classes, a positive int.
        bounding_box_format: one of `"xyxy"`, `"yxyx"`, `"xywh"`,
            `"center_xywh"`, `"rel_xyxy"`, `"rel_yxyx"` (as in Keras).

    Raises:
        ValueError: naming the image, the box and what was expected.
    """
    if bounding_box_format not in _BOX_FORMATS:
        raise ValueError(
            f"`bounding_box_format` must be one of {_BOX_FORMATS}. "
            f"Received: bounding_box_format={bounding_box_format!r}"
        )
    if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ValueError(
            "`num_classes` must be a positive int. Received: "
            f"num_classes={num_classes!r}"
        )
    images_shape = np.shape(images)
    boxes = np.asarray(boxes)
    labels = np.asarray(labels)
    if len(images_shape) != 4:
        raise ValueError(
            "`images` must have shape (N, height, width, channels). "
            f"Received: images.shape={images_shape}"
        )
    count, height, width = images_shape[:3]
    if boxes.ndim != 3 or boxes.shape[0] != count or boxes.shape[2] != 4:
        raise ValueError(
            f"`boxes` must have shape (N, M, 4) with N = {count} images. "
            f"Received: boxes.shape={boxes.shape}"
        )
    if labels.shape != boxes.shape[:2]:
        raise ValueError(
            f"`labels` must have shape (N, M) = {boxes.shape[:2]}, as "
            f"`boxes`. Received: labels.shape={labels.shape}"
        )
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            "`labels` must be integers (-1 for padding). Received: "
            f"labels.dtype={labels.dtype}"
        )
    bad = np.argwhere((labels < -1) | (labels >= num_classes))
    if len(bad):
        i, j = bad[0]
        raise ValueError(
            f"Each label must be in [0, {num_classes}) (or -1 for padding). "
            f"Received: labels[{i}, {j}] = {labels[i, j]}"
        )
    real = labels >= 0
    empty = np.flatnonzero(~real.any(axis=1))
    if len(empty):
        raise ValueError(
            "Every image must have at least one box (label >= 0). "
            f"Received: image {empty[0]} has none (labels[{empty[0]}] = "
            f"{labels[empty[0]].tolist()})"
        )
    xyxy = _to_absolute_xyxy(
        boxes.astype(np.float64), bounding_box_format, height, width
    )
    x1, y1, x2, y2 = np.moveaxis(xyxy, -1, 0)
    with np.errstate(invalid="ignore"):
        valid = (
            np.isfinite(xyxy).all(axis=-1)
            & (x1 >= 0)
            & (x1 < x2)
            & (x2 <= width)
            & (y1 >= 0)
            & (y1 < y2)
            & (y2 <= height)
        )
    bad = np.argwhere(real & ~valid)
    if len(bad):
        i, j = bad[0]
        described = (
            ""
            if bounding_box_format == "xyxy"
            else f" (absolute xyxy {xyxy[i, j].tolist()})"
        )
        raise ValueError(
            f"Each box must lie inside its {width}x{height} image with "
            f"positive size: 0 <= x1 < x2 <= {width} and 0 <= y1 < y2 <= "
            f"{height} in absolute xyxy. Received: boxes[{i}, {j}] = "
            f"{boxes[i, j].tolist()} in {bounding_box_format!r}{described} "
            f"(label {labels[i, j]})"
        )
