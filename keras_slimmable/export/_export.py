"""The exports themselves: SavedModel, TF Serving's layout, TFLite.

TensorFlow-only (SavedModel and TFLite are TensorFlow formats); imported
on first use of `keras_slimmable.export`'s functions.
"""

import os
import posixpath
from pathlib import Path

import keras
import numpy as np

from keras_slimmable._optional import require_tensorflow
from keras_slimmable.export import _files
from keras_slimmable.export._models_config import format_models_config
from keras_slimmable.export._models_config import pinned_versions
from keras_slimmable.export._names import INPUT_NAME
from keras_slimmable.export._names import QUANTIZATIONS
from keras_slimmable.export._names import check_model_name
from keras_slimmable.export._names import served_model_name
from keras_slimmable.export._names import signature_name
from keras_slimmable.materialize import materialize

tf = require_tensorflow(
    "keras_slimmable.export (SavedModel, TF Serving and TFLite)"
)

MODELS_CONFIG = "models.config"
TFLITE_LAYOUTS = ("materialized", "sliced", "shared")
# The signature that keeps a "shared" file's weights variables (see
# `_write_shared_saved_model`).
KEEP_VARIABLES_SIGNATURE = "keep_weights_as_variables"


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
    _tidy_beside(path)
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
    with _files.atomic_directory(path, overwrite) as staging:
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
    fold_batch_norm=False,
):
    """Writes TF Serving's layout: one served model per width.

    For every width, `<base_dir>/<name>_w0_25/<version>/` holds a SavedModel
    of that width alone (built with `model.materialize(width)`, so it holds
    only that width's weights), whose `serving_default` signature takes a
    float32 batch named `images`. `<base_dir>/models.config` lists the
    served models as a `model_config_list`, for
    `tensorflow_model_server --model_config_file=.../models.config`, each
    pinned to its version (`model_version_policy { specific { ... } }`).

    Publishing is all or nothing, even if the process is killed: a server
    reading `models.config` sees either the whole previous export or the
    whole new one. Every width is written under a hidden, non-numeric
    folder first; then the new versions are put in place, which changes
    nothing served since `models.config` pins the versions it serves; then
    `models.config` is replaced, atomically. Replacing an existing version
    (`overwrite=True`) first points `models.config` at the complete staged
    copies, replaces the version folders, then points it back. What a
    killed export leaves behind is completed or removed by the next export
    into `base_dir`. Run one export into a `base_dir` at a time.

    Args:
        model: a `SlimmableModel`.
        base_dir: the folder that holds the served models.
        name: the model name; each width is served as `<name>_w<width>`.
            1 to 200 ASCII letters, digits, `_` or `-`, starting with a
            letter or digit: it is part of TF Serving's URLs
            (`/v1/models/<name>_w0_5:predict`) and a folder name.
        version: the version number. Defaults to `1`.
        widths: the widths to export. Defaults to all of `model.widths`.
        overwrite: replace existing versions. Defaults to `False`.
        server_base_dir: `base_dir` as the server sees it, written into
            `models.config` (e.g. `/models` inside the `tensorflow/serving`
            container). Defaults to the absolute `base_dir`.
        fold_batch_norm: fold each batch norm that follows a convolution
            or dense layer into its kernel and bias
            (`model.materialize(width, fold_batch_norm=True)`): the same
            outputs at inference, with fewer operations (measured on
            S-MobileNet v1 at 224 px: 0.72 to 0.79 of the latency at batch
            1, 0.58 to 0.78 at batch 16; `docs/on_device.md`). Defaults to
            `False`.

    Returns:
        A dict `{width: Path of the version folder}`.

    Raises:
        FileExistsError: if a version exists and `overwrite` is False;
            nothing is written then.
        ValueError: for a bad width, version, name or server_base_dir.
    """
    widths = _check_widths(model, widths)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(
            f"`version` must be a positive int. Received: version={version!r}"
        )
    check_model_name(name)
    base_dir = Path(base_dir)
    server_base = _server_base(base_dir, server_base_dir)
    versions = {served_model_name(name, width): version for width in widths}
    targets = {
        width: base_dir / served_model_name(name, width) / str(version)
        for width in widths
    }
    _tidy_serving_folder(base_dir, name)
    for target in targets.values():
        _refuse_existing(target, overwrite)
    created = _files.new_folder(base_dir)
    staging = _files.hidden_sibling(base_dir / "export", "publish")
    staging.mkdir()
    try:
        for width in widths:
            narrow = materialize(model, width, fold_batch_norm=fold_batch_norm)
            archive = _archive()
            archive.add_endpoint(
                "serving_default",
                _plain_serving_function(narrow),
                input_signature=[_input_spec(model)],
            )
            folder = staging / served_model_name(name, width) / str(version)
            folder.parent.mkdir()
            archive.write_out(str(folder), verbose=False)
        replacing = any(target.exists() for target in targets.values())
        publish = _publish if overwrite and replacing else _publish_new
        publish(base_dir, staging, name, model.widths, versions, server_base)
    finally:
        if not _referenced(base_dir, staging):
            _files.remove(staging)
            _files.remove_empty(created)
    # What killed exports left and `models.config` no longer names.
    _tidy_serving_folder(base_dir, name)
    return targets


