"""The training and evaluation scripts, run for real on a tiny image folder.

`examples/train.py` runs in subprocesses (its flags are process-global, and
TensorFlow's logical devices must be set before it starts): with
`--strategy=mirrored` over two logical CPU devices, and interrupted then
resumed on the default strategy. The flagfiles and model cards of `zoo/`
are checked against the package's recipes, manifests and reference counts.
"""

import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

ROOT = pathlib.Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
ZOO_CARDS = ROOT / "zoo"
# The reference's per-width counts, in shared/ beside the repository.
COUNTS_PATHS = (ROOT.parent / "shared" / "reference" / "counts.json",)
ZOO_MODELS = ("s_mobilenet_v1", "s_mobilenet_v2", "s_shufflenet", "s_resnet50")
CLASSES = ("blue", "green", "red")
WIDTHS = (0.25, 1.0)

# Runs examples/train.py's `train` with test callbacks, configured by the
# JSON in $DRIVER_CONFIG.
DRIVER = textwrap.dedent(
    """
    import json
    import os
    import sys

    config = json.loads(os.environ["DRIVER_CONFIG"])
    import tensorflow as tf

    if config.get("logical_cpus"):
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(
            cpu,
            [tf.config.LogicalDeviceConfiguration()] * config["logical_cpus"],
        )
    import keras
    import numpy as np
    from absl import app

    sys.path.insert(0, config["examples"])
    import train


    def snapshot(model, path):
        values = {"weights|" + v.path: np.array(v) for v in model.weights}
        for v in model.optimizer.variables:
            values["optimizer|" + v.path] = np.array(v)
        np.savez(path, **values)


    class SimulatedPreemption(Exception):
        pass


    class Interrupt(keras.callbacks.Callback):
        # After the backup callback's: the step is backed up, then we stop.
        def on_train_batch_end(self, batch, logs=None):
            step = int(self.model.optimizer.iterations.numpy())
            if step == config["interrupt_after"]:
                snapshot(self.model, config["snapshot"])
                raise SimulatedPreemption(f"after step {step}")


    class Record(keras.callbacks.Callback):
        # The state the run starts from, and the epochs and steps it runs.
        def __init__(self):
            super().__init__()
            self.start_step = None
            self.epochs = []

        def on_train_begin(self, logs=None):
            if self.start_step is None:
                self.start_step = int(self.model.optimizer.iterations.numpy())
                snapshot(self.model, config["snapshot"])

        def on_epoch_begin(self, epoch, logs=None):
            self.epochs.append([epoch, 0])

        def on_train_batch_end(self, batch, logs=None):
            self.epochs[-1][1] += 1

        def on_train_end(self, logs=None):
            with open(config["record"], "w") as f:
                json.dump(
                    {
                        "start_step": self.start_step,
                        "epochs": self.epochs,
                        "end_step": int(
                            self.model.optimizer.iterations.numpy()
                        ),
                    },
                    f,
                )


    callbacks = []
    if "interrupt_after" in config:
        callbacks.append(Interrupt())
    if "record" in config:
        callbacks.append(Record())


    def main(argv):
        train.train(extra_callbacks=callbacks)


    app.run(main, argv=["train.py", *config["args"]])
    """
)


def _write_image_folder(root, per_class):
    """`root/<class>/<i>.jpg`: noisy 40x40 images tinted by class."""
    rng = np.random.default_rng(len(str(root)))
    for index, name in enumerate(CLASSES):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 80, (40, 40, 3), dtype=np.uint8)
            image[..., index] += 150
            tf.io.write_file(
                str(folder / f"{i:03d}.jpg"), tf.io.encode_jpeg(image)
            )


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """`(train_dir, val_dir)`: 3 classes, 12 and 4 JPEGs per class."""
    root = tmp_path_factory.mktemp("images")
    _write_image_folder(root / "train", 12)
    _write_image_folder(root / "val", 4)
    return root / "train", root / "val"


def _train_flags(image_folder, model_dir, epochs, steps_per_epoch, *extra):
    return [
        "--model=s_mobilenet_v1",
        "--widths=" + ",".join(str(w) for w in WIDTHS),
        "--dataset=folder",
        f"--train_dir={image_folder[0]}",
        "--image_size=32",
        "--batch_size=6",
        f"--epochs={epochs}",
        f"--steps_per_epoch={steps_per_epoch}",
        "--learning_rate=0.01",
        f"--model_dir={model_dir}",
        "--seed=1",
        *extra,
    ]


