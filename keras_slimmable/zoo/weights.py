"""The `weights=` argument of the zoo's builders, and the weights cache.

A builder accepts:

- `None`: random initialization;
- a path ending in `.weights.h5`: weights saved by this package
  (`model.save_weights`), loaded with `model.load_weights`;
- a path to any other existing file: a reference PyTorch checkpoint, loaded
  with the architecture's key map (`load_reference_checkpoint`);
- `"imagenet"`: the reference ImageNet weights. Their licence (CC BY-NC
  4.0) does not allow redistributing them, so they are not downloaded:
  convert the published checkpoint once with
  `python -m keras_slimmable.convert --model NAME CHECKPOINT`, which writes
  `<name>_imagenet.weights.h5` and its `.sha256` into the Keras cache
  (`$KERAS_HOME/models/keras_slimmable/`, `~/.keras` by default).

Each zoo module describes its reference weights in a `MANIFEST` dict, the
`weights` of its `keras_slimmable.zoo.registry.Architecture`:
`architecture`, `reference_model_id`, `reference_file`, `reference_url`,
`license`, `widths`, `classes`, `top1_error` (published, per width) and
`keras_file` (the converted weights' file name in the cache).

Headless models (`include_top=False`) take the weights of a full model:
the builder builds one with 1000 classes, loads it and copies every layer
the headless model has.
"""

import hashlib
import os

CACHE_SUBDIR = os.path.join("models", "keras_slimmable")
REFERENCE_REPOSITORY = "https://github.com/JiahuiYu/slimmable_networks"
_ACCEPTED_FORMS = (
    "None (random initialization), 'imagenet' (the reference weights "
    "converted into the Keras cache), the path to a '.weights.h5' file of "
    "this package, or the path to an existing reference PyTorch checkpoint "
    "('.pt', '.pth', '.pth.tar', '.tar', ...)"
)


class WeightsNotFoundError(FileNotFoundError, ValueError):
    """The converted ImageNet weights are not in the Keras cache."""


def weights_file_name(architecture):
    """The cache file name of an architecture's converted ImageNet weights."""
    return f"{architecture}_imagenet.weights.h5"


def cache_dir():
    """The folder of converted weights: `$KERAS_HOME/models/keras_slimmable`.

    `KERAS_HOME` is read at call time (Keras itself reads it at import);
    without it, Keras's home (`~/.keras`) is used.
    """
    home = os.environ.get("KERAS_HOME")
    if not home:
        # Private Keras API (no public reader of Keras's home folder, which
        # `keras.utils.get_file` caches in); checked by
        # tests/test_keras_private_api.py.
        from keras.src.backend.config import keras_home

        home = keras_home()
    return os.path.join(os.path.expanduser(home), CACHE_SUBDIR)


def file_sha256(path):
    """The hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def conversion_instructions(manifest):
    """How to obtain and convert an architecture's reference checkpoint."""
    architecture = manifest["architecture"]
    return (
        f"Download the reference checkpoint '{manifest['reference_file']}' "
        f"(model ID {manifest['reference_model_id']}) from the released "
        f"models of the official slimmable networks repository, "
        f"{REFERENCE_REPOSITORY} (Slimmable Model Zoo; "
        f"{manifest['reference_url']}; licence {manifest['license']}: "
        "for non-commercial use, which is why this package does not "
        "download it), unzip it if needed, then convert it once with:\n\n"
        f"    python -m keras_slimmable.convert --model {architecture} "
        f"{manifest['reference_file']}\n\n"
        "which writes the Keras weights and their sha256 into "
        f"{cache_dir()}."
    )


def check_weights_argument(
    weights, manifest, widths, include_top, classes, shared_batch_norm
):
    """Validates a builder's `weights` argument before the model is built.

    Raises:
        ValueError: naming the bad value and the accepted forms, or the
            argument that does not fit `weights="imagenet"`.
        WeightsNotFoundError: `weights="imagenet"` and the converted
            weights are not in the cache (or fail their sha256 check).
    """
    if weights is None:
        return
    if isinstance(weights, os.PathLike):
        weights = os.fspath(weights)
    if not isinstance(weights, str):
        raise ValueError(
            f"`weights` must be {_ACCEPTED_FORMS}. "
            f"Received: weights={weights!r}"
        )
    if shared_batch_norm and not weights.endswith(".weights.h5"):
        raise ValueError(
            "Reference weights have one batch norm per width; they cannot be "
            "loaded into the shared-batch-norm baseline. Received: "
            f"weights={weights!r}, shared_batch_norm=True"
        )
    if weights == "imagenet":
        expected = tuple(float(w) for w in manifest["widths"])
        if tuple(widths) != expected:
            raise ValueError(
                "`weights='imagenet'` holds the widths "
                f"{expected}; build the model with those (or widths=None). "
                f"Received: widths={tuple(widths)}"
            )
        if include_top and classes != manifest["classes"]:
            raise ValueError(
                "With `weights='imagenet'` and `include_top=True`, `classes` "
                f"must be {manifest['classes']}. Received: classes={classes!r}"
            )
        # Fail before building the model when the cache cannot serve.
        imagenet_weights_path(manifest)
        return
    if not os.path.isfile(weights):
        raise ValueError(
            f"`weights` must be {_ACCEPTED_FORMS}. "
            f"Received: weights={weights!r}"
            + (" (no such file)" if weights else "")
        )