def export_tflite(
    model,
    path,
    width=None,
    quantization=None,
    overwrite=False,
    widths=None,
    layout="materialized",
    fold_batch_norm=False,
    representative_dataset=None,
):
    """Writes a TFLite (LiteRT) file of one width, or of several.

    With `width` (or neither argument), the file holds that width alone,
    as its `serving_default` signature. With `widths`, ONE file holds a
    signature per width, `serving_w0_25`, `serving_w0_5`, ..., plus
    `serving_default` (the model's default width, `model.width`, if
    exported, else the widest exported): an app switches width by calling
    another signature of the same interpreter
    (`Interpreter(model_path=...).get_signature_runner("serving_w0_5")`).
    Every signature takes a float32 batch of one image named `images`.

    The file is converted through a SavedModel with
    `tf.lite.TFLiteConverter.from_saved_model`. The converter turns the
    weights into constants and folds the slicing of shared kernels, so in
    the `"materialized"` and `"sliced"` layouts every width stores its own
    copy of its weights (only tensors identical at every width, such as a
    classifier whose input width is fixed, are stored once): the file is
    at most the size of the per-width files together, and each signature
    as fast as its width's own file. `layout="shared"` stores the weights
    once (measured in `docs/on_device.md`).

    Args:
        model: a `SlimmableModel`.
        path: the `.tflite` file to write.
        width: the width of a single-width file. Defaults to `model.width`
            when `widths` is not given.
        quantization: `None` (float32), `"float16"` (weights in float16),
            `"dynamic_range"` (int8 weights, float activations) or `"int8"`
            (full-integer post-training quantization: int8 weights and
            activations, every operation in int8; the signatures still take
            and return float32, quantized at the input and dequantized at
            the output). `"int8"` needs `representative_dataset`. Defaults
            to `None`.
        overwrite: replace an existing file at `path`. Defaults to `False`.
        widths: the widths of a multi-width file: a list of widths of the
            model, or `"all"` for every width. Defaults to `None` (a
            single-width file).
        layout: how each width's signature is built. `"materialized"`:
            from `model.materialize(width)`, the width's plain model (the
            same graph as a single-width file). `"sliced"`: from the
            slimmable model called at that width (kernels sliced in the
            graph, which the converter folds into per-width constants).
            `"shared"`: the full-width weights stored ONCE, as LiteRT
            resource variables that every signature slices at run time:
            about the size of the widest width alone, but about 4x slower
            (XNNPACK cannot pre-pack weights that are not constants), and
            float32 only. The file then also has a signature
            `keep_weights_as_variables` (no inputs; it rewrites each
            weight with its own value), which keeps the converter from
            freezing the weights into per-width constants.
            Defaults to `"materialized"`.
        fold_batch_norm: with `layout="materialized"`, fold batch norms
            into the convolutions before converting
            (`materialize(..., fold_batch_norm=True)`). The converter
            fuses them itself, so the file is the same size; see
            `docs/on_device.md`. Defaults to `False`.
        representative_dataset: with `quantization="int8"`, the images the
            activation ranges are calibrated on: a float array (or a list
            of float arrays) of shape `(n, height, width, channels)`,
            preprocessed as the model expects, e.g. a few hundred training
            images. Every width is calibrated on its own activations: each
            signature runs every image.

    Returns:
        The `Path` written.

    Raises:
        FileExistsError: if `path` exists and `overwrite` is False (the
            existing file is left intact).
        ValueError: for a bad width, widths, quantization or layout, or a
            missing or malformed representative dataset (nothing is
            written).
    """
    if quantization not in QUANTIZATIONS:
        raise ValueError(
            f"`quantization` must be one of {QUANTIZATIONS}. Received: "
            f"quantization={quantization!r}"
        )
    if layout not in TFLITE_LAYOUTS:
        raise ValueError(
            f"`layout` must be one of {TFLITE_LAYOUTS}. Received: "
            f"layout={layout!r}"
        )
    if layout == "shared" and quantization is not None:
        raise ValueError(
            "layout='shared' is float32 only (the converter does not "
            "quantize variables). Received: "
            f"quantization={quantization!r}"
        )
    if fold_batch_norm and layout != "materialized":
        raise ValueError(
            "`fold_batch_norm=True` needs layout='materialized'. Received: "
            f"layout={layout!r}"
        )
    _check_model(model)
    calibration = _calibration_images(
        model, quantization, representative_dataset
    )
    signatures = _tflite_signatures(model, width, widths)
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(
            f"`path` must name a .tflite file, not a folder. Received: "
            f"path={str(path)!r}"
        )
    _tidy_beside(path)
    _refuse_existing(path, overwrite)
    functions = {}
    for name, signature_width in signatures.items():
        if layout in ("sliced", "shared"):
            functions[name] = _serving_function(model, signature_width)
        else:
            narrow = materialize(
                model, signature_width, fold_batch_norm=fold_batch_norm
            )
            functions[name] = _plain_serving_function(narrow)
    created = _files.new_folder(path.parent)
    # Beside the target rather than in /tmp: a killed export's scratch
    # folder is then found and removed by the next export there.
    scratch = _files.hidden_sibling(path, "scratch")
    scratch.mkdir()
    written = False
    try:
        if layout == "shared":
            _write_shared_saved_model(model, functions, scratch)
        else:
            archive = _archive()
            # The first endpoint is also `serving_default` (ExportArchive's
            # alias): the converter makes it a subgraph of its own that
            # shares the default width's weight buffers (the file grows by
            # under 0.1%, measured in docs/on_device.md).
            for name, function in functions.items():
                archive.add_endpoint(
                    name,
                    function,
                    input_signature=[_input_spec(model, batch_size=1)],
                )
            archive.write_out(str(scratch), verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(scratch))
        if layout == "shared":
            converter.experimental_enable_resource_variables = True
        if quantization is not None:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantization == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if quantization == "int8":
            converter.target_spec.supported_ops = [
                tf.lite.OpsSet.TFLITE_BUILTINS_INT8
            ]
            # ExportArchive also writes the first endpoint as
            # `serving_default`, a subgraph of its own: uncalibrated, it
            # would stay float32 (a whole float copy of that width).
            converter.representative_dataset = _per_signature_samples(
                list(dict.fromkeys(["serving_default", *signatures])),
                calibration,
            )
        flatbuffer = converter.convert()
        _files.remove(scratch)
        if path.exists() and not overwrite:
            raise FileExistsError(
                f"{path} appeared during the export; it is left as it is. "
                "Pass overwrite=True to replace it."
            )
        _files.atomic_write_bytes(path, flatbuffer)
        written = True
    finally:
        _files.remove(scratch)
        if not written:
            _files.remove_empty(created)
    return path


