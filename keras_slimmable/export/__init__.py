"""Deploying slimmable models: SavedModels for TF Serving, TFLite for phones.

- `export_saved_model`: one SavedModel, one serving signature per width
  (`serving_w0_25`, ..., and `serving_default`, the widest), the variables
  stored once.
- `export_for_serving`: TF Serving's layout, one served model per width,
  each a narrow SavedModel holding only that width's weights, plus the
  `models.config` that `tensorflow_model_server --model_config_file` reads.
- `export_tflite`: a TFLite file of one width.

Every export is written to a temporary folder or file beside its target and
renamed into place at the end, so an interrupted export never leaves a
half-written model where a server would load it. This module is
TensorFlow-only (SavedModel and TFLite are TensorFlow formats).
"""

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

import keras
import tensorflow as tf

from keras_slimmable.widths import width_index
from keras_slimmable.widths import width_name

INPUT_NAME = "images"
QUANTIZATIONS = (None, "float16", "dynamic_range")


def signature_name(width):
    """`serving_w0_25` for width 0.25."""
    return f"serving_{width_name(width, '_')}"


def served_model_name(name, width):
    """`<name>_w0_25`: the TF Serving model name of one width."""
    return f"{name}_{width_name(width, '_')}"


def export_saved_model(model, path, widths=None, overwrite=False):
    """Writes one SavedModel that serves every width.

    The SavedModel has one signature per width, `serving_w0_25`,
    `serving_w0_5`, ..., plus `serving_default` (the widest exported
    width); every signature takes a float32 batch named `images` of the
    model's input shape. The variables are stored once, at full width.

    Args:
        model: a `SlimmableModel`.
        path: the SavedModel folder to create.
        widths: the widths to export. Defaults to all of `model.widths`.
        overwrite: replace an existing folder at `path`. Defaults to
            `False`.

    Returns:
        The `Path` written.

    Raises:
        FileExistsError: if `path` exists and `overwrite` is False (the
            existing folder is left intact).
        ValueError: for a width the model does not have.
    """
    widths = _check_widths(model, widths)
    path = Path(path)
    _refuse_existing(path, overwrite)
    archive = keras.export.ExportArchive()
    archive.track(model)
    spec = _input_spec(model)
    # The first endpoint becomes `serving_default`: add the widest first.
    for width in sorted(widths, reverse=True):
        archive.add_endpoint(
            signature_name(width),
            _serving_function(model, width),
            input_signature=[spec],
        )
    with _atomic_directory(path, overwrite) as staging:
        archive.write_out(str(staging), verbose=False)
    return path


def export_for_serving(
    model,
    base_dir,
    name,
    version=1,
    widths=None,
    overwrite=False,
    server_base_dir=None,
):
    """Writes TF Serving's layout: one served model per width.

    For every width, `<base_dir>/<name>_w0_25/<version>/` holds a SavedModel
    of that width alone (built with `model.materialize(width)`, so it holds
    only that width's weights), whose `serving_default` signature takes a
    float32 batch named `images`. `<base_dir>/models.config` lists the
    served models as a `model_config_list`, for
    `tensorflow_model_server --model_config_file=.../models.config`.

    Each version folder is written under a temporary name and renamed into
    place when complete: TF Serving only loads numeric version folders, so
    it never sees a half-written version.

    Args:
        model: a `SlimmableModel`.
        base_dir: the folder that holds the served models.
        name: the model name; each width is served as `<name>_w<width>`.
        version: the version number. Defaults to `1`.
        widths: the widths to export. Defaults to all of `model.widths`.
        overwrite: replace existing versions. Defaults to `False`.
        server_base_dir: `base_dir` as the server sees it, written into
            `models.config` (e.g. `/models` inside the `tensorflow/serving`
            container). Defaults to the absolute `base_dir`.

    Returns:
        A dict `{width: Path of the version folder}`.

    Raises:
        FileExistsError: if a version exists and `overwrite` is False;
            nothing is written then.
        ValueError: for a bad width, version or name.
    """
    widths = _check_widths(model, widths)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(
            f"`version` must be a positive int. Received: version={version!r}"
        )
    if not name or not str(name).replace("_", "").replace("-", "").isalnum():
        raise ValueError(
            "`name` must be a non-empty name of letters, digits, '_' or '-'. "
            f"Received: name={name!r}"
        )
    base_dir = Path(base_dir)
    targets = {
        width: base_dir / served_model_name(name, width) / str(version)
        for width in widths
    }
    for target in targets.values():
        _refuse_existing(target, overwrite)
    for width, target in targets.items():
        narrow = model.materialize(width)
        archive = keras.export.ExportArchive()
        archive.track(narrow)
        archive.add_endpoint(
            "serving_default",
            _plain_serving_function(narrow),
            input_signature=[_input_spec(model)],
        )
        with _atomic_directory(target, overwrite) as staging:
            archive.write_out(str(staging), verbose=False)
    server_base = (
        base_dir.resolve() if server_base_dir is None else server_base_dir
    )
    _write_models_config(base_dir, name, model.widths, server_base)
    return targets