def _run(script_args, config=None, timeout=300):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    if config is not None:
        env["DRIVER_CONFIG"] = json.dumps({"examples": str(EXAMPLES), **config})
    return subprocess.run(
        [sys.executable, *script_args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


def _load_snapshot(path):
    with np.load(path) as values:
        return {key: values[key] for key in values.files}


# Distributed training ----------


@pytest.fixture(scope="module")
def mirrored_run(image_folder, tmp_path_factory):
    """examples/train.py with MirroredStrategy over two logical CPUs."""
    tmp = tmp_path_factory.mktemp("mirrored")
    driver = tmp / "driver.py"
    driver.write_text(DRIVER)
    model_dir = tmp / "run"
    args = _train_flags(
        image_folder,
        model_dir,
        1,
        2,
        f"--val_dir={image_folder[1]}",
        "--strategy=mirrored",
        "--devices=/cpu:0,/cpu:1",
    )
    result = _run([str(driver)], {"logical_cpus": 2, "args": args})
    assert result.returncode == 0, result.stderr[-4000:]
    return result, model_dir


def test_mirrored_training_logs_every_width(mirrored_run):
    result, model_dir = mirrored_run
    assert "2 replica(s)" in result.stdout
    assert "Finished at step 2." in result.stdout
    for width in WIDTHS:
        for metric in ("loss", "accuracy", "top5"):
            assert f" w{width}_{metric}: " in result.stdout
            assert f" val_w{width}_{metric}: " in result.stdout
    # The closing table: top-1 and top-5 of every width, widest first.
    table = result.stdout.split("(validation, last epoch)")[1].split("\n")
    assert [line.split()[0] for line in table if line.strip()] == [
        "1.0",
        "0.25",
    ]
    for name in ("last.keras", "best.keras", "best.json", "flags.txt"):
        assert (model_dir / name).exists(), name


def _event_tags(folder):
    tags = set()
    for path in folder.glob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.update(value.tag for value in event.summary.value)
    return tags


def test_tensorboard_scalars_per_width(mirrored_run):
    _, model_dir = mirrored_run
    train_tags = _event_tags(model_dir / "logs" / "train")
    validation_tags = _event_tags(model_dir / "logs" / "validation")
    for width in WIDTHS:
        for metric in ("loss", "accuracy", "top5"):
            assert f"epoch_w{width}_{metric}" in train_tags, train_tags
            assert f"epoch_w{width}_{metric}" in validation_tags
    assert "epoch_learning_rate" in train_tags


def test_evaluate_script_reports_every_width(mirrored_run, image_folder):
    _, model_dir = mirrored_run
    result = _run(
        [
            str(EXAMPLES / "evaluate.py"),
            f"--model_file={model_dir / 'last.keras'}",
            "--dataset=folder",
            f"--val_dir={image_folder[1]}",
            "--batch_size=6",
        ]
    )
    assert result.returncode == 0, result.stderr[-4000:]
    rows = re.findall(
        r"^(\S+) +(\d+\.\d\d)% +(\d+\.\d\d)% +(\d+\.\d)M +(\d+\.\d\d)M$",
        result.stdout,
        flags=re.MULTILINE,
    )
    assert [row[0] for row in rows] == ["1.0", "0.25"], result.stdout
    # Three classes: the top-5 of every width is 100%.
    assert all(row[2] == "100.00" for row in rows)
    # The widest width costs more than the narrowest.
    assert float(rows[0][3]) > float(rows[1][3])


# Resumption ----------


def test_resumed_run_continues_from_the_interrupted_step(
    image_folder, tmp_path
):
    """Interrupted after step 4 of 9 (3 epochs of 3 steps; backups every 2
    steps and after every epoch), the same command resumes at epoch 2, step
    4, with the weights, every width's batch-norm statistics and the
    optimizer state of the interruption, and stops at step 9."""
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    model_dir = tmp_path / "run"
    args = _train_flags(
        image_folder,
        model_dir,
        3,
        3,
        "--backup_every_steps=2",
        "--log_every_steps=1",
    )
    at_interruption = tmp_path / "interrupted.npz"
    first = _run(
        [str(driver)],
        {
            "args": args,
            "interrupt_after": 4,
            "snapshot": str(at_interruption),
        },
    )
    assert first.returncode != 0
    assert "SimulatedPreemption: after step 4" in first.stderr

    at_resumption = tmp_path / "resumed.npz"
    record_path = tmp_path / "record.json"
    second = _run(
        [str(driver)],
        {
            "args": args,
            "snapshot": str(at_resumption),
            "record": str(record_path),
        },
    )
    assert second.returncode == 0, second.stderr[-4000:]
    assert (
        "Resuming from step 4 of 9 (epoch 2, after its step 1 of 3)."
        in second.stdout
    )
    record = json.loads(record_path.read_text())
    assert record["start_step"] == 4
    # The rest of epoch 2 (index 1), then epoch 3: 9 steps in all.
    assert record["epochs"] == [[1, 2], [2, 3]]
    assert record["end_step"] == 9
    assert "Finished at step 9." in second.stdout

    interrupted = _load_snapshot(at_interruption)
    resumed = _load_snapshot(at_resumption)
    assert sorted(interrupted) == sorted(resumed)
    for key, value in interrupted.items():
        np.testing.assert_array_equal(resumed[key], value, err_msg=key)
    # Every width's batch-norm statistics are in the state, and trained.
    for index in range(len(WIDTHS)):
        for statistic in ("moving_mean", "moving_variance"):
            key = f"weights|stem_bn/width_{index}/{statistic}"
            assert key in interrupted
            initial = 0.0 if statistic == "moving_mean" else 1.0
            assert np.abs(interrupted[key] - initial).max() > 1e-4, key
    momentum = [k for k in interrupted if k.startswith("optimizer|")]
    assert any(np.abs(interrupted[k]).max() > 0 for k in momentum)

    # Per-step TensorBoard scalars count the run's steps, across the
    # resumption and the per-epoch fits (Keras's restart at 1 in each).
    steps = [
        event.step
        for path in (model_dir / "logs" / "train").glob("events.out.*")
        for event in tf.compat.v1.train.summary_iterator(str(path))
        if any(value.tag == "batch_loss" for value in event.summary.value)
    ]
    assert set(range(5, 10)) <= set(steps), steps
    assert len(steps) == len(set(steps)) and max(steps) == 9, steps


# Flagfiles and model cards ----------


def _flagfile_values(path):
    """The flags a flagfile sets, as `{name: text value}`."""
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line[2:].partition("=")
        values[name] = value if _ else "true"
    return values


def _parse_flagfiles(paths):
    """`{path: {flag: value}}` of the flags each flagfile sets, as
    train.py itself parses them (every flag exists and parses)."""
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.path.insert(0, {str(EXAMPLES)!r})
        import train
        parsed = {{}}
        for path in sys.argv[1:]:
            train.FLAGS.unparse_flags()
            train.FLAGS(["train.py", "--flagfile=" + path])
            parsed[path] = {{
                name: train.FLAGS[name].value
                for name in train.FLAGS
                if train.FLAGS[name].present
            }}
        print(json.dumps(parsed))
        """
    )
    result = _run(["-c", script, *map(str, paths)])
    assert result.returncode == 0, result.stderr[-4000:]
    parsed = json.loads(result.stdout.strip().splitlines()[-1])
    for flags in parsed.values():
        if "crop_scale" in flags:
            flags["crop_scale"] = tuple(float(v) for v in flags["crop_scale"])
        if "boundaries" in flags:
            flags["boundaries"] = tuple(int(v) for v in flags["boundaries"])
    return parsed


def test_flagfiles_hold_the_reference_recipes():
    from keras_slimmable import recipes
    from keras_slimmable.zoo import registry

    paths = [ZOO_CARDS / name / "imagenet.flags" for name in ZOO_MODELS]
    parsed = _parse_flagfiles(paths)

    for name, path in zip(ZOO_MODELS, paths):
        flags = parsed[str(path)]
        assert flags["model"] == name
        assert flags["dataset"] == "imagenet2012"
        manifest = sys.modules[registry.get_builder(name).__module__].MANIFEST
        assert [float(w) for w in flags["widths"]] == list(manifest["widths"])
        recipe = recipes.RECIPES[name]
        for key, expected in recipe.items():
            assert key in flags, f"{path.name} of {name} lacks --{key}"
            value = flags[key]
            if isinstance(expected, tuple):
                value = tuple(type(expected[0])(v) for v in value)
            assert value == expected, (name, key)
        assert flags["base_batch_size"] == recipe["batch_size"]
        assert _flagfile_values(path).keys() == flags.keys()


def test_model_cards_quote_the_reference_figures():
    from keras_slimmable.zoo import registry

    path = next((p for p in COUNTS_PATHS if p.exists()), None)
    if path is None:
        pytest.skip("shared/reference/counts.json is not beside the repository")
    counts = json.loads(path.read_text())
    index = (ZOO_CARDS / "README.md").read_text()
    for name in ZOO_MODELS:
        assert f"({name}/README.md)" in index
        card = (ZOO_CARDS / name / "README.md").read_text()
        for width, figures in counts[name].items():
            row = next(
                line
                for line in card.splitlines()
                if line.startswith(f"| {width} | ")
                and "MACs" not in line
                and "," in line
            )
            for key in ("macs", "conv_fc_params", "bn_affine_params"):
                assert f"{figures[key]:,}" in row, (name, width, key)
        manifest = sys.modules[registry.get_builder(name).__module__].MANIFEST
        for width, error in manifest["top1_error"].items():
            assert re.search(
                rf"^\| {width} \| {error} \| {100 - error:.1f} \|$",
                card,
                flags=re.MULTILINE,
            ), (name, width)
        assert f"--flagfile=zoo/{name}/imagenet.flags" in card
        assert f"python -m keras_slimmable.convert --model {name}" in card
        assert manifest["reference_file"] in card
        assert "CC BY-NC 4.0" in card


def test_cifar10_flagfile_holds_the_cifar10_recipe():
    from keras_slimmable import recipes

    path = ZOO_CARDS / "s_mobilenet_v1" / "cifar10.flags"
    flags = _parse_flagfiles([path])[str(path)]
    assert flags["model"] == "s_mobilenet_v1"
    assert flags["recipe"] == "cifar10"
    recipe = recipes.CIFAR10_RECIPES["s_mobilenet_v1"]
    for key, expected in recipe.items():
        assert key in flags, f"{path.name} lacks --{key}"
        assert flags[key] == expected, key
    assert flags["base_batch_size"] == recipe["batch_size"]
    assert _flagfile_values(path).keys() == flags.keys()


def test_cifar10_recipe_is_what_reproduce_cifar10_uses():
    """The values reproduce_cifar10.py trains with, read from the script
    (its flag defaults and constants, and the literals of its optimizer and
    augmentation), against the recipe and the flagfile."""
    from keras_slimmable import recipes

    script = textwrap.dedent(
        f"""
        import inspect, json, sys
        sys.path.insert(0, {str(EXAMPLES)!r})
        import reproduce_cifar10 as script
        defaults = {{
            name: script.FLAGS[name].default
            for name in ("batch_size", "learning_rate", "epochs",
                         "weight_decay")
        }}
        defaults["image_size"] = script.IMAGE_SHAPE[0]
        defaults["widths"] = list(script.WIDTHS)
        defaults["optimizer"] = inspect.getsource(script.compile_model)
        defaults["augmentation"] = inspect.getsource(script._train_dataset)
        defaults["evaluation"] = inspect.getsource(script._test_dataset)
        print(json.dumps(defaults))
        """
    )
    result = _run(["-c", script])
    assert result.returncode == 0, result.stderr[-4000:]
    used = json.loads(result.stdout.strip().splitlines()[-1])
    recipe = recipes.CIFAR10_RECIPES["s_mobilenet_v1"]
    path = ZOO_CARDS / "s_mobilenet_v1" / "cifar10.flags"
    flags = _parse_flagfiles([path])[str(path)]
    for key in ("batch_size", "learning_rate", "epochs", "weight_decay"):
        assert recipe[key] == used[key], key
        assert flags[key] == used[key], key
    assert recipe["image_size"] == flags["image_size"] == used["image_size"]
    assert [float(w) for w in flags["widths"]] == used["widths"]
    # The optimizer: Nesterov SGD, momentum 0.9, linearly to 0.
    assert "recipes.LinearToZero(FLAGS.learning_rate" in used["optimizer"]
    assert "momentum=0.9" in used["optimizer"]
    assert "nesterov=True" in used["optimizer"]
    assert recipe["schedule"] == "linear_to_zero"
    assert recipe["momentum"] == 0.9 and recipe["nesterov"] is True
    # Pad-and-crop with 4 pixels and a flip, nothing else; evaluation on
    # the image itself.
    assert (
        "random_pad_crop(image, IMAGE_SHAPE[0], padding=4)"
        in (used["augmentation"])
    )
    assert "color_jitter" not in used["augmentation"]
    assert "pca_lighting" not in used["augmentation"]
    assert recipe["crop_padding"] == flags["crop_padding"] == 4
    assert recipe["color_jitter"] == recipe["lighting"] == 0
    assert "resize" not in used["evaluation"]
    assert recipe["resize_size"] == recipe["image_size"]


def _dry_run(*args):
    result = _run([str(EXAMPLES / "train.py"), "--dry_run", *args])
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout)


def test_dry_run_shows_the_widths_and_the_scaled_learning_rate():
    # --model alone: the reference recipe, the model's widths.
    config = _dry_run("--model=s_mobilenet_v1", "--batch_size=32")
    assert config["widths"] == [0.25, 0.5, 0.75, 1.0]
    assert config["recipe_table"] == "imagenet"
    assert config["recipe"]["unbiased_moving_variance"] is True
    # By hand: 0.045 at batch 160, so 0.045 * 32 / 160 = 0.009 at 32.
    assert config["scaled_learning_rate"] == pytest.approx(0.009)

    # The flagfile with another batch: scaled as well.
    flagfile = ZOO_CARDS / "s_resnet50" / "imagenet.flags"
    config = _dry_run(f"--flagfile={flagfile}", "--batch_size=64")
    assert config["scaled_learning_rate"] == pytest.approx(0.025)

    # A learning rate given alone is the rate used.
    config = _dry_run(
        "--model=s_mobilenet_v1", "--batch_size=32", "--learning_rate=0.2"
    )
    assert config["scaled_learning_rate"] == pytest.approx(0.2)

    # --dataset=cifar10 takes the CIFAR-10 recipe: 0.05 * 64 / 128.
    config = _dry_run(
        "--model=s_mobilenet_v1", "--dataset=cifar10", "--batch_size=64"
    )
    assert config["recipe_table"] == "cifar10"
    assert config["recipe"]["crop_padding"] == 4
    assert config["recipe"]["image_size"] == 32
    assert config["scaled_learning_rate"] == pytest.approx(0.025)
    config = _dry_run("--model=s_mobilenet_v1", "--widths=0.5,1")
    assert config["widths"] == [0.5, 1.0]


def test_training_prints_the_learning_rate_and_flags_txt_has_own_flags(
    mirrored_run,
):
    result, model_dir = mirrored_run
    # --learning_rate=0.01 given alone at --batch_size=6.
    assert "Learning rate 0.01 (at batch 6)." in result.stdout
    defined = set(
        re.findall(
            r'flags\.DEFINE_\w+\(\s*"(\w+)"',
            (EXAMPLES / "train.py").read_text(),
        )
    )
    lines = (model_dir / "flags.txt").read_text().splitlines()
    names = [re.match(r"--(?:no)?(\w+)", line).group(1) for line in lines]
    assert set(names) <= defined, set(names) - defined
    assert {"model", "widths", "batch_size", "seed", "strategy"} <= set(names)


def test_build_model_sets_the_recipes_moving_variance_convention(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(EXAMPLES)!r})
        import train
        import keras_slimmable as ks
        for extra in ([], ["--nounbiased_moving_variance"]):
            train.FLAGS.unparse_flags()
            train.FLAGS(["train.py", "--model=s_mobilenet_v1",
                         "--widths=0.25,1.0", "--image_size=32", *extra])
            model = train.build_model(train.resolve_recipe(), (0.25, 1.0),
                                      3, 2)
            values = [
                layer.unbiased_moving_variance
                for layer in model._flatten_layers()
                if isinstance(layer, ks.SwitchableBatchNormalization)
            ]
            print(len(values), sorted(set(values)))
        """
    )
    result = _run(["-c", script])
    assert result.returncode == 0, result.stderr[-4000:]
    first, second = result.stdout.strip().splitlines()[-2:]
    count = int(first.split()[0])
    assert count > 10
    assert first == f"{count} [True]"
    assert second == f"{count} [False]"


@pytest.mark.parametrize("script", ["train.py", "evaluate.py"])
def test_help_does_not_import_tensorflow(script):
    code = textwrap.dedent(
        f"""
        import runpy, sys
        sys.argv = [{script!r}, "--help"]
        try:
            runpy.run_path({str(EXAMPLES / script)!r}, run_name="__main__")
        except SystemExit as exit:
            # absl exits with status 1 after --help.
            assert exit.code in (0, 1, None), exit.code
        print("tensorflow imported:", "tensorflow" in sys.modules)
        """
    )
    result = _run(["-c", code])
    assert result.returncode == 0, result.stderr[-4000:]
    assert "skip_unreadable_images" in result.stdout
    assert "tensorflow imported: False" in result.stdout


@pytest.mark.parametrize(
    "script, args, message",
    [
        (
            "train.py",
            ["--model=s_mobilenet_v1", "--dataset=folder", "--image_size=32"],
            "error: --dataset=folder needs --train_dir.",
        ),
        (
            "evaluate.py",
            ["--model=s_mobilenet_v1", "--dataset=folder"],
            "error: --dataset=folder needs --val_dir.",
        ),
    ],
)
def test_errors_are_one_line_without_noise(script, args, message):
    env_free = {
        k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"
    }
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env_free,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert "cuInit" not in result.stderr and "oneDNN" not in result.stderr