def imagenet_weights_path(manifest):
    """The verified path of the converted ImageNet weights in the cache.

    Raises:
        WeightsNotFoundError: if they were never converted; the message
            says how to obtain and convert the reference checkpoint.
        ValueError: if the file does not match its recorded sha256.
    """
    path = os.path.join(cache_dir(), manifest["keras_file"])
    checksum_path = path + ".sha256"
    if not os.path.isfile(path) or not os.path.isfile(checksum_path):
        raise WeightsNotFoundError(
            f"No converted ImageNet weights for {manifest['architecture']}: "
            f"'{path}' (with its '.sha256') does not exist. "
            + conversion_instructions(manifest)
        )
    with open(checksum_path) as f:
        fields = f.read().split()
    recorded = fields[0].lower() if fields else ""
    actual = file_sha256(path)
    if actual != recorded:
        raise ValueError(
            f"The converted weights '{path}' do not match their recorded "
            f"sha256 (recorded {recorded or 'nothing'}, found {actual}): the "
            "file is damaged or was changed. Convert the reference "
            "checkpoint again. " + conversion_instructions(manifest)
        )
    return path


def copy_layer_weights(source, target):
    """Copies the weights of every layer of `target` from the same-named
    layer of `source` (checks all shapes before assigning anything)."""
    copy_weights(
        (source.get_layer(layer.name), layer)
        for layer in target.layers
        if layer.weights
    )


def copy_weights(pairs):
    """Copies each `(source layer, destination layer)` pair's weights,
    after checking every pair's shapes, so a mismatch changes nothing."""
    checked = []
    for source, destination in pairs:
        values = source.get_weights()
        expected = [tuple(w.shape) for w in destination.weights]
        found = [tuple(v.shape) for v in values]
        if expected != found:
            raise ValueError(
                f"Layer '{destination.name}': cannot copy weights of shapes "
                f"{found} into weights of shapes {expected}."
            )
        checked.append((destination, values))
    for destination, values in checked:
        destination.set_weights(values)


def load_builder_weights(
    model, weights, manifest, key_map, include_top, build_full_model
):
    """Loads a builder's `weights` argument into the freshly built `model`.

    Args:
        model: the model the builder just built.
        weights: the (validated) `weights` argument.
        manifest: the architecture's weights manifest.
        key_map: the architecture's reference key map, for a reference
            checkpoint.
        include_top: whether `model` has its classifier.
        build_full_model: a callable returning the same model with its
            1000-class classifier and random weights; used when `model` is
            headless and the weights come with a classifier.
    """
    if weights is None:
        return
    weights = os.fspath(weights)
    if weights.endswith(".weights.h5"):
        model.load_weights(weights)
        return
    target = model if include_top else build_full_model()
    if weights == "imagenet":
        target.load_weights(imagenet_weights_path(manifest))
    else:
        from keras_slimmable.convert import reference

        reference.load_reference_checkpoint(
            target,
            weights,
            key_map=key_map,
            architecture=manifest["architecture"],
        )
    if target is not model:
        copy_layer_weights(target, model)


def load_reference_checkpoint(model, path, architecture=None):
    """Loads a reference PyTorch checkpoint into a zoo model.

    The zoo's front to `keras_slimmable.convert.reference.
    load_reference_checkpoint`, which takes the key map itself: here the
    key map is the registered architecture's, found by name. The
    checkpoint is read without PyTorch and without running any code from
    the file; whatever fails, the model is left as it was.

    Args:
        model: a model built by a zoo builder (with the widths and classes
            of the checkpoint).
        path: the checkpoint file (`.pt`, `.pth`, `.pth.tar`, ...), or a
            state dict already read: a mapping from reference keys (with
            or without `module.`) to NumPy arrays in PyTorch layout.
        architecture: the zoo architecture whose key map to use, such as
            `"s_mobilenet_v1"` (`keras_slimmable.zoo.list_models()`).
            Defaults to `model.name`.

    Raises:
        ValueError: an architecture without a key map, and every error of
            `keras_slimmable.convert.reference.load_reference_checkpoint`
            (a checkpoint that does not fit, is damaged or unsafe).

    Example:

    ```python
    model = keras_slimmable.zoo.s_mobilenet_v1()
    keras_slimmable.load_reference_checkpoint(
        model, "s_mobilenet_v1_0.25_0.5_0.75_1.0.pt"
    )
    ```
    """
    from keras_slimmable.convert import reference
    from keras_slimmable.zoo import registry

    architecture = model.name if architecture is None else architecture
    known = [
        name
        for name in registry.list_models()
        if registry.get_architecture(name).key_map is not None
    ]
    if architecture not in known:
        raise ValueError(
            f"No key map for architecture {architecture!r}. Available: "
            f"{known}. Pass `architecture=` when the model has another "
            "name."
        )
    reference.load_reference_checkpoint(
        model,
        path,
        key_map=registry.get_architecture(architecture).key_map,
        architecture=architecture,
    )


__all__ = [
    "WeightsNotFoundError",
    "cache_dir",
    "check_weights_argument",
    "file_sha256",
    "imagenet_weights_path",
    "load_builder_weights",
    "load_reference_checkpoint",
    "weights_file_name",
]