def export_tflite(model, path, width=None, quantization=None):
    """Writes a TFLite file of one width.

    Converts `model.materialize(width)` (only that width's weights) through
    a SavedModel, with `tf.lite.TFLiteConverter.from_saved_model`.

    Args:
        model: a `SlimmableModel`.
        path: the `.tflite` file to write.
        width: the width. Defaults to `model.width`.
        quantization: `None` (float32), `"float16"` (weights in float16) or
            `"dynamic_range"` (int8 weights, float activations). Defaults
            to `None`.

    Returns:
        The `Path` written.
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"`quantization` must be one of {QUANTIZATIONS}. Received: "
            f"quantization={quantization!r}"
        )
    width = model.width if width is None else width
    (width,) = _check_widths(model, [width])
    narrow = model.materialize(width)
    path = Path(path)
    with tempfile.TemporaryDirectory() as scratch:
        archive = keras.export.ExportArchive()
        archive.track(narrow)
        archive.add_endpoint(
            "serving_default",
            _plain_serving_function(narrow),
            input_signature=[_input_spec(model, batch_size=1)],
        )
        archive.write_out(scratch, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(scratch)
        if quantization is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        flatbuffer = converter.convert()
    _atomic_write_bytes(path, flatbuffer)
    return path


# Helpers ---------------------------------------------------------------------


def _check_widths(model, widths):
    if widths is None:
        return tuple(model.widths)
    checked = []
    for width in widths:
        checked.append(model.widths[width_index(model.widths, width)])
    if not checked:
        raise ValueError("`widths` must name at least one width.")
    return tuple(sorted(set(checked)))


def _input_spec(model, batch_size=None):
    shape = tuple(model.input.shape[1:])
    return tf.TensorSpec((batch_size,) + shape, tf.float32, name=INPUT_NAME)


def _serving_function(model, width):
    def serve(images):
        return model(images, training=False, width=width)

    return serve


def _plain_serving_function(model):
    def serve(images):
        return model(images, training=False)

    return serve


def _refuse_existing(path, overwrite):
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"{path} already exists; it is left as it is. Pass "
            "overwrite=True to replace it."
        )


@contextlib.contextmanager
def _atomic_directory(path, overwrite):
    """Yields a staging folder beside `path`, renamed to `path` on success.

    The staging name starts with a dot and is not numeric, so neither TF
    Serving nor a glob for version folders picks it up. On failure the
    staging folder is removed and `path` is untouched.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent)
    )
    try:
        yield staging
        if path.exists():
            if not overwrite:
                raise FileExistsError(f"{path} appeared during the export.")
            retired = Path(
                tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent)
            )
            os.replace(path, retired / path.name)
            os.replace(staging, path)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, path)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _atomic_write_bytes(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(
        prefix=f".{path.name}.partial-", dir=path.parent
    )
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def _write_models_config(base_dir, name, widths, server_base):
    """Writes `models.config` for every served width under `base_dir`.

    Lists every `<name>_w*` folder present, so exporting some widths later
    keeps the others served.
    """
    present = [
        width
        for width in widths
        if (Path(base_dir) / served_model_name(name, width)).is_dir()
    ]
    entries = []
    for width in present:
        served = served_model_name(name, width)
        entries.append(
            "  config {\n"
            f'    name: "{served}"\n'
            f'    base_path: "{Path(server_base) / served}"\n'
            '    model_platform: "tensorflow"\n'
            "  }\n"
        )
    text = "model_config_list {\n" + "".join(entries) + "}\n"
    _atomic_write_bytes(Path(base_dir) / "models.config", text.encode())
