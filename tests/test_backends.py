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

    model = build_model()
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


_WITHOUT_TENSORFLOW = textwrap.dedent(
    """
    import importlib.abc
    import importlib.machinery
    import sys

    class NoTensorFlow(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        # Importing TensorFlow fails as if it were not installed.
        def find_spec(self, name, path=None, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                return importlib.machinery.ModuleSpec(name, self)
            return None

        def create_module(self, spec):
            raise ModuleNotFoundError(f"No module named {spec.name!r}")

        def exec_module(self, module):
            pass

    sys.meta_path.insert(0, NoTensorFlow())

    import numpy as np
    import keras
    import keras_slimmable as ks
    from keras_slimmable.convert import load_reference_checkpoint

    model = ks.zoo.s_mobilenet_v1(input_shape=(32, 32, 3), classes=10)
    images = np.zeros((2, 32, 32, 3), "float32")
    assert model(images, width=0.5).shape == (2, 10)
    assert ks.profile(model)[0.5]["macs"] > 0
    model.materialize(0.5)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(True))
    model.fit(images, np.zeros(2), verbose=0)
    for name, module in (
        ("data", "keras_slimmable.data"),
        ("export", "keras_slimmable.export"),
    ):
        try:
            if name == "data":
                from keras_slimmable.data import image_folder  # noqa: F401
            else:
                ks.export.export_saved_model
        except ImportError as error:
            assert "keras-slimmable[tensorflow]" in str(error), error
            print(name, "says", str(error).split(" needs")[0])
        else:
            raise AssertionError(f"{module} imported without TensorFlow")
    assert "tensorflow" not in sys.modules
    print("ok without tensorflow on", keras.backend.backend())
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_the_package_works_without_tensorflow(backend):
    # Issue 11: `import keras_slimmable` needed TensorFlow. Only the tf.data
    # pipelines and export do, and they say which extra to install.
    _needs(backend)
    result = _run(backend, ["-c", _WITHOUT_TENSORFLOW])
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"ok without tensorflow on {backend}" in result.stdout
    assert "data says keras_slimmable.data" in result.stdout
    assert "export says keras_slimmable.export" in result.stdout
