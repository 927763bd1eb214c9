"""Load reference (official PyTorch) slimmable checkpoints into models.

This is the one way reference weights come in. The caller gives a *key
map*, which names, for every Keras layer with weights, the reference module
prefix its weights come from. A slimmable layer says what each of its
weights is (`SlimmableLayer.checkpoint_weights`); Keras's `Conv2D`,
`DepthwiseConv2D`, `Dense` and `BatchNormalization` are described here.
Each kind of weight has its reference key and layout:

- `conv_kernel`: `<p>.weight` `(O, I, kh, kw)` -> kernel `(kh, kw, I, O)`;
- `depthwise_kernel`: `<p>.weight` `(C, 1, kh, kw)` -> `(kh, kw, C, 1)`;
- `dense_kernel`: `<p>.weight` `(O, I)` -> `(I, O)`;
- `bias`: `<p>.bias`;
- a batch norm's `gamma`, `beta`, `moving_mean`, `moving_variance`:
  `<p>.{weight, bias, running_mean, running_var}`, or, for the private
  batch norm of width index `i` (`SwitchableBatchNormalization`),
  `<p>.bn.<i>.{...}`.

A key map may give a layer a LIST of `g` prefixes: the layer is then `g`
reference modules side by side on the output channels (ShuffleNet's group
convs): each module's tensors are converted as above and concatenated on
the output-channel axis (for a switchable batch norm, per width).
`num_batches_tracked` entries are ignored.

The key maps of the zoo's architectures live with them
(`keras_slimmable.zoo.registry.Architecture.key_map`), and
`keras_slimmable.load_reference_checkpoint(model, path)` finds a zoo
model's by its name; this module knows no architecture and imports nothing
of the zoo.
"""

import os
from collections.abc import Mapping

import keras
import numpy as np

from keras_slimmable.convert.torch_checkpoint import load_state_dict
from keras_slimmable.layers import CheckpointWeight
from keras_slimmable.layers import SlimmableLayer

__all__ = ["CheckpointMismatchError", "load_reference_checkpoint"]

_IGNORED_SUFFIX = ".num_batches_tracked"
# PyTorch batch-norm tensor name -> Keras BatchNormalization attribute.
_BATCH_NORM_TENSORS = (
    ("weight", "gamma"),
    ("bias", "beta"),
    ("running_mean", "moving_mean"),
    ("running_var", "moving_variance"),
)


# The checkpoint dtypes that may go into weights; anything else (int64,
# bool, uint8, complex, float8) is refused rather than cast.
_FLOAT_DTYPES = ("float16", "bfloat16", "float32", "float64")
# Keys of each kind an error message shows; the error keeps them all.
_EXAMPLES = 5


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model: keys missing, unexpected, of the
    wrong shape or of a dtype that cannot go into a weight.

    Its message counts each kind and shows a few keys of each; all of them
    are kept as attributes (`missing`, `unexpected`, `mismatched` and
    `wrong_dtype`, sorted lists of keys), and `details` lists them all with
    their shapes and dtypes.
    """

    def __init__(
        self,
        message,
        missing=(),
        unexpected=(),
        mismatched=(),
        wrong_dtype=(),
        details=None,
    ):
        super().__init__(message)
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)
        self.wrong_dtype = list(wrong_dtype)
        self.details = message if details is None else details


class _Slot:
    """One model variable and the checkpoint tensors that make its value.

    `keys` holds one key per module prefix; their tensors, each converted
    by `transform`, are concatenated on `axis` (of the Keras layout).
    """

    def __init__(self, variable, keys, transform, axis, variance=False):
        self.variable = variable
        self.keys = keys
        self.transform = transform
        self.axis = axis
        self.variance = variance  # a batch norm's running variance

    def expected_shapes(self):
        """The checkpoint shape each key must have (PyTorch layout)."""
        shape = list(self.variable.shape)
        parts = len(self.keys)
        if shape[self.axis] % parts:
            raise ValueError(
                f"Variable '{self.variable.path}' has {shape[self.axis]} "
                f"channels, which {parts} reference modules cannot share "
                "equally: the key map is wrong for this model."
            )
        shape[self.axis] //= parts
        torch_shape = _to_torch_shape(tuple(shape), self.transform)
        return {key: torch_shape for key in self.keys}

    def value(self, state, bad_values):
        """The variable's new value; keys whose values are not finite (in
        the variable's dtype) or negative variances go to `bad_values`."""
        dtype = keras.backend.standardize_dtype(self.variable.dtype)
        parts = []
        for key in self.keys:
            with np.errstate(over="ignore", invalid="ignore"):
                part = np.asarray(state[key]).astype(dtype)
            if not np.isfinite(part).all():
                bad_values.append((key, "has NaN or infinite values"))
            elif self.variance and (part < 0).any():
                bad_values.append(
                    (key, f"is a variance with negative values ({part.min()})")
                )
            parts.append(self.transform(part))
        if len(parts) == 1:
            return np.ascontiguousarray(parts[0])
        return np.concatenate(parts, self.axis)


