"""`examples/train.py` killed with SIGKILL at chosen points, then resumed.

A run killed mid-epoch, during validation, inside the writes of its
backup and of `last.keras`, and resumed each time (with its latest backup
then replaced by an empty file and its `run.json` emptied, as a
non-atomic writer would leave them), must end at exactly the step of an
uninterrupted run with the same seed, with bit-identical weights, batch-norm
statistics and optimizer state. Each epoch's data order and augmentation
depend only on `(seed, epoch)`, and a resumed epoch skips the batches it
already trained, so the comparison is exact.

The kills come from `train.py`'s test hook: `KERAS_SLIMMABLE_KILL_AT=
<point>[@<n>]` SIGKILLs the process the n-th time it reaches `<point>`
(`.writing` points first cut the file being written to half its size).
The model is eager (`--run_eagerly`: no tracing) and tiny: S-MobileNet v1
at widths 0.25 and 0.5, 32 x 32 images, 3 epochs of 3 steps of 4 images.
"""

import os
import pathlib
import signal
import subprocess
import sys

import h5py
import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TRAIN = ROOT / "examples" / "train.py"
CLASSES = ("blue", "green", "red")
STEPS_PER_EPOCH, EPOCHS = 3, 3
TOTAL = STEPS_PER_EPOCH * EPOCHS


def _write_images(root, per_class):
    from PIL import Image

    rng = np.random.default_rng(per_class)
    for index, name in enumerate(CLASSES):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 80, (32, 32, 3), dtype=np.uint8)
            image[..., index] += 150
            Image.fromarray(image).save(folder / f"{i}.png")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    _write_images(root / "train", 6)
    _write_images(root / "val", 2)
    return root / "train", root / "val"


def _train(folders, model_dir, kill_at=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("KERAS_SLIMMABLE_KILL_AT", None)
    if kill_at:
        env["KERAS_SLIMMABLE_KILL_AT"] = kill_at
    args = [
        "--model=s_mobilenet_v1",
        "--widths=0.25,0.5",
        "--dataset=folder",
        f"--train_dir={folders[0]}",
        f"--val_dir={folders[1]}",
        "--image_size=32",
        "--batch_size=4",
        f"--epochs={EPOCHS}",
        f"--steps_per_epoch={STEPS_PER_EPOCH}",
        "--learning_rate=0.05",
        "--backup_every_steps=2",
        "--seed=3",
        "--run_eagerly",
        f"--model_dir={model_dir}",
    ]
    return subprocess.run(
        [sys.executable, str(TRAIN), *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=ROOT,
    )


def _killed(result):
    assert result.returncode == -signal.SIGKILL, (
        result.returncode,
        result.stdout[-2000:],
        result.stderr[-3000:],
    )
    return result


def _succeeded(result):
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr)
    return result


def _resumes_at(result, step):
    epoch, done = divmod(step, STEPS_PER_EPOCH)
    assert (
        f"Resuming from step {step} of {TOTAL} (epoch {epoch + 1}, after "
        f"its step {done} of {STEPS_PER_EPOCH})." in result.stdout
    ), result.stdout


def _h5_values(path):
    values = {}

    def visit(name, item):
        if isinstance(item, h5py.Dataset):
            values[name] = item[()]

    with h5py.File(path, "r") as f:
        f.visititems(visit)
    return values


def _step_of(path):
    values = _h5_values(path)
    # The optimizer's first variable is `iterations`.
    return int(values["optimizer/vars/0"])


@pytest.mark.slow
def test_killed_and_resumed_run_ends_as_an_uninterrupted_one(folders, tmp_path):
    straight = tmp_path / "straight"
    result = _succeeded(_train(folders, straight))
    assert f"Finished at step {TOTAL}." in result.stdout
    assert "Resuming" not in result.stdout

    run = tmp_path / "interrupted"
    backup = run / "backup"
    # Backups: steps 2, 3 (epoch end), 4, 6 (epoch end), 8, 9 (epoch end).
    # Killed after step 5 (mid-epoch 2): the step-4 backup is the latest.
    _killed(_train(folders, run, "step.5"))
    assert _step_of(backup / "latest.weights.h5") == 4

    # During epoch 2's validation: resumes mid-epoch, killed again.
    _resumes_at(_killed(_train(folders, run, "validation")), 4)

    # Inside the write of last.keras at the end of epoch 2: the old one
    # (epoch 1's) stays whole.
    last_before = (run / "last.keras").read_bytes()
    _resumes_at(_killed(_train(folders, run, "last.writing")), 4)
    assert (run / "last.keras").read_bytes() == last_before
    assert list(run.glob(".last.partial-*.keras"))  # the cut-off write

    # Inside the write of the epoch-2 backup: the step-4 one stays.
    _resumes_at(_killed(_train(folders, run, "backup.writing")), 4)
    assert _step_of(backup / "latest.weights.h5") == 4
    assert list(backup.glob(".latest.partial-*.weights.h5"))

    # Between keeping the previous backup and publishing the new one
    # (the second backup of this run, after step 8).
    _resumes_at(_killed(_train(folders, run, "backup.kept_previous@2")), 4)
    assert _step_of(backup / "latest.weights.h5") == 6
    assert _step_of(backup / "previous.weights.h5") == 6

    # A damaged latest backup (0 bytes, as a kill inside a non-atomic
    # write leaves it) and an empty run.json: the previous backup is used,
    # with a message saying what was lost.
    # (Replaced, not truncated in place: the kill left latest and previous
    # as two names of one file.)
    (backup / "latest.weights.h5").unlink()
    (backup / "latest.weights.h5").write_bytes(b"")
    (backup / "run.json").write_bytes(b"")
    result = _succeeded(_train(folders, run))
    assert "latest.weights.h5 is damaged" in result.stdout, result.stdout
    assert "run.json is damaged" in result.stdout
    _resumes_at(result, 6)
    assert f"Finished at step {TOTAL}." in result.stdout
    for folder in (run, backup):
        assert not list(folder.glob(".*partial*")), list(folder.iterdir())

    expected = _h5_values(straight / "backup" / "latest.weights.h5")
    resumed = _h5_values(backup / "latest.weights.h5")
    assert sorted(resumed) == sorted(expected)
    assert int(resumed["optimizer/vars/0"]) == TOTAL
    # Every width's batch-norm statistics (Keras's BatchNormalization
    # variables: gamma, beta, moving mean, moving variance), trained, and
    # the momentum are in it.
    stem = "layers/switchable_batch_normalization/batch_norms/"
    for width_layer in ("batch_normalization", "batch_normalization_1"):
        mean = expected[f"{stem}{width_layer}/vars/2"]
        variance = expected[f"{stem}{width_layer}/vars/3"]
        assert np.abs(mean).max() > 1e-4 and np.abs(variance - 1).max() > 1e-4
    momentum = [key for key in expected if key.startswith("optimizer/")]
    assert len(momentum) > 100
    assert any(np.abs(expected[key]).max() > 0 for key in momentum[1:])
    for key, value in expected.items():
        np.testing.assert_array_equal(resumed[key], value, err_msg=key)

    # A finished run says so and does nothing.
    again = _succeeded(_train(folders, straight))
    assert "Training already complete" in again.stdout
    assert "Resuming" not in again.stdout
    assert _h5_values(straight / "backup" / "latest.weights.h5").keys() == (
        expected.keys()
    )