def _calibration_images(model, quantization, representative_dataset):
    """The representative images of an int8 export, one array of shape
    `(n, *input shape)`, checked; `None` for other quantizations."""
    if quantization != "int8":
        if representative_dataset is not None:
            raise ValueError(
                "`representative_dataset` calibrates quantization='int8' "
                f"only. Received: quantization={quantization!r}"
            )
        return None
    expected = tuple(model.input.shape[1:])
    if representative_dataset is None:
        raise ValueError(
            "quantization='int8' needs `representative_dataset`: float "
            f"images of shape (n,) + {expected}, preprocessed as the model "
            "expects (a few hundred training images), to calibrate every "
            "width's activation ranges. Received: representative_dataset="
            "None"
        )
    if isinstance(representative_dataset, (list, tuple)):
        parts = list(representative_dataset)
    else:
        parts = [representative_dataset]
    arrays = []
    for part in parts:
        array = np.asarray(part)
        if array.dtype.kind != "f":
            raise ValueError(
                "`representative_dataset` must hold float images, "
                "preprocessed as the model expects. Received an array of "
                f"dtype {array.dtype}"
            )
        if array.shape[1:] != expected or array.ndim != len(expected) + 1:
            raise ValueError(
                "`representative_dataset` must hold images of shape (n,) + "
                f"{expected}. Received an array of shape {array.shape}"
            )
        arrays.append(array.astype("float32"))
    images = np.concatenate(arrays) if arrays else np.zeros((0,) + expected)
    if not len(images):
        raise ValueError(
            "`representative_dataset` holds no image. Received: "
            f"representative_dataset={representative_dataset!r}"
        )
    if not np.isfinite(images).all():
        raise ValueError(
            "`representative_dataset` holds NaN or infinite values."
        )
    return images


