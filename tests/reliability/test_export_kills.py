"""Killing an export at every rename: a server sees all old or all new.

A subprocess exports a tiny slimmable model for TF Serving and SIGKILLs
itself just before its k-th rename, replace or tree removal under the
export folder, for every k. After each kill, what a server would serve is
read the way TF Serving reads it: `models.config` parsed as a
`ModelServerConfig`, and for each listed model the version its policy picks
(pinned, or the highest numeric folder) under its base path, which must be
a complete SavedModel. That view must equal the view before the export or
the view after an uninterrupted one, never a mix. Then the next export
into the same folder must complete and leave no hidden leftovers.
"""

import hashlib
import json
import os
import runpy
import shutil
import signal
import subprocess
import sys
import textwrap

import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

NAME = "tiny"

WORKER = textwrap.dedent(
    '''
    """argv: root folder (holding template/), json {seed, widths, version,
    overwrite}."""
    import json
    import os
    import shutil
    import signal
    import sys

    WIDTHS = (0.25, 0.5, 1.0)


    def build(seed):
        import keras
        import numpy as np

        import keras_slimmable as ks

        channels = ks.scale_channels(8, WIDTHS)
        inputs = keras.Input((4, 4, 3))
        x = ks.SlimmableConv2D(channels, 3, padding=1, name="conv")(inputs)
        x = keras.layers.GlobalAveragePooling2D()(x)
        outputs = ks.SlimmableDense(2, name="logits")(x)
        model = ks.SlimmableModel(inputs, outputs, widths=WIDTHS)
        # The same weights for the same seed, in any process.
        rng = np.random.default_rng(seed)
        for variable in model.weights:
            shape = tuple(variable.shape)
            variable.assign(rng.normal(size=shape).astype("float32"))
        return model


    def export(base_dir, job):
        from keras_slimmable import export

        export.export_for_serving(
            build(job["seed"]),
            base_dir,
            "tiny",
            version=job["version"],
            widths=job["widths"],
            overwrite=job["overwrite"],
            # As in a container: the copies of a folder then hold the same
            # models.config, and the test maps /models to each copy.
            server_base_dir="/models",
        )


    def install_kill(base_dir, kill_at):
        """SIGKILLs this process before its `kill_at`-th event under
        `base_dir`; returns the list of events seen."""
        events = []

        def hook(name, function):
            def wrapper(path, *args, **kwargs):
                if str(path).startswith(base_dir):
                    events.append(f"{name} {path}")
                    if len(events) == kill_at:
                        sys.stdout.flush()
                        os.kill(os.getpid(), signal.SIGKILL)
                return function(path, *args, **kwargs)

            return wrapper

        os.replace = hook("replace", os.replace)
        os.rename = hook("rename", os.rename)
        shutil.rmtree = hook("rmtree", shutil.rmtree)
        return events


    def fork_export(base_dir, job, kill_at):
        """Exports in a forked child killed before its `kill_at`-th event
        (0: never); returns `(exit status, events)`."""
        events_path = base_dir + ".events.json"
        pid = os.fork()
        if pid == 0:
            try:
                events = install_kill(base_dir, kill_at)
                export(base_dir, job)
                with open(events_path, "w") as file:
                    json.dump(events, file)
            finally:
                os._exit(0)
        _, status = os.waitpid(pid, 0)
        events = None
        if os.path.exists(events_path):
            with open(events_path) as file:
                events = json.load(file)
        return os.waitstatus_to_exitcode(status), events


    if __name__ == "__main__":
        # TensorFlow is imported once, before any thread or op starts;
        # each export runs (and is killed) in a forked child.
        import tensorflow  # noqa: F401

        import keras_slimmable  # noqa: F401

        root, job = sys.argv[1], json.loads(sys.argv[2])
        status, events = fork_export(os.path.join(root, "finished"), job, 0)
        results = {"finished": [status, events], "killed": []}
        for kill_at in range(1, len(events or ()) + 1):
            base_dir = os.path.join(root, f"killed_{kill_at}")
            shutil.copytree(os.path.join(root, "template"), base_dir)
            results["killed"].append(fork_export(base_dir, job, kill_at))
        print(json.dumps(results))
    '''
)


