r"""Converts a reference slimmable checkpoint into Keras weights.

    python -m keras_slimmable.convert --model s_mobilenet_v1 \
        s_mobilenet_v1_0.25_0.5_0.75_1.0.pt

builds the zoo model `--model` (its default widths, 1000 classes), loads the
reference PyTorch checkpoint into it with the architecture's key map
(checking every key and shape), and writes `<model>_imagenet.weights.h5`
plus its `.sha256` into the Keras cache (`$KERAS_HOME/models/
keras_slimmable/`), where `keras_slimmable.zoo.<model>(weights="imagenet")`
finds it. `--output` writes elsewhere (a `.weights.h5` path or a folder).
Both files are written to a temporary name and renamed, so a crash never
leaves a half file. It prints the weights' path and sha256.

The command names architectures, so it lives beside the zoo;
`python -m keras_slimmable.zoo.convert` is the same command, and
`keras_slimmable.convert`, which applies a key map it is given, imports
nothing of the zoo.

`--help` answers without importing TensorFlow. An error (an unknown model,
a checkpoint of another architecture) prints one message and exits with
status 2; for a checkpoint that does not fit, the message counts the
differences and shows a few keys, and `--verbose` lists every key.
"""

import os
import sys
import tempfile

from absl import app
from absl import flags

from keras_slimmable import _cli

PROGRAM = "python -m keras_slimmable.convert"


def _define_flags():
    # Defined when the command runs, not on import: other command lines
    # (examples/train.py) have a `--model` flag of their own.
    flags.DEFINE_string(
        "model", None, "The zoo model to build, e.g. s_mobilenet_v1."
    )
    flags.DEFINE_string(
        "output",
        None,
        "Where to write the weights: a '.weights.h5' path or a folder. "
        "Defaults to the Keras cache, where weights='imagenet' looks.",
    )
    flags.mark_flag_as_required("model")


def _atomic_write(path, write):
    """Calls `write(temporary_path)`, then renames it to `path`."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    # Keras wants the `.weights.h5` suffix on the file it writes.
    suffix = ".weights.h5" if path.endswith(".weights.h5") else ".tmp"
    handle, temporary = tempfile.mkstemp(
        prefix="." + os.path.basename(path) + ".", suffix=suffix, dir=folder
    )
    os.close(handle)
    try:
        write(temporary)
        os.chmod(temporary, 0o644)  # mkstemp creates files readable by us only
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def convert(model_name, checkpoint, output=None):
    """Converts `checkpoint` for zoo model `model_name`.

    Returns:
        `(path, sha256)` of the written `.weights.h5` file.
    """
    from keras_slimmable.convert.reference import load_reference_checkpoint
    from keras_slimmable.zoo import registry
    from keras_slimmable.zoo import weights as zoo_weights

    architecture = registry.get_architecture(model_name)
    if architecture.key_map is None:
        raise ValueError(
            f"The zoo model {model_name!r} has no reference key map: "
            "reference checkpoints do not load into it."
        )

    file_name = zoo_weights.weights_file_name(model_name)
    if output is None:
        path = os.path.join(zoo_weights.cache_dir(), file_name)
    elif os.path.isdir(output) or output.endswith(os.sep):
        path = os.path.join(output, file_name)
    elif output.endswith(".weights.h5"):
        path = output
    else:
        raise ValueError(
            "`--output` must be a folder or a path ending in '.weights.h5'. "
            f"Received: --output={output}"
        )

    model = architecture.builder(**architecture.reference_arguments)
    load_reference_checkpoint(
        model, checkpoint, key_map=architecture.key_map, architecture=model_name
    )

    _atomic_write(path, model.save_weights)
    digest = zoo_weights.file_sha256(path)

    def write_checksum(temporary):
        with open(temporary, "w") as f:
            f.write(f"{digest}  {os.path.basename(path)}\n")

    _atomic_write(path + ".sha256", write_checksum)
    return path, digest


def main(argv):
    if len(argv) != 2:
        raise app.UsageError(
            f"Pass exactly one checkpoint path: {PROGRAM} --model NAME "
            "CHECKPOINT"
        )
    checkpoint = argv[1]
    if not os.path.isfile(checkpoint):
        raise _cli.CommandLineError(
            f"The checkpoint is not a file. Received: {checkpoint}"
        )
    from keras_slimmable.convert.reference import CheckpointMismatchError

    try:
        path, digest = convert(
            flags.FLAGS.model, checkpoint, flags.FLAGS.output
        )
    except CheckpointMismatchError as error:
        if flags.FLAGS.verbose:
            print(error.details, file=sys.stderr)
            raise
        message = error.summary
        if error.details != error.summary:
            message += "\n(--verbose lists every key)"
        raise _cli.CommandLineError(message) from None
    print(path)
    print(f"sha256 {digest}")
    return 0


def run(program=PROGRAM):
    """Defines the flags and runs the command (`_cli.run`)."""
    _define_flags()
    _cli.run(main, program)


if __name__ == "__main__":
    run("python -m keras_slimmable.zoo.convert")