def _per_signature_samples(names, images):
    """The converter's representative dataset: every image, one at a time,
    for every signature (a `(signature, inputs)` pair each), so each width
    is calibrated on its own activations."""

    def samples():
        for name in names:
            for image in images:
                yield name, {INPUT_NAME: image[None]}

    return samples


def _write_shared_saved_model(model, functions, directory):
    """A SavedModel whose signatures read the model's variables.

    The converter freezes every variable that no function assigns into a
    constant, and then folds each width's slices into constants of their
    own. A signature that assigns every weight its own value keeps them
    variables: LiteRT then stores each once and slices it at run time.
    """
    module = tf.Module()
    module.weights = [weight.value for weight in model.weights]
    spec = _input_spec(model, batch_size=1)
    signatures = {}
    for name, function in functions.items():
        traced = tf.function(_named_output(function), input_signature=[spec])
        setattr(module, f"_{name}", traced)
        signatures[name] = traced.get_concrete_function()
    if "serving_default" not in signatures:
        signatures["serving_default"] = next(iter(signatures.values()))

    @tf.function(input_signature=[])
    def keep_weights_as_variables():
        for weight in module.weights:
            weight.assign(weight)
        return {"done": tf.constant(True)}

    module.keep_weights_as_variables = keep_weights_as_variables
    signatures[KEEP_VARIABLES_SIGNATURE] = (
        keep_weights_as_variables.get_concrete_function()
    )
    tf.saved_model.save(module, str(directory), signatures=signatures)


def _named_output(function):
    def serve(images):
        return {"output_0": function(images)}

    return serve


def _tflite_signatures(model, width, widths):
    """`{signature name: width}` of a TFLite export, the default first."""
    if widths is None:
        width = model.width if width is None else width
        (width,) = _check_widths(model, [width])
        return {"serving_default": width}
    if width is not None:
        raise ValueError(
            "Pass `width` (a single-width file) or `widths` (one file with "
            f"a signature per width), not both. Received: width={width!r}, "
            f"widths={widths!r}"
        )
    if isinstance(widths, str):
        if widths != "all":
            raise ValueError(
                "`widths` must be a list of widths or 'all'. Received: "
                f"widths={widths!r}"
            )
        widths = model.widths
    widths = _check_widths(model, widths)
    default = model.width if model.width in widths else max(widths)
    ordered = [default] + [w for w in widths if w != default]
    return {signature_name(w): w for w in ordered}


# Publishing to TF Serving ----------------------------------------------------


def _publish_new(base_dir, staging, name, widths, versions, server_base):
    """Publishes staged versions none of which exists yet.

    The version folders are moved into place first: `models.config` pins
    the versions a server serves, so they change nothing until it is
    replaced, last.
    """
    moved = []
    created = []
    try:
        for served, version in versions.items():
            path = base_dir / served / str(version)
            if path.exists():
                raise FileExistsError(
                    f"{path} appeared during the export; it is left as it "
                    "is. Pass overwrite=True to replace it."
                )
            created += _files.new_folder(path.parent)
            os.replace(staging / served / str(version), path)
            moved.append((path, staging / served / str(version)))
        _write_models_config(base_dir, name, widths, versions, server_base)
    except BaseException:
        for path, source in reversed(moved):
            os.replace(path, source)
        _files.remove_empty(created)
        raise


def _publish(base_dir, staging, name, widths, versions, server_base):
    """Publishes staged versions, replacing those that exist.

    A version folder cannot be replaced atomically, nor several at once, so
    `models.config` is first pointed at the staged copies (the server then
    serves the whole new export), the version folders are replaced by
    hard-linked copies, and `models.config` is pointed back. Killed in
    between, `models.config` still names the staged copies and the next
    export completes the replacement (`_tidy_serving_folder`).
    """
    config = base_dir / MODELS_CONFIG
    old_config = config.read_bytes() if config.exists() else None
    _write_models_config(
        base_dir, name, widths, versions, server_base, staging=staging
    )
    swapped = []
    try:
        for served, version in versions.items():
            swapped.append(_replace_version(staging, base_dir, served, version))
        _write_models_config(base_dir, name, widths, versions, server_base)
    except BaseException:
        for path, retired, created in reversed(swapped):
            if retired is None:
                _files.remove(path)
                _files.remove_empty(created)
            else:
                _files.replace_folder(retired, path)
        if old_config is None:
            config.unlink(missing_ok=True)
        else:
            _files.atomic_write_bytes(config, old_config)
        raise
    for _, retired, _ in swapped:
        if retired is not None:
            _files.remove(retired)


