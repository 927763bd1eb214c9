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
import posixpath
import shutil
import tempfile
import uuid
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
    archive = _archive()
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

    Each version folder is written under a hidden, non-numeric name and
    renamed into place once every width's folder is complete: TF Serving
    only loads numeric version folders, so it never sees a half-written
    version, and an export that fails part-way publishes no width.

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
    # Every width is written to its staging folder first; the staging
    # folders are renamed into place only when all are complete (as the
    # stack unwinds), so an export that fails on one width publishes none.
    with contextlib.ExitStack() as stack:
        for width, target in targets.items():
            narrow = model.materialize(width)
            archive = _archive()
            archive.add_endpoint(
                "serving_default",
                _plain_serving_function(narrow),
                input_signature=[_input_spec(model)],
            )
            staging = stack.enter_context(_atomic_directory(target, overwrite))
            archive.write_out(str(staging), verbose=False)
    if server_base_dir is None:
        server_base = str(base_dir.resolve())
    else:
        server_base = str(server_base_dir)
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
    _check_model(model)
    width = model.width if width is None else width
    (width,) = _check_widths(model, [width])
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(
            f"`path` must name a .tflite file, not a folder. Received: "
            f"path={str(path)!r}"
        )
    narrow = model.materialize(width)
    with tempfile.TemporaryDirectory() as scratch:
        archive = _archive()
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


def _archive():
    """An `ExportArchive` whose endpoints track the variables they use.

    `ExportArchive.track(model)` is deliberately not called: on the
    TensorFlow backend it stores every variable twice (once as the
    `keras.Variable` that `track` lists, once as the `tf.Variable` the
    endpoints capture; keras-team/keras#23553), doubling the SavedModel and
    the memory of every server that loads it. The endpoints alone track
    every variable they read, which is all a served model needs (these
    models have no lookup tables, the one thing `track` adds).
    """
    return keras.export.ExportArchive()


def _check_model(model):
    if not (hasattr(model, "widths") and hasattr(model, "materialize")):
        raise TypeError(
            "`model` must be a `keras_slimmable.SlimmableModel`. Received: "
            f"model={model!r} of type {type(model).__name__}"
        )


def _check_widths(model, widths):
    _check_model(model)
    if widths is None:
        return tuple(model.widths)
    if isinstance(widths, (str, bytes)) or not hasattr(widths, "__iter__"):
        raise ValueError(
            "`widths` must be a list of widths, e.g. [0.25, 1.0]. "
            f"Received: widths={widths!r}"
        )
    widths = list(widths)
    if not widths:
        raise ValueError(
            "`widths` must name at least one width of the model "
            f"{tuple(model.widths)}. Received: widths={widths!r}"
        )
    checked = [model.widths[width_index(model.widths, w)] for w in widths]
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


def _hidden_sibling(path, kind):
    """`.<name>.<kind>-<random>` beside `path`: hidden and not numeric, so
    neither TF Serving (which loads numeric version folders) nor a glob for
    models picks it up."""
    return path.parent / f".{path.name}.{kind}-{uuid.uuid4().hex[:12]}"


@contextlib.contextmanager
def _atomic_directory(path, overwrite):
    """Yields a staging folder beside `path`, renamed to `path` on success.

    On failure the staging folder is removed, and so are the parent folders
    this call created (TF Serving would otherwise watch an empty model
    folder); `path` is untouched. The staging folder is made with `mkdir`,
    so it gets the usual permissions (umask), not `mkdtemp`'s owner-only
    ones: a server running as another user must be able to read the
    published model.
    """
    created = []
    parent = path.parent
    while not parent.exists():
        created.append(parent)
        parent = parent.parent
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = _hidden_sibling(path, "partial")
    staging.mkdir()
    published = False
    try:
        yield staging
        if path.exists():
            if not overwrite:
                raise FileExistsError(
                    f"{path} appeared during the export; it is left as it "
                    "is. Pass overwrite=True to replace it."
                )
            # No portable atomic swap of two folders: move the old one
            # aside (a hidden name), move the new one in, then delete.
            retired = _hidden_sibling(path, "old")
            os.replace(path, retired)
            try:
                os.replace(staging, path)
            except BaseException:
                os.replace(retired, path)
                raise
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, path)
        published = True
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        if not published:
            for folder in created:  # Innermost first; only if still empty.
                with contextlib.suppress(OSError):
                    folder.rmdir()


def _atomic_write_bytes(path, data):
    """Writes `data` to a hidden file beside `path`, then renames it.

    Opened with mode 0o666 (less the umask), like an ordinary file, not
    `mkstemp`'s owner-only 0o600.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = _hidden_sibling(path, "partial")
    handle = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(partial, path)
    finally:
        if partial.exists():
            partial.unlink()


def _has_version(folder):
    """Whether `folder` holds a numeric version folder TF Serving would load."""
    return folder.is_dir() and any(
        child.name.isdigit() and child.is_dir() for child in folder.iterdir()
    )


def _write_models_config(base_dir, name, widths, server_base):
    """Writes `models.config` for every served width under `base_dir`.

    Lists every `<name>_w*` folder holding a version, so exporting some
    widths later keeps the others served. `server_base` is joined with `/`:
    it is a path on the server (often a container), not necessarily on this
    machine.
    """
    present = [
        width
        for width in widths
        if _has_version(Path(base_dir) / served_model_name(name, width))
    ]
    entries = []
    for width in present:
        served = served_model_name(name, width)
        entries.append(
            "  config {\n"
            f'    name: "{served}"\n'
            f'    base_path: "{posixpath.join(server_base, served)}"\n'
            '    model_platform: "tensorflow"\n'
            "  }\n"
        )
    text = "model_config_list {\n" + "".join(entries) + "}\n"
    _atomic_write_bytes(Path(base_dir) / "models.config", text.encode())