def _conv_kernel(weight):
    return np.transpose(weight, (2, 3, 1, 0))


def _depthwise_kernel(weight):
    return np.transpose(weight, (2, 3, 0, 1))


def _dense_kernel(weight):
    return np.transpose(weight, (1, 0))


def _identity(value):
    return value


_INVERSE_PERMUTATIONS = {
    _conv_kernel: (3, 2, 0, 1),
    _depthwise_kernel: (2, 3, 0, 1),
    _dense_kernel: (1, 0),
}


def _to_torch_shape(keras_shape, transform):
    permutation = _INVERSE_PERMUTATIONS.get(transform)
    if permutation is None:
        return keras_shape
    return tuple(keras_shape[i] for i in permutation)


def _prefixes(value):
    return [value] if isinstance(value, str) else list(value)


# Kind of weight -> (reference tensor name, Keras-from-PyTorch layout
# transform, the output-channel axis in Keras's layout).
_WEIGHT_KINDS = {
    "conv_kernel": ("weight", _conv_kernel, 3),
    "depthwise_kernel": ("weight", _depthwise_kernel, 2),
    "dense_kernel": ("weight", _dense_kernel, 1),
    "bias": ("bias", _identity, 0),
}
_WEIGHT_KINDS.update(
    (keras_name, (torch_name, _identity, 0))
    for torch_name, keras_name in _BATCH_NORM_TENSORS
)


def _plain_checkpoint_weights(layer):
    """`CheckpointWeight`s of the Keras layers a zoo model may hold."""
    if isinstance(layer, keras.layers.BatchNormalization):
        return [
            CheckpointWeight(getattr(layer, kind), kind, None)
            for _, kind in _BATCH_NORM_TENSORS
            if getattr(layer, kind, None) is not None
        ]
    if isinstance(layer, keras.layers.DepthwiseConv2D):
        kernel = (layer.depthwise_kernel, "depthwise_kernel")
    elif isinstance(layer, keras.layers.Conv2D):
        kernel = (layer.kernel, "conv_kernel")
    elif isinstance(layer, keras.layers.Dense):
        kernel = (layer.kernel, "dense_kernel")
    else:
        raise ValueError(
            f"Layer '{layer.name}' of type {type(layer).__name__} has "
            "weights, but reference checkpoints can only be loaded into "
            "slimmable layers and Keras's Conv2D, DepthwiseConv2D, Dense and "
            "BatchNormalization."
        )
    weights = [CheckpointWeight(kernel[0], kernel[1], None)]
    if getattr(layer, "bias", None) is not None:
        weights.append(CheckpointWeight(layer.bias, "bias", None))
    return weights


def _layer_slots(layer, mapped):
    """The slots of one layer: one per weight, its keys from the kind of
    weight and, for a width's private weight, the width index."""
    prefixes = _prefixes(mapped)
    if isinstance(layer, SlimmableLayer):
        weights = layer.checkpoint_weights()
    else:
        weights = _plain_checkpoint_weights(layer)
    slots = []
    for weight in weights:
        torch_name, transform, axis = _WEIGHT_KINDS[weight.kind]
        if weight.width_index is None:
            keys = [f"{p}.{torch_name}" for p in prefixes]
        else:
            keys = [
                f"{p}.bn.{weight.width_index}.{torch_name}" for p in prefixes
            ]
        variance = weight.kind == "moving_variance"
        slots.append(_Slot(weight.variable, keys, transform, axis, variance))
    return slots