def _replace_version(staging, base_dir, served, version):
    """Puts a hard-linked copy of a staged version in place.

    Returns:
        `(version folder, the old one moved aside or None, folders made)`.
    """
    path = base_dir / served / str(version)
    created = _files.new_folder(path.parent)
    copy = _files.hidden_sibling(path, "partial")
    try:
        _files.link_tree(staging / served / str(version), copy)
        retired = None
        if path.exists():
            retired = _files.hidden_sibling(path, "old")
            os.replace(path, retired)
        try:
            os.replace(copy, path)
        except BaseException:
            if retired is not None:
                os.replace(retired, path)
            raise
    finally:
        _files.remove(copy)
    return path, retired, created


def _write_models_config(
    base_dir, name, widths, versions, server_base, staging=None
):
    """Writes `models.config` listing every served width under `base_dir`.

    The widths in `versions` (`{served name: version}`) are pinned to
    those versions, at their staged copies if `staging` is given. Every
    other `<name>_w*` width keeps the version the current `models.config`
    pins, or else its highest version folder, so exporting some widths
    later keeps the others served. `server_base` is joined with `/`: it is
    a path on the server (often a container), not necessarily here.
    """
    config = base_dir / MODELS_CONFIG
    pinned = pinned_versions(config.read_text()) if config.exists() else {}
    entries = []
    for width in sorted(widths):
        served = served_model_name(name, width)
        base_path = posixpath.join(server_base, served)
        if served in versions:
            version = versions[served]
            if staging is not None:
                base_path = posixpath.join(server_base, staging.name, served)
        else:
            version = pinned.get(served)
            if (
                version is None
                or not (base_dir / served / str(version)).is_dir()
            ):
                version = _highest_version(base_dir / served)
            if version is None:
                continue
        entries.append((served, base_path, version))
    text = format_models_config(entries)
    _files.atomic_write_bytes(config, text.encode())


def _highest_version(folder):
    """The highest numeric version folder TF Serving would load, or None."""
    if not folder.is_dir():
        return None
    versions = [
        int(child.name)
        for child in folder.iterdir()
        if child.name.isascii() and child.name.isdigit() and child.is_dir()
    ]
    return max(versions, default=None)


def _referenced(base_dir, staging):
    config = base_dir / MODELS_CONFIG
    return config.exists() and staging.name in config.read_text()


def _tidy_serving_folder(base_dir, name):
    """Completes or removes what killed exports left in `base_dir`.

    A publish folder that `models.config` still names is being served: its
    versions are copied into place (completing the killed replacement) and
    it is kept until `models.config` stops naming it. Hidden leftovers of
    ended processes are removed.
    """
    if not base_dir.is_dir():
        return
    referenced = [
        child
        for child in sorted(base_dir.iterdir())
        if child.is_dir()
        and (_files.parse_leftover(child) or (None, None))[1] == "publish"
        and _referenced(base_dir, child)
    ]
    for staging in referenced:
        for model_folder in sorted(staging.iterdir()):
            for version in sorted(model_folder.iterdir()):
                if not version.name.isdigit():
                    continue
                _, retired, _ = _replace_version(
                    staging, base_dir, model_folder.name, int(version.name)
                )
                if retired is not None:
                    _files.remove(retired)
    _files.remove_leftovers(base_dir, keep=referenced)
    for child in base_dir.iterdir():
        if child.is_dir() and child.name.startswith(f"{name}_w"):
            _files.remove_leftovers(child)


def _tidy_beside(path):
    """Restores or removes what killed exports to `path` left beside it."""
    if path.parent.is_dir():
        _files.restore_retired(path)
        _files.remove_leftovers(path.parent, targets={path.name})


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


def _server_base(base_dir, server_base_dir):
    if server_base_dir is None:
        return str(base_dir.resolve())
    if isinstance(server_base_dir, os.PathLike):
        server_base_dir = os.fspath(server_base_dir)
    if (
        not isinstance(server_base_dir, str)
        or not server_base_dir
        or "\0" in server_base_dir
    ):
        raise ValueError(
            "`server_base_dir` must be a non-empty path without NUL "
            f"characters. Received: server_base_dir={server_base_dir!r}"
        )
    return server_base_dir


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
    # Any width the model runs at: a listed one, or one of its range.
    checked = [model._active_width(w).width for w in widths]
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
