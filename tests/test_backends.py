"""The backend-neutral tests on JAX and PyTorch, and weights across backends.

A process runs one Keras backend, chosen when Keras is first imported, so
the other backends run in subprocesses: `tests/backends/` again under
`KERAS_BACKEND=jax` and `torch`, and a model trained on one backend, saved
as `.keras`, loaded on the others.
"""

import importlib.util
import os
import pathlib
import subprocess
import sys
import textwrap

import pytest

TESTS = pathlib.Path(__file__).resolve().parent
REPOSITORY = TESTS.parent
BACKENDS = ("tensorflow", "jax", "torch")


def _needs(backend):
    module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
    if importlib.util.find_spec(module[backend]) is None:
        pytest.skip(
            f"{backend} is not installed (pip install '.[test]' installs it)"
        )


def _run(backend, arguments, timeout=900):
    environment = dict(os.environ, KERAS_BACKEND=backend)
    environment.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    environment["PYTHONPATH"] = os.pathsep.join(
        [str(REPOSITORY), environment.get("PYTHONPATH", "")]
    )
    return subprocess.run(
        [sys.executable, *arguments],
        cwd=REPOSITORY,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_backend_neutral_suite(backend):
    _needs(backend)
    result = _run(
        backend,
        ["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/backends"],
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout


_TRAIN_AND_SAVE = textwrap.dedent(
    """
    import sys
    import keras
    import numpy as np
    sys.path.insert(0, "tests/backends")
    from test_training import LOSS, build_model, data

    model = build_model(seed=3)
    x, y = data(16)
    model.compile(keras.optimizers.SGD(0.1, momentum=0.9), LOSS)
    model.fit(x, y, batch_size=8, epochs=2, verbose=0)
    model.save(sys.argv[1])
    outputs = {
        str(w): keras.ops.convert_to_numpy(model(x, width=w))
        for w in model.widths
    }
    np.savez(sys.argv[2], x=x, **outputs)
    """
)

_LOAD_AND_COMPARE = textwrap.dedent(
    """
    import sys
    import keras
    import numpy as np
    import keras_slimmable

    model = keras.saving.load_model(sys.argv[1])
    expected = np.load(sys.argv[2])
    for width in model.widths:
        outputs = keras.ops.convert_to_numpy(
            model(expected["x"], width=width)
        )
        np.testing.assert_allclose(
            outputs, expected[str(width)], atol=1e-5, err_msg=str(width)
        )
    # The optimizer state came along: training goes on.
    model.fit(expected["x"], np.zeros(len(expected["x"])), verbose=0)
    print("equal at widths", model.widths)
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("source", ["jax", "tensorflow"])
def test_a_keras_file_trained_on_one_backend_loads_on_the_others(
    source, tmp_path
):
    # Issue 11: trained on JAX, saved, loaded on TensorFlow and PyTorch with
    # equal outputs at every width (1e-5), and the reverse.
    for backend in BACKENDS:
        _needs(backend)
    saved = tmp_path / "model.keras"
    outputs = tmp_path / "outputs.npz"
    result = _run(source, ["-c", _TRAIN_AND_SAVE, str(saved), str(outputs)])
    assert result.returncode == 0, result.stderr[-3000:]
    for target in BACKENDS:
        if target == source:
            continue
        result = _run(
            target, ["-c", _LOAD_AND_COMPARE, str(saved), str(outputs)]
        )
        assert result.returncode == 0, (target, result.stderr[-3000:])
        assert "equal at widths (0.5, 1.0)" in result.stdout