def _format_shape(shape):
    return "(" + ", ".join(str(d) for d in shape) + ")"


def _model_slots(model, key_map):
    """The slots of every layer with weights, in the model's order."""
    slots = []
    unmapped = []
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in key_map:
            unmapped.append(layer.name)
            continue
        slots.extend(_layer_slots(layer, key_map[layer.name]))
    if unmapped:
        raise ValueError(
            f"The key map has no entry for the layers {sorted(unmapped)} of "
            f"model '{model.name}': is `architecture` right?"
        )
    return slots


def _compare(expected, found):
    """Differences between the shapes the model expects and `found`
    (`{key: (shape, dtype)}`): four lists, all empty when it fits."""
    present = {k for k in found if not k.endswith(_IGNORED_SUFFIX)}
    common = sorted(set(expected) & present)
    missing = [(k, expected[k]) for k in sorted(set(expected) - present)]
    unexpected = [(k, found[k][0]) for k in sorted(present - set(expected))]
    mismatched = [
        (k, expected[k], tuple(found[k][0]))
        for k in common
        if tuple(found[k][0]) != expected[k]
    ]
    wrong_dtype = [
        (k, np.dtype(found[k][1]).name)
        for k in common
        if np.dtype(found[k][1]).name not in _FLOAT_DTYPES
    ]
    return missing, unexpected, mismatched, wrong_dtype


def _listing(title, lines, limit):
    shown = lines if limit is None else lines[:limit]
    text = [f"{title} ({len(lines)}):", *(f"  {line}" for line in shown)]
    if len(shown) < len(lines):
        text.append(f"  ... and {len(lines) - len(shown)} more")
    return text


def _mismatch_error(name, model, architecture, expected, differences):
    missing, unexpected, mismatched, wrong_dtype = differences
    header = [
        f"The checkpoint '{name}' does not match model '{model.name}' "
        f"(architecture '{architecture}', widths "
        f"{getattr(model, 'widths', None)}). Nothing was loaded."
    ]
    fitting = len(expected) - len(missing) - len(mismatched)
    if fitting < len(expected) / 2:
        header.append(
            f"Only {fitting} of the model's {len(expected)} weight tensors "
            "are in the checkpoint with their shape: is it a checkpoint of "
            "another architecture, or of other widths?"
        )
    kinds = [
        (
            "Missing keys",
            [f"{k}: expected {_format_shape(s)}" for k, s in missing],
        ),
        (
            "Unexpected keys",
            [f"{k}: found {_format_shape(s)}" for k, s in unexpected],
        ),
        (
            "Shape mismatches",
            [
                f"{k}: expected {_format_shape(e)}, found {_format_shape(f)}"
                for k, e, f in mismatched
            ],
        ),
        (
            "Tensors that are not floating point",
            [
                f"{k}: {d}, expected one of {', '.join(_FLOAT_DTYPES)}"
                for k, d in wrong_dtype
            ],
        ),
    ]

    def text(limit):
        lines = list(header)
        for title, entries in kinds:
            if entries:
                lines += _listing(title, entries, limit)
        return "\n".join(lines)

    summary = text(_EXAMPLES)
    details = text(None)
    message = summary
    if summary != details:
        message += (
            "\nThe error's `missing`, `unexpected`, `mismatched` and "
            "`wrong_dtype` attributes hold every key; `details` lists them."
        )
    error = CheckpointMismatchError(
        message,
        missing=[k for k, _ in missing],
        unexpected=[k for k, _ in unexpected],
        mismatched=[k for k, _, _ in mismatched],
        wrong_dtype=[k for k, _ in wrong_dtype],
        details=details,
    )
    error.summary = summary
    return error


def _bad_values_error(name, model, bad_values):
    lines = [
        f"The checkpoint '{name}' has values that cannot be loaded into "
        f"model '{model.name}'. Nothing was loaded."
    ]
    lines += _listing(
        "Bad tensors", [f"{k}: {what}" for k, what in bad_values], _EXAMPLES
    )
    return ValueError("\n".join(lines))


