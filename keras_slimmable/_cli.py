"""What the package's command lines share: a quiet start and one-line errors.

TensorFlow prints its start-up banner (twice) and, on a machine without a
GPU, a `failed call to cuInit` error, before its own logging is configured,
so `TF_CPP_MIN_LOG_LEVEL` alone does not silence them. `run` imports
TensorFlow and Keras with standard error redirected to a scratch file
(replayed if the import fails), after the flags are parsed, so `--help`
answers without importing TensorFlow at all. `--verbose` shows everything,
tracebacks included.

    import os
    os.environ["KERAS_SLIMMABLE_DEFER_IMPORTS"] = "1"  # in scripts, not -m
    from keras_slimmable import _cli

    def main(argv):
        ...
        raise _cli.CommandLineError("--out exists; pass --overwrite")

    if __name__ == "__main__":
        _cli.run(main, "python -m keras_slimmable.export")
"""

import contextlib
import os
import sys
import tempfile

from absl import app
from absl import flags

_VERBOSE = flags.DEFINE_bool(
    "verbose",
    False,
    "Show TensorFlow's log messages and full tracebacks of errors.",
)


class CommandLineError(Exception):
    """An error a command line reports as one message, without traceback."""


# Errors a command line reports in one message: the user's input was wrong.
# Anything else is a bug and keeps its traceback.
_USER_ERRORS = (CommandLineError, ValueError, FileExistsError, OSError)


def _verbose_requested():
    # Flags are parsed after TensorFlow could already have logged, so this
    # looks at the command line itself.
    return any(
        arg in ("--verbose", "--verbose=true", "--verbose=True", "--verbose=1")
        for arg in sys.argv[1:]
    )


def import_tensorflow_quietly(quiet=True):
    """Imports TensorFlow, Keras and the package's layers and model, with
    TensorFlow's start-up messages hidden unless `quiet=False`.

    A script imports the package with `KERAS_SLIMMABLE_DEFER_IMPORTS=1` (see
    `keras_slimmable/__init__.py`), then calls this.
    """
    os.environ.pop("KERAS_SLIMMABLE_DEFER_IMPORTS", None)
    import keras_slimmable

    if not quiet or ("tensorflow" in sys.modules and "keras" in sys.modules):
        keras_slimmable._import_serializables()
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with quiet_stderr():
        import keras  # noqa: F401
        import tensorflow  # noqa: F401

        keras_slimmable._import_serializables()
    import absl.logging

    absl.logging.set_verbosity(absl.logging.WARNING)
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")


@contextlib.contextmanager
def quiet_stderr(quiet=True):
    """Hides what C++ and absl log to standard error inside the block (the
    TFLite converter's MLIR passes print about 14 lines, the LiteRT
    interpreter one per delegate, out of reach of Python's logging),
    replaying it if the block fails."""
    if not quiet:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as scratch:
        os.dup2(scratch.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            scratch.seek(0)
            sys.stderr.write(scratch.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def run(main, program):
    """Runs an absl `main` quietly, reporting user errors in one message.

    Exits with status 2 after printing `<program>: error: <message>` for a
    `CommandLineError`, `ValueError` or `OSError` (unless `--verbose`).
    `program` names the command in that message, e.g.
    `"python -m keras_slimmable.export"`.
    """
    verbose = _verbose_requested()
    if not verbose:
        # Before anything imports TensorFlow; a user's own setting stands.
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    def quiet_main(argv):
        import_tensorflow_quietly(quiet=not _VERBOSE.value)
        try:
            return main(argv)
        except _USER_ERRORS as error:
            if _VERBOSE.value:
                raise
            message = str(error) or type(error).__name__
            print(
                f"{program}: error: {message}\n"
                "(--verbose shows the full traceback)",
                file=sys.stderr,
            )
            sys.exit(2)

    app.run(quiet_main)
