"""Every zoo model on the backend this process runs (`KERAS_BACKEND`).

Written with `keras.ops` only, so the same tests run on every backend: the
TensorFlow suite collects them, and `tests/test_backends.py` runs this
folder again in subprocesses on JAX and on PyTorch. Each architecture is
built at 32x32 pixels (the zoo's minimum input size) for the calls, the
`.keras` round trip, `materialize` and `profile` (counted at 224 pixels,
against `counts.json`); at the reference's 224 pixels for its checkpoints
against the logits the reference PyTorch code computed (the fixtures in
`shared/fixtures/official` beside the checkout, whose weights the small
model also takes when they are there).
"""

import pathlib

import keras
import numpy as np
import pytest

import keras_slimmable as ks
from keras_slimmable import zoo
from keras_slimmable.zoo import load_reference_checkpoint

pytestmark = [
    pytest.mark.slow,  # seconds to a minute per model and backend
    # On TensorFlow, tests/zoo checks all of this and more; CI runs this
    # file again under JAX and PyTorch (tests/test_backends.py).
    pytest.mark.skipif(
        keras.backend.backend() == "tensorflow",
        reason="on TensorFlow tests/zoo covers the zoo",
    ),
]

MODELS = ("s_mobilenet_v1", "s_mobilenet_v2", "s_shufflenet", "s_resnet50")
SIZE = 32
# The fixtures' README: float32 round-off, "well under 1e-4".
FIXTURE_TOLERANCE = 1e-4


def _find_official_fixtures():
    for parent in pathlib.Path(__file__).resolve().parents:
        candidate = parent / "shared" / "fixtures" / "official"
        if candidate.is_dir():
            return candidate
    return None


OFFICIAL = _find_official_fixtures()


def numpy(value):
    return keras.ops.convert_to_numpy(value)


def _batch_norms(model):
    for layer in model.layers:
        if isinstance(layer, ks.SwitchableBatchNormalization):
            yield from layer.batch_norms
        elif isinstance(layer, keras.layers.BatchNormalization):
            yield layer


def calibrate(model, images):
    """Random gammas and betas, and moving statistics measured on `images`
    at every width, so activations keep a scale near 1 through the deep
    networks (fresh ones shrink to 1e-20, where any tolerance holds).

    One forward pass in training mode per width, compiled on JAX (op by op,
    JAX compiles each operation anew, which takes minutes).
    """
    rng = np.random.default_rng(1)
    for variable in model.weights:
        if variable.path.endswith(("gamma", "beta", "bias")):
            low = 0.5 if variable.path.endswith("gamma") else -0.2
            value = rng.uniform(low, low + 1.0, tuple(variable.shape))
            variable.assign(value.astype(variable.dtype))
    batch_norms = list(_batch_norms(model))
    momenta = [batch_norm.momentum for batch_norm in batch_norms]
    for batch_norm in batch_norms:
        batch_norm.momentum = 0.0  # moving statistics := batch statistics
    try:
        for width in reversed(model.widths):

            def forward(trainable, non_trainable, x, width=width):
                _, non_trainable = model.stateless_call(
                    trainable, non_trainable, x, training=True, width=width
                )
                return non_trainable

            if keras.backend.backend() == "jax":
                import jax

                forward = jax.jit(forward)
            values = forward(
                [v.value for v in model.trainable_variables],
                [v.value for v in model.non_trainable_variables],
                images,
            )
            for variable, value in zip(model.non_trainable_variables, values):
                variable.assign(value)
    finally:
        for batch_norm, momentum in zip(batch_norms, momenta):
            batch_norm.momentum = momentum


@pytest.fixture(scope="module", params=MODELS)
def name(request):
    return request.param


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.normal(size=(2, SIZE, SIZE, 3)).astype("float32")


@pytest.fixture(scope="module")
def small(name, images):
    """The model at 32 pixels, and its outputs at every width.

    Its weights are the reference checkpoint's where the fixtures are
    present (random, with batch-norm statistics calibrated per width), else
    calibrated here: a fresh model's activations shrink to 1e-20 through
    the depth, where any tolerance holds.
    """
    model = zoo.create_model(name, input_shape=(SIZE, SIZE, 3))
    if OFFICIAL is not None:
        load_reference_checkpoint(model, OFFICIAL / f"{name}.pt")
    else:
        rng = np.random.default_rng(2)
        calibrate(model, rng.normal(size=(8, SIZE, SIZE, 3)).astype("float32"))
    outputs = {w: numpy(model(images, width=w)) for w in model.widths}
    return model, outputs


def test_calls_at_every_width(small):
    model, outputs = small
    assert len(model.widths) >= 3
    for width, output in outputs.items():
        assert output.shape == (2, 1000), width
        assert np.all(np.isfinite(output)), width
    # Each width computes something of its own.
    widths = list(outputs)
    for i, first in enumerate(widths):
        for second in widths[i + 1 :]:
            difference = np.abs(outputs[first] - outputs[second]).max()
            assert difference > 1e-3, (first, second, difference)


def test_profile_equals_the_reference_counts(name, small, reference_counts):
    # Counted at the reference's input size, whatever the model's.
    counts = ks.profile(small[0], input_shape=(224, 224, 3))
    assert {str(w): c for w, c in counts.items()} == reference_counts[name]


def test_keras_file_round_trip_at_every_width(small, images, tmp_path):
    model, outputs = small
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded, ks.SlimmableModel)
    assert loaded.widths == model.widths
    for width in model.widths:
        np.testing.assert_allclose(
            numpy(loaded(images, width=width)),
            outputs[width],
            atol=1e-5,
            err_msg=f"width {width}",
        )


def test_materialize_equals_the_width(small, images):
    model, outputs = small
    for width in model.widths:
        plain = model.materialize(width)
        assert not any(
            isinstance(layer, ks.SwitchableBatchNormalization)
            for layer in plain.layers
        )
        # Both compiled, as `model(x, width=)` is: a plain model run eagerly
        # rounds differently (1.3e-5 on ResNet-50's logits on TensorFlow),
        # and on JAX compiles every operation anew (minutes).
        np.testing.assert_allclose(
            plain.predict(images, batch_size=len(images), verbose=0),
            outputs[width],
            atol=1e-5,
            err_msg=f"width {width}",
        )


@pytest.mark.skipif(
    OFFICIAL is None,
    reason="the shared reference fixtures (shared/fixtures/official) are "
    "not beside the repository",
)
def test_reference_checkpoint_gives_the_reference_logits(name):
    full_size = zoo.create_model(name)  # 224 pixels, as the reference's
    load_reference_checkpoint(full_size, OFFICIAL / f"{name}.pt")
    reference = np.load(OFFICIAL / f"{name}_reference.npz")
    assert full_size.widths == tuple(float(w) for w in reference["widths"])
    differences = {}
    for width in full_size.widths:
        logits = numpy(full_size(reference["input_nhwc"], width=width))
        expected = reference[f"logits_{float(width)}"]
        differences[width] = float(np.abs(logits - expected).max())
    print(name, keras.backend.backend(), "max abs difference", differences)
    assert max(differences.values()) <= FIXTURE_TOLERANCE, differences