def load_reference_checkpoint(model, path, key_map=None, architecture=None):
    """Loads a reference PyTorch checkpoint into a model, by a key map.

    The checkpoint is read without PyTorch and without running any code
    from the file. Every key of the checkpoint must find its variable and
    every variable its key, with the right shape and a floating-point
    dtype; otherwise nothing is loaded and one error counts all the
    differences. Shapes and dtypes are checked before any tensor data is
    read, so a checkpoint that does not fit costs no memory. NaN or
    infinite values and negative batch-norm variances are refused too.
    The load is atomic: whatever fails, the model is left as it was.

    For a zoo model, `keras_slimmable.load_reference_checkpoint(model,
    path)` (`keras_slimmable.zoo.load_reference_checkpoint`) finds the key
    map by the model's name.

    Args:
        model: a Keras model (e.g. built by a zoo builder, with the widths
            and classes of the checkpoint).
        path: the checkpoint file (`.pt`, `.pth`, `.pth.tar`, ...), or a
            state dict already read: a mapping from reference keys (with
            or without `module.`) to NumPy arrays in PyTorch layout.
        key_map: the key map: a mapping from the name of every layer of
            `model` with weights to the prefix of the reference module it
            comes from (without `module.`), or to a list of `g` prefixes
            for a layer made of `g` reference modules side by side on the
            output channels; or a callable `key_map(model)` returning one.
        architecture: what error messages call the checkpoint's
            architecture. Defaults to `model.name`.

    Raises:
        CheckpointMismatchError: keys missing, unexpected, of the wrong
            shape or of a dtype other than float16, bfloat16, float32 or
            float64 (a `ValueError`; a few are shown, all are kept on it).
        keras_slimmable.convert.torch_checkpoint.CheckpointFormatError: the
            file is truncated, corrupt or not a checkpoint.
        keras_slimmable.convert.torch_checkpoint.UnsafeCheckpointError:
            the file asks to run code.
        ValueError: NaN or infinite values, negative running variances,
            no key map, or a model the checkpoint cannot go into (e.g.
            shared batch norms).

    Example:

    ```python
    model = keras_slimmable.zoo.s_mobilenet_v1()
    keras_slimmable.convert.reference.load_reference_checkpoint(
        model,
        "s_mobilenet_v1_0.25_0.5_0.75_1.0.pt",
        key_map=keras_slimmable.zoo.get_architecture(
            "s_mobilenet_v1"
        ).key_map,
    )
    ```
    """
    architecture = model.name if architecture is None else architecture
    if callable(key_map):
        key_map = key_map(model)
    if not isinstance(key_map, Mapping):
        raise ValueError(
            "`key_map` must be a mapping from layer names to reference "
            "module prefixes, or a callable returning one; for a zoo model, "
            "`keras_slimmable.load_reference_checkpoint(model, path)` finds "
            f"it by the model's name. Received: key_map={key_map!r}"
        )
    slots = _model_slots(model, key_map)
    expected = {}
    for slot in slots:
        expected.update(slot.expected_shapes())
    name = "<state dict>" if isinstance(path, Mapping) else os.fspath(path)

    def check(found):
        differences = _compare(expected, found)
        if any(differences):
            raise _mismatch_error(
                name, model, architecture, expected, differences
            )

    if isinstance(path, Mapping):
        state = {
            key.removeprefix("module."): np.asarray(value)
            for key, value in path.items()
        }
        check({key: (value.shape, value.dtype) for key, value in state.items()})
    else:
        state = load_state_dict(path, check=check)

    bad_values = []
    assignments = [
        (slot.variable, slot.value(state, bad_values)) for slot in slots
    ]
    if bad_values:
        raise _bad_values_error(name, model, bad_values)
    del state

    previous = [
        (variable, keras.ops.convert_to_numpy(variable).copy())
        for variable, _ in assignments
    ]
    done = 0
    try:
        for variable, value in assignments:
            variable.assign(value)
            done += 1
    except BaseException:
        for variable, value in previous[: done + 1]:
            variable.assign(value)
        raise