def served_view(base):
    """{model name: (version, sha256 of its variables)} a server serves."""
    config_path = base / "models.config"
    if not config_path.exists():
        return {}
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse(config_path.read_text(), config)
    view = {}
    for entry in config.model_config_list.config:
        assert entry.base_path.startswith("/models/"), entry.base_path
        folder = base / entry.base_path[len("/models/") :]
        policy = entry.model_version_policy
        if policy.HasField("specific"):
            (version,) = policy.specific.versions
        else:  # TF Serving's default: the latest (highest) version.
            versions = [int(p.name) for p in folder.iterdir() if is_int(p)]
            assert versions, f"{entry.name}: no version folder in {folder}"
            version = max(versions)
        version_folder = folder / str(version)
        assert (version_folder / "saved_model.pb").is_file(), version_folder
        variables = version_folder / "variables"
        assert (variables / "variables.index").is_file(), version_folder
        view[entry.name] = (version, weights_digest(variables / "variables"))
    return view


def weights_digest(prefix):
    """A digest of a checkpoint's tensor values, whatever their names (the
    layers of models built in one process are numbered on)."""
    reader = tf.train.load_checkpoint(str(prefix))
    values = sorted(
        reader.get_tensor(key).tobytes()
        for key in reader.get_variable_to_shape_map()
        if key != "_CHECKPOINTABLE_OBJECT_GRAPH"
    )
    return hashlib.sha256(b"".join(values)).hexdigest()


def is_int(path):
    """Whether TF Serving would parse `path`'s name as a version number."""
    try:
        int(path.name)
    except ValueError:
        return False
    return True


def check_no_false_versions(base):
    """Every folder name TF Serving parses as a version is complete."""
    for model_folder in base.iterdir():
        if not model_folder.is_dir():
            continue
        for child in model_folder.iterdir():
            if is_int(child):
                assert (child / "saved_model.pb").is_file(), child
                assert (child / "variables" / "variables.index").is_file()


def hidden(base):
    return sorted(
        str(p.relative_to(base))
        for p in base.rglob("*")
        if p.name.startswith(".")
    )


@pytest.fixture(scope="module")
def worker(tmp_path_factory):
    path = tmp_path_factory.mktemp("worker") / "export_worker.py"
    path.write_text(WORKER)
    return path


def run_worker(worker, root, job):
    result = subprocess.run(
        [sys.executable, str(worker), str(root), json.dumps(job)],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


# (what exists before: [(seed, widths, version)], the export under test)
SCENARIOS = {
    "fresh": ([], dict(seed=2, widths=[0.25, 0.5, 1.0], version=1)),
    "new_version": (
        [(1, [0.25, 1.0], 1)],
        dict(seed=2, widths=[0.25, 1.0], version=2),
    ),
    "overwrite": (
        [(1, [0.25, 0.5, 1.0], 1)],
        dict(seed=2, widths=[0.25, 1.0], version=1, overwrite=True),
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_kill_at_every_rename_serves_all_old_or_all_new(
    scenario, worker, tmp_path
):
    before, job = SCENARIOS[scenario]
    job = dict({"overwrite": False}, **job)
    functions = runpy.run_path(str(worker))
    template = tmp_path / "template"
    template.mkdir()
    for seed, widths, version in before:
        functions["export"](
            str(template),
            dict(seed=seed, widths=widths, version=version, overwrite=False),
        )
    old = served_view(template)

    shutil.copytree(template, tmp_path / "finished")
    results = run_worker(worker, tmp_path, job)
    status, events = results["finished"]
    assert status == 0
    finished = tmp_path / "finished"
    new = served_view(finished)
    assert new != old
    assert set(new) >= set(old)
    assert hidden(finished) == []
    print(f"\n{scenario}: {len(events)} events:")
    for event in events:
        print("  " + event.replace(str(finished), "<base>"))

    outcomes = []
    assert len(results["killed"]) == len(events)
    for kill_at, (status, _) in enumerate(results["killed"], start=1):
        base = tmp_path / f"killed_{kill_at}"
        assert status == -signal.SIGKILL
        view = served_view(base)
        assert view in (old, new), (kill_at, events[kill_at - 1], view)
        check_no_false_versions(base)
        outcomes.append("old" if view == old else "new")
        # The next export completes and removes what the killed one left.
        functions["export"](str(base), dict(job, overwrite=True))
        assert served_view(base) == new
        assert hidden(base) == []
    print(f"{scenario}: served after each kill: {outcomes}")
    # The switch happens once: old up to some event, new after it.
    assert outcomes == sorted(outcomes, key=["old", "new"].index)
