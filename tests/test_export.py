"""Export for TF Serving and TFLite, tested without a server.

No TF Serving server can be installed here, so the served artifacts are
checked the way the server would use them:

- a fresh Python process that never imports `keras_slimmable` reads
  `models.config` as a `ModelServerConfig`, loads every model's version
  (the pinned one, else the latest numeric folder) with the "serve" tag,
  and answers serialized `PredictRequest`s through the SignatureDefs (as
  TF Serving's Predict does), replying with serialized `PredictResponse`s;
- the replies are compared with the in-memory model at each width;
- TFLite files run in `ai_edge_litert`'s interpreter.

The exports are written once per module: a small S-MobileNet v1 (64x64
inputs, 10 classes) with random weights and per-width batch norms that
differ, so a signature that ran the wrong width would show.
"""

import json
import os
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import text_format
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.config import model_server_config_pb2

import keras_slimmable as ks
from keras_slimmable import export
from keras_slimmable.export import _export as export_impl

NAME = "s_mobilenet_v1"
SIZE = 64
CLASSES = 10
WIDTHS = (0.25, 0.5, 0.75, 1.0)
SAVED_MODEL_TOLERANCE = 1e-5
TFLITE_TOLERANCE = 1e-4
ALL_WIDTHS_NAME = "all_widths"
CLI_NAME = "cli"


def build_model():
    keras.utils.set_random_seed(0)
    model = ks.zoo.s_mobilenet_v1(
        input_shape=(SIZE, SIZE, 3), classes=CLASSES, widths=WIDTHS
    )
    # Fresh batch norms are all identities, the same at every width: give
    # each width's its own statistics so that running the wrong width's
    # batch norm would change the outputs.
    rng = np.random.default_rng(0)
    for variable in model.weights:
        path = variable.path
        shape = tuple(variable.shape)
        if path.endswith(("moving_variance", "gamma")):
            variable.assign(rng.uniform(0.5, 1.5, shape).astype("float32"))
        elif path.endswith(("moving_mean", "beta")):
            variable.assign(rng.normal(0.0, 0.2, shape).astype("float32"))
    return model


def images(batch, seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(batch, SIZE, SIZE, 3)).astype("float32")


def expected(model, x, width):
    return keras.ops.convert_to_numpy(model(x, width=width))


def folder_bytes(path):
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def snapshot(folder):
    """{relative path: bytes} of every file under `folder`."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def visible_entries(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


# The fresh process: TF Serving's Predict, emulated --------------------------

SERVER = textwrap.dedent(
    '''
    """Answers PredictRequests the way TF Serving does, from models.config.

    argv: manifest.json = {"models_config": path, "extra": {name: version
    folder}, "requests": [request file, ...]}. Writes <request>.response
    (a serialized PredictResponse) and report.json beside the manifest.
    """
    import json
    import os
    import sys

    import tensorflow as tf
    from google.protobuf import text_format
    from tensorflow_serving.apis import predict_pb2
    from tensorflow_serving.config import model_server_config_pb2

    manifest_path = sys.argv[1]
    with open(manifest_path) as f:
        manifest = json.load(f)

    config = model_server_config_pb2.ModelServerConfig()
    with open(manifest["models_config"]) as f:
        text_format.Parse(f.read(), config)
    servables = {}
    for entry in config.model_config_list.config:
        policy = entry.model_version_policy
        if policy.HasField("specific"):  # Pinned, as the exports write.
            (version,) = policy.specific.versions
            version = str(version)
        else:  # TF Serving's default policy: the latest version.
            versions = [d for d in os.listdir(entry.base_path) if d.isdigit()]
            version = max(versions, key=int)
        servables[entry.name] = os.path.join(entry.base_path, version)
    servables.update(manifest["extra"])

    sessions = {}
    signatures = {}


    def session(name):
        if name not in sessions:
            graph = tf.Graph()
            sess = tf.compat.v1.Session(graph=graph)
            with graph.as_default():
                meta = tf.compat.v1.saved_model.loader.load(
                    sess, ["serve"], servables[name]
                )
            sessions[name] = (sess, meta)
            signatures[name] = {
                key: {
                    "method_name": sd.method_name,
                    "inputs": {
                        k: [tf.dtypes.as_dtype(v.dtype).name,
                            [d.size for d in v.tensor_shape.dim]]
                        for k, v in sd.inputs.items()
                    },
                    "outputs": {
                        k: [tf.dtypes.as_dtype(v.dtype).name,
                            [d.size for d in v.tensor_shape.dim]]
                        for k, v in sd.outputs.items()
                    },
                }
                for key, sd in meta.signature_def.items()
                if not key.startswith("__")
            }
        return sessions[name]


    for request_path in manifest["requests"]:
        with open(request_path, "rb") as f:
            request = predict_pb2.PredictRequest.FromString(f.read())
        sess, meta = session(request.model_spec.name)
        signature = request.model_spec.signature_name or "serving_default"
        definition = meta.signature_def[signature]
        assert set(request.inputs) == set(definition.inputs), (
            sorted(request.inputs), sorted(definition.inputs))
        feed = {
            definition.inputs[key].name: tf.make_ndarray(proto)
            for key, proto in request.inputs.items()
        }
        fetch = {key: info.name for key, info in definition.outputs.items()}
        outputs = sess.run(fetch, feed)
        response = predict_pb2.PredictResponse()
        response.model_spec.CopyFrom(request.model_spec)
        response.model_spec.signature_name = signature
        for key, value in outputs.items():
            response.outputs[key].CopyFrom(tf.make_tensor_proto(value))
        with open(request_path + ".response", "wb") as f:
            f.write(response.SerializeToString())

    report = {
        "keras_slimmable_imported": sorted(
            m for m in sys.modules if m.startswith("keras_slimmable")
        ),
        "servables": servables,
        "signatures": signatures,
    }
    with open(os.path.join(os.path.dirname(manifest_path), "report.json"),
              "w") as f:
        json.dump(report, f)
    '''
)


class Deployment:
    """The exports of this module and the fresh process serving them."""

    def __init__(self, root, model):
        self.root = root
        self.model = model
        self.x = images(3, seed=1)
        self.saved_model = root / "saved_model"
        self.serving = root / "serving"
        self.cli = root / "cli"
        self.requests = []  # (model name, signature, width, request path)
        self._server = None
        self._report = None

    def export(self):
        weights = self.root / "random.weights.h5"
        self.model.save_weights(weights)
        # The CLI runs in its own process, meanwhile the exports below.
        cli = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "keras_slimmable.export",
                f"--model={NAME}",
                f"--weights={weights}",
                f"--image_size={SIZE}",
                f"--classes={CLASSES}",
                "--format=serving",
                "--widths=0.5",
                f"--out={self.cli}",
                "--server_base_dir=/models",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            self.written_saved_model = export.export_saved_model(
                self.model, self.saved_model
            )
            self.written_serving = export.export_for_serving(
                self.model, self.serving, NAME
            )
            self.cli_stdout, self.cli_stderr = cli.communicate(timeout=300)
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.wait()
        assert cli.returncode == 0, self.cli_stderr[-3000:]

    def start_server(self):
        """Writes the requests and starts the fresh process (no waiting)."""
        requests = self.root / "requests"
        requests.mkdir()
        jobs = [(ALL_WIDTHS_NAME, export.signature_name(w), w) for w in WIDTHS]
        jobs.append((ALL_WIDTHS_NAME, "serving_default", max(WIDTHS)))
        jobs.append((ALL_WIDTHS_NAME, "", max(WIDTHS)))  # TF Serving's default
        for w in WIDTHS:
            jobs.append((export.served_model_name(NAME, w), "", w))
        jobs.append(
            (export.served_model_name(NAME, 0.5), "serving_default", 0.5)
        )
        jobs.append((CLI_NAME, "serving_default", 0.5))
        for i, (name, signature, width) in enumerate(jobs):
            request = predict_pb2.PredictRequest()
            request.model_spec.name = name
            if signature:
                request.model_spec.signature_name = signature
            request.inputs[export.INPUT_NAME].CopyFrom(
                tf.make_tensor_proto(self.x)
            )
            path = requests / f"{i:02d}.pb"
            path.write_bytes(request.SerializeToString())
            self.requests.append((name, signature, width, path))
        manifest = {
            "models_config": str(self.serving / "models.config"),
            "extra": {
                ALL_WIDTHS_NAME: str(self.saved_model),
                CLI_NAME: str(
                    self.cli / export.served_model_name(NAME, 0.5) / "1"
                ),
            },
            "requests": [str(path) for *_, path in self.requests],
        }
        (requests / "manifest.json").write_text(json.dumps(manifest))
        (requests / "server.py").write_text(SERVER)
        self._server = subprocess.Popen(
            [
                sys.executable,
                str(requests / "server.py"),
                str(requests / "manifest.json"),
            ],
            cwd=requests,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def report(self):
        """Waits for the fresh process; its report."""
        if self._report is None:
            try:
                _, stderr = self._server.communicate(timeout=300)
            finally:
                if self._server.poll() is None:
                    self._server.kill()
                    self._server.wait()
            assert self._server.returncode == 0, stderr[-3000:]
            path = self.root / "requests" / "report.json"
            self._report = json.loads(path.read_text())
        return self._report

    def responses(self):
        """[(name, signature, width, outputs dict)] from the fresh process."""
        self.report()
        answers = []
        for name, signature, width, path in self.requests:
            response = predict_pb2.PredictResponse.FromString(
                path.with_name(path.name + ".response").read_bytes()
            )
            outputs = {
                key: tf.make_ndarray(proto)
                for key, proto in response.outputs.items()
            }
            answers.append((name, signature, width, outputs))
        return answers


@pytest.fixture(scope="module")
def model():
    return build_model()


@pytest.fixture(scope="module")
def deployment(model, tmp_path_factory):
    deployment = Deployment(tmp_path_factory.mktemp("deployment"), model)
    deployment.export()
    deployment.start_server()
    yield deployment
    if deployment._server is not None and deployment._server.poll() is None:
        deployment._server.kill()
        deployment._server.wait()


# Layout and models.config ----------------------------------------------------


def test_serving_layout_and_models_config(deployment):
    base = deployment.serving
    assert deployment.written_serving == {
        w: base / export.served_model_name(NAME, w) / "1" for w in WIDTHS
    }
    assert sorted(p.name for p in base.iterdir()) == sorted(
        ["models.config"] + [export.served_model_name(NAME, w) for w in WIDTHS]
    )
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse((base / "models.config").read_text(), config)
    entries = config.model_config_list.config
    assert [e.name for e in entries] == [
        export.served_model_name(NAME, w) for w in WIDTHS
    ]
    assert [e.name for e in entries] == [
        "s_mobilenet_v1_w0_25",
        "s_mobilenet_v1_w0_5",
        "s_mobilenet_v1_w0_75",
        "s_mobilenet_v1_w1_0",
    ]
    for entry in entries:
        assert entry.model_platform == "tensorflow"
        assert entry.base_path == str((base / entry.name).resolve())
        version = base / entry.name / "1"
        assert (version / "saved_model.pb").is_file()
        assert (version / "variables" / "variables.index").is_file()
        # Only the numeric version folder: nothing staged is left behind.
        assert [p.name for p in (base / entry.name).iterdir()] == ["1"]


def test_cli_writes_container_paths(deployment):
    base = deployment.cli
    served = export.served_model_name(NAME, 0.5)
    assert sorted(p.name for p in base.iterdir()) == ["models.config", served]
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse((base / "models.config").read_text(), config)
    (entry,) = config.model_config_list.config
    assert entry.name == served
    assert entry.base_path == f"/models/{served}"
    assert str(base / served / "1") in deployment.cli_stdout


# Sizes -----------------------------------------------------------------------

# A checkpoint's data file holds each float32 tensor's raw bytes, nothing
# else but the serialized object graph; the index holds one short entry per
# tensor. Both are at most a few hundred bytes per variable: 1 KiB per
# variable is a generous bound on the overhead (measured: under 0.2 KiB).
OVERHEAD_PER_VARIABLE = 1024


def test_all_widths_saved_model_stores_variables_once(deployment, model):
    stored = folder_bytes(deployment.saved_model / "variables")
    params = 4 * model.count_params()
    overhead = OVERHEAD_PER_VARIABLE * len(model.weights)
    print(f"\nall widths: variables/ {stored} bytes, 4 x params {params}")
    assert params <= stored <= params + overhead


@pytest.fixture(scope="module")
def narrow_counts(model):
    """{width: (parameters, variables)} of each width's plain model."""
    counts = {}
    for width in WIDTHS:
        narrow = model.materialize(width)
        counts[width] = (narrow.count_params(), len(narrow.weights))
    return counts


def test_narrow_exports_hold_only_their_width(deployment, narrow_counts):
    sizes = {}
    for width, version in deployment.written_serving.items():
        count, variables = narrow_counts[width]
        stored = folder_bytes(version / "variables")
        params = 4 * count
        overhead = OVERHEAD_PER_VARIABLE * variables
        sizes[width] = stored
        print(
            f"\nwidth {width}: variables/ {stored} bytes, "
            f"4 x params {params} ({stored / params:.4f}x)"
        )
        assert params <= stored <= params + overhead
    # The narrowest is a small fraction of the widest (params: about 7%).
    assert sizes[min(WIDTHS)] < 0.1 * sizes[max(WIDTHS)]
    assert list(sizes.values()) == sorted(sizes.values())


# TFLite ----------------------------------------------------------------------


def run_tflite(path, x):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    (input_detail,) = interpreter.get_input_details()
    interpreter.resize_tensor_input(input_detail["index"], x.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(input_detail["index"], x)
    interpreter.invoke()
    (output_detail,) = interpreter.get_output_details()
    return interpreter.get_tensor(output_detail["index"])


# One file per width, covering every quantization: float32 at the extreme
# widths, float16 and dynamic range in between (each conversion costs a few
# seconds, so not every width in every quantization).
TFLITE_FILES = {
    0.25: None,
    0.5: "float16",
    0.75: "dynamic_range",
    1.0: None,
}


@pytest.fixture(scope="module")
def tflite_files(model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("tflite")
    files = {}
    for width, quantization in TFLITE_FILES.items():
        files[width, quantization] = export.export_tflite(
            model,
            folder / f"w{width}_{quantization or 'float32'}.tflite",
            width=width,
            quantization=quantization,
        )
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        p.name for p in files.values()
    )
    return files


def test_tflite_float32_matches_the_model_at_its_width(tflite_files, model):
    x = images(4, seed=2)
    diffs = {}
    for (width, quantization), path in tflite_files.items():
        if quantization is None:
            diffs[width] = float(
                np.abs(run_tflite(path, x) - expected(model, x, width)).max()
            )
    print(f"\nTFLite float32 max abs diff per width: {diffs}")
    assert sorted(diffs) == [0.25, 1.0]
    assert max(diffs.values()) <= TFLITE_TOLERANCE, diffs


def relative_drift(output, reference):
    return float(np.linalg.norm(output - reference) / np.linalg.norm(reference))


def test_tflite_quantized_drift(tflite_files, model, narrow_counts):
    """Quantized files drift by design; only a loose sanity bound holds.

    The bound: a tenth of the relative difference between this width and
    the next narrower one, so a file of the wrong width or with scrambled
    weights (drift near that gap, or about 1) fails, while float16 (about
    1e-3 relative error per weight) and int8 dynamic range (per-channel
    scales, steps of 1/127 of each channel's largest weight) pass with a
    wide margin (measured: about 5e-4 and 2e-2 against gaps above 1).
    """
    x = images(8, seed=3)
    for (width, quantization), path in tflite_files.items():
        if quantization is None:
            continue
        reference = expected(model, x, width)
        narrower = WIDTHS[WIDTHS.index(width) - 1]
        gap = relative_drift(expected(model, x, narrower), reference)
        output = run_tflite(path, x)
        drift = relative_drift(output, reference)
        top1 = float(np.mean(output.argmax(-1) == reference.argmax(-1)))
        float32_bytes = 4 * narrow_counts[width][0]
        print(
            f"\nTFLite {quantization} at width {width}: relative drift "
            f"{drift:.2e}, max abs diff "
            f"{np.abs(output - reference).max():.2e}, top-1 agreement "
            f"{top1:.2f}, {path.stat().st_size} bytes (float32 weights: "
            f"{float32_bytes}; gap to width {narrower}: {gap:.2f})"
        )
        assert drift < 0.1 * gap
        # Quantized weights: half (float16) or a quarter (int8) the bytes.
        limit = {"float16": 0.6, "dynamic_range": 0.35}[quantization]
        assert path.stat().st_size < limit * float32_bytes


# The fresh process -----------------------------------------------------------


# (After the TFLite tests: the fresh process runs while they convert.)


def test_every_base_path_loads_in_a_fresh_process(deployment):
    report = deployment.report()
    assert report["keras_slimmable_imported"] == []
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse(
        (deployment.serving / "models.config").read_text(), config
    )
    names = [entry.name for entry in config.model_config_list.config]
    assert sorted(report["servables"]) == sorted(
        names + [ALL_WIDTHS_NAME, CLI_NAME]
    )
    for entry in config.model_config_list.config:
        assert report["servables"][entry.name] == os.path.join(
            entry.base_path, "1"
        )
    assert set(report["signatures"]) == set(report["servables"])


def test_signatures(deployment):
    signatures = deployment.report()["signatures"]
    image = ["float32", [-1, SIZE, SIZE, 3]]
    logits = ["float32", [-1, CLASSES]]
    assert sorted(signatures[ALL_WIDTHS_NAME]) == sorted(
        ["serving_default"] + [export.signature_name(w) for w in WIDTHS]
    )
    assert export.signature_name(0.25) == "serving_w0_25"
    for name, per_signature in signatures.items():
        if name != ALL_WIDTHS_NAME:
            assert list(per_signature) == ["serving_default"]
        for definition in per_signature.values():
            assert definition["method_name"] == "tensorflow/serving/predict"
            assert definition["inputs"] == {"images": image}
            assert list(definition["outputs"].values()) == [logits]


def test_every_signature_matches_the_model_at_its_width(deployment, model):
    diffs = {}
    for name, signature, width, outputs in deployment.responses():
        (logits,) = outputs.values()
        reference = expected(model, deployment.x, width)
        assert logits.shape == reference.shape
        diffs[(name, signature or "(default)", width)] = float(
            np.abs(logits - reference).max()
        )
    print("\nmax abs diff, served vs in-memory model:")
    for key, diff in diffs.items():
        print(f"  {key}: {diff:.2e}")
    assert max(diffs.values()) <= SAVED_MODEL_TOLERANCE, diffs
    # The widths really differ, so matching each one means something.
    gaps = [
        np.abs(
            expected(model, deployment.x, a) - expected(model, deployment.x, b)
        ).max()
        for a, b in zip(WIDTHS, WIDTHS[1:])
    ]
    assert min(gaps) > 1000 * SAVED_MODEL_TOLERANCE


# Atomicity -------------------------------------------------------------------
# On a tiny model: these test how files are written, not what is in them.


@pytest.fixture(scope="module")
def tiny():
    keras.utils.set_random_seed(0)
    channels = ks.scale_channels(16, WIDTHS)
    inputs = keras.Input((8, 8, 3))
    x = ks.SlimmableConv2D(channels, 3, padding=1, name="conv")(inputs)
    x = ks.SwitchableBatchNormalization(channels, name="bn")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = ks.SlimmableDense(3, name="logits")(x)
    return ks.SlimmableModel(inputs, outputs, widths=WIDTHS, name="tiny")


def test_models_config_lists_every_exported_width(tiny, tmp_path):
    export.export_for_serving(tiny, tmp_path, NAME, widths=[0.5])
    export.export_for_serving(tiny, tmp_path, NAME, widths=[0.25], version=3)
    (tmp_path / export.served_model_name(NAME, 1.0)).mkdir()  # No version.
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse((tmp_path / "models.config").read_text(), config)
    assert [e.name for e in config.model_config_list.config] == [
        "s_mobilenet_v1_w0_25",
        "s_mobilenet_v1_w0_5",
    ]
    assert (
        tmp_path / "s_mobilenet_v1_w0_25" / "3" / "saved_model.pb"
    ).is_file()


class Interrupted(Exception):
    pass


def interrupt_write_out(monkeypatch, after):
    """Makes the `after`-th `write_out` write its files, then raise."""
    calls = []
    make_archive = export_impl._archive

    def archive():
        real = make_archive()
        write_out = real.write_out

        def interrupted(filepath, *args, **kwargs):
            write_out(filepath, *args, **kwargs)
            calls.append(filepath)
            if len(calls) == after:
                assert os.listdir(filepath)  # Files were written.
                raise Interrupted(filepath)

        real.write_out = interrupted
        return real

    monkeypatch.setattr(export_impl, "_archive", archive)
    return calls


def test_interrupted_serving_export_publishes_nothing(
    tiny, tmp_path, monkeypatch
):
    base = tmp_path / "serving"
    base.mkdir()
    calls = interrupt_write_out(monkeypatch, after=2)
    with pytest.raises(Interrupted):
        export.export_for_serving(tiny, base, NAME, widths=[0.25, 0.5])
    assert len(calls) == 2
    # The first width was complete, but nothing is published: no version
    # folder, no staging folder, no models.config.
    assert visible_entries(base) == []


def test_interrupted_rename_publishes_nothing(tiny, tmp_path, monkeypatch):
    base = tmp_path / "serving"
    real_replace = os.replace

    def failing_replace(source, target):
        if os.path.basename(target) == "1":
            raise OSError(f"interrupted renaming {source}")
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="interrupted"):
        export.export_for_serving(tiny, base, NAME, widths=[0.25])
    assert visible_entries(base) == []


def test_interrupted_saved_model_export_leaves_nothing(
    tiny, tmp_path, monkeypatch
):
    interrupt_write_out(monkeypatch, after=1)
    with pytest.raises(Interrupted):
        export.export_saved_model(tiny, tmp_path / "all", widths=[0.25])
    assert visible_entries(tmp_path) == []


def test_interrupted_tflite_write_leaves_nothing(tiny, tmp_path, monkeypatch):
    class FakeConverter:
        optimizations = []

        def convert(self):
            return b"flatbuffer"

    class FakeArchive:
        def add_endpoint(self, *args, **kwargs):
            pass

        def write_out(self, *args, **kwargs):
            pass

    # Only the last step, writing the file, is under test here.
    monkeypatch.setattr(export_impl, "_archive", FakeArchive)
    monkeypatch.setattr(
        tf.lite.TFLiteConverter,
        "from_saved_model",
        staticmethod(lambda path: FakeConverter()),
    )
    real_replace = os.replace

    def failing_replace(source, target):
        if str(target).endswith(".tflite"):
            raise OSError("interrupted")
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", failing_replace)
    target = tmp_path / "out" / "w.tflite"
    with pytest.raises(OSError, match="interrupted"):
        export.export_tflite(tiny, target, width=0.25)
    assert visible_entries(tmp_path / "out") == []
    monkeypatch.setattr(os, "replace", real_replace)
    export.export_tflite(tiny, target, width=0.25)
    assert visible_entries(tmp_path / "out") == ["w.tflite"]
    assert target.read_bytes() == b"flatbuffer"


def test_existing_version_refused_intact_then_overwritten(
    tiny, tmp_path, monkeypatch
):
    base = tmp_path / "serving"
    export.export_for_serving(tiny, base, NAME, widths=[0.25])
    version = base / export.served_model_name(NAME, 0.25) / "1"
    before = snapshot(base)
    with pytest.raises(FileExistsError, match=re.escape(str(version))):
        export.export_for_serving(tiny, base, NAME, widths=[0.25])
    # Refused before any work: also when another width would be new.
    with pytest.raises(FileExistsError, match=re.escape(str(version))):
        export.export_for_serving(tiny, base, NAME, widths=[0.25, 0.5])
    assert snapshot(base) == before

    # An overwrite interrupted while writing, or while swapping the folders,
    # leaves the old version as it was.
    interrupt_write_out(monkeypatch, after=1)
    with pytest.raises(Interrupted):
        export.export_for_serving(
            tiny, base, NAME, widths=[0.25], overwrite=True
        )
    monkeypatch.undo()
    assert snapshot(base) == before
    real_replace = os.replace

    def failing_swap(source, target):
        if ".partial-" in str(source) and str(target) == str(version):
            raise OSError("interrupted swap")
        return real_replace(source, target)

    monkeypatch.setattr(os, "replace", failing_swap)
    with pytest.raises(OSError, match="interrupted swap"):
        export.export_for_serving(
            tiny, base, NAME, widths=[0.25], overwrite=True
        )
    monkeypatch.undo()
    assert snapshot(base) == before
    assert visible_entries(version.parent) == ["1"] + [
        f"1/{name}" for name in visible_entries(version)
    ]

    # overwrite=True replaces it, with the model's current weights.
    x = np.random.default_rng(4).normal(size=(2, 8, 8, 3)).astype("float32")
    beta = next(v for v in tiny.weights if v.path == "bn/width_0/beta")
    original = keras.ops.convert_to_numpy(beta)
    try:
        beta.assign(original + 1.0)
        changed = expected(tiny, x, 0.25)
        export.export_for_serving(
            tiny, base, NAME, widths=[0.25], overwrite=True
        )
    finally:
        beta.assign(original)
    after = snapshot(base)
    assert sorted(after) == sorted(before)
    assert after != before
    # The old version, moved aside, is gone.
    assert [p.name for p in version.parent.iterdir()] == ["1"]
    loaded = tf.saved_model.load(str(version))
    served = loaded.signatures["serving_default"](images=tf.constant(x))
    (served,) = served.values()
    assert np.abs(served.numpy() - changed).max() <= SAVED_MODEL_TOLERANCE


def test_existing_saved_model_refused_and_intact(tiny, tmp_path):
    target = tmp_path / "all"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=re.escape(str(target))):
        export.export_saved_model(tiny, target, widths=[0.25])
    assert snapshot(target) == {"keep.txt": b"mine"}


# Errors name the bad value ---------------------------------------------------


@pytest.mark.parametrize(
    "call, error, message",
    [
        (
            lambda m, d: export.export_saved_model(m, d, widths=[0.3]),
            ValueError,
            "0.3",
        ),
        (
            lambda m, d: export.export_saved_model(m, d, widths=[]),
            ValueError,
            r"widths=\[\]",
        ),
        (
            lambda m, d: export.export_saved_model(m, d, widths=0.5),
            ValueError,
            "widths=0.5",
        ),
        (
            lambda m, d: export.export_for_serving(m, d, NAME, version=0),
            ValueError,
            "version=0",
        ),
        (
            lambda m, d: export.export_for_serving(m, d, NAME, version="1"),
            ValueError,
            "version='1'",
        ),
        (
            lambda m, d: export.export_for_serving(m, d, "a b"),
            ValueError,
            "name='a b'",
        ),
        (
            lambda m, d: export.export_for_serving(m, d, NAME, widths=[2]),
            ValueError,
            "Unknown width 2",
        ),
        (
            lambda m, d: export.export_tflite(m, d / "x.tflite", width=0.3),
            ValueError,
            "0.3",
        ),
        (
            lambda m, d: export.export_tflite(
                m, d / "x.tflite", quantization="int8"
            ),
            ValueError,
            "quantization='int8'",
        ),
        (
            lambda m, d: export.export_tflite(m, d, width=0.5),
            IsADirectoryError,
            "path=",
        ),
        (
            lambda m, d: export.export_saved_model("tiny", d),
            TypeError,
            "model='tiny'",
        ),
    ],
)
def test_errors_name_the_bad_value(tiny, tmp_path, call, error, message):
    with pytest.raises(error, match=message):
        call(tiny, tmp_path)
    assert visible_entries(tmp_path) == []


# models.config: escaped strings, servable names -----------------------------


def parse_models_config(base):
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse((base / "models.config").read_text(), config)
    return config.model_config_list.config


@pytest.mark.parametrize(
    "server_base",
    [
        '/models" } config { name: "injected" base_path: "/etc',
        '/models\\" } config { name: \\"injected',
        "/srv/a'b\\c\nd/é",
    ],
)
def test_models_config_escapes_server_base_dir(tiny, tmp_path, server_base):
    export.export_for_serving(
        tiny, tmp_path, NAME, widths=[0.25, 1.0], server_base_dir=server_base
    )
    entries = parse_models_config(tmp_path)
    assert [(e.name, e.base_path) for e in entries] == [
        (name, f"{server_base}/{name}")
        for name in ("s_mobilenet_v1_w0_25", "s_mobilenet_v1_w1_0")
    ]
    assert "injected" not in [e.name for e in entries]


def test_models_config_pins_each_width_to_its_version(tiny, tmp_path):
    export.export_for_serving(tiny, tmp_path, NAME, widths=[0.25, 0.5])
    export.export_for_serving(tiny, tmp_path, NAME, widths=[0.5], version=2)
    pins = {
        e.name: list(e.model_version_policy.specific.versions)
        for e in parse_models_config(tmp_path)
    }
    assert pins == {"s_mobilenet_v1_w0_25": [1], "s_mobilenet_v1_w0_5": [2]}


@pytest.mark.parametrize(
    "name",
    ['m"x', "a/b", "a:b", ".hidden", "-x", "caf\u00e9", "", "a" * 201, 7],
)
def test_names_tf_serving_cannot_serve_are_refused(tiny, tmp_path, name):
    with pytest.raises(ValueError, match=re.escape(f"name={name!r}")):
        export.export_for_serving(tiny, tmp_path, name)
    assert visible_entries(tmp_path) == []


def test_accepted_names(tiny, tmp_path):
    written = export.export_for_serving(
        tiny, tmp_path, "My-model_2", widths=[1]
    )
    assert written == {1.0: tmp_path / "My-model_2_w1_0" / "1"}


def test_server_base_dir_with_nul_is_refused(tiny, tmp_path):
    with pytest.raises(ValueError, match="server_base_dir="):
        export.export_for_serving(tiny, tmp_path, NAME, server_base_dir="/a\0")


# TFLite refuses an existing file ---------------------------------------------


def fake_tflite_conversion(monkeypatch, flatbuffer):
    class FakeConverter:
        optimizations = []

        def convert(self):
            return flatbuffer

    monkeypatch.setattr(
        tf.lite.TFLiteConverter,
        "from_saved_model",
        staticmethod(lambda path: FakeConverter()),
    )


def test_tflite_refuses_an_existing_file_unless_overwrite(
    tiny, tmp_path, monkeypatch
):
    fake_tflite_conversion(monkeypatch, b"new")
    target = tmp_path / "w.tflite"
    target.write_bytes(b"mine")
    with pytest.raises(FileExistsError, match=re.escape(str(target))):
        export.export_tflite(tiny, target, width=0.25)
    assert visible_entries(tmp_path) == ["w.tflite"]
    assert target.read_bytes() == b"mine"
    export.export_tflite(tiny, target, width=0.25, overwrite=True)
    assert visible_entries(tmp_path) == ["w.tflite"]
    assert target.read_bytes() == b"new"


# Leftovers of killed exports -------------------------------------------------


@pytest.fixture(scope="module")
def dead_pid():
    """The id of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_leftovers_of_ended_exports_are_removed(tiny, tmp_path, dead_pid):
    base = tmp_path / "serving"
    export.export_for_serving(tiny, base, NAME, widths=[0.25])
    model_folder = base / export.served_model_name(NAME, 0.25)
    dead = [
        model_folder / f".1.partial-{dead_pid}-0123456789ab",
        model_folder / f".1.old-{dead_pid}-0123456789ab",
        base / f".export.publish-{dead_pid}-0123456789ab",
        base / f".models.config.partial-{dead_pid}-0123456789ab",
    ]
    # A running export's (this process is running) and a user's own.
    kept = [
        model_folder / f".2.partial-{os.getpid()}-0123456789ab",
        model_folder / ".mine",
    ]
    for path in dead + kept:
        (path / "variables").mkdir(parents=True)
        (path / "saved_model.pb").write_bytes(b"")
    export.export_for_serving(tiny, base, NAME, widths=[0.5])
    for path in dead:
        assert not path.exists(), path
    for path in kept:
        assert path.exists(), path
    # Nothing left looks like a version to TF Serving (numeric names).
    for folder in base.iterdir():
        if folder.is_dir():
            assert [p.name for p in folder.iterdir() if p.name.isdigit()] == [
                "1"
            ]


def test_saved_model_moved_aside_by_a_killed_export_is_restored(
    tiny, tmp_path, dead_pid
):
    # Killed between moving the old folder aside and moving the new one in.
    retired = tmp_path / f".all.old-{dead_pid}-0123456789ab"
    retired.mkdir()
    (retired / "saved_model.pb").write_bytes(b"old")
    partial = tmp_path / f".all.partial-{dead_pid}-0123456789ab"
    partial.mkdir()
    with pytest.raises(FileExistsError):
        export.export_saved_model(tiny, tmp_path / "all", widths=[0.25])
    assert visible_entries(tmp_path) == ["all", "all/saved_model.pb"]
    assert (tmp_path / "all" / "saved_model.pb").read_bytes() == b"old"


def test_tflite_scratch_of_a_killed_export_is_removed(
    tiny, tmp_path, monkeypatch, dead_pid
):
    fake_tflite_conversion(monkeypatch, b"flatbuffer")
    scratch = tmp_path / f".w.tflite.scratch-{dead_pid}-0123456789ab"
    (scratch / "variables").mkdir(parents=True)
    export.export_tflite(tiny, tmp_path / "w.tflite", width=0.25)
    assert visible_entries(tmp_path) == ["w.tflite"]


# The command line ------------------------------------------------------------


def run_cli(*args):
    env = dict(os.environ)
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # What a user's shell has.
    return subprocess.run(
        [sys.executable, "-m", "keras_slimmable.export", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_cli_help_does_not_import_tensorflow():
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "keras_slimmable.export"]
        + ["--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "--weights" in result.stdout
    assert "defaults to the model's widest" in result.stdout
    imported = [
        line.split("|")[-1].strip() for line in result.stderr.splitlines()
    ]
    assert "absl" in imported
    assert "tensorflow" not in imported
    assert "keras" not in imported


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--model=s_mobilenet_v1", "--format=tflite", "--out=x.tflite"],
            "--weights is required: 'imagenet', a reference checkpoint "
            "(.pt/.pth), a .weights.h5 file, or 'none' for random",
        ),
        (
            ["--model=nope", "--weights=none", "--out=x"],
            "Unknown --model=nope. Choose one of: autoslim_mnasnet, ",
        ),
        (
            ["--model=s_mobilenet_v1", "--weights=none", "--out=x"]
            + ["--width=0.5"],
            "--width is for --format tflite",
        ),
        (
            ["--model=s_mobilenet_v1", "--weights=none", "--out=x.tflite"]
            + ["--format=tflite", "--width=0.5", "--widths=0.25,1.0"],
            "Give --width (a file of one width) or --widths",
        ),
    ],
)
def test_cli_errors_are_one_message(tmp_path, args, message):
    result = run_cli(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert message in result.stderr
    assert "python -m keras_slimmable.export: error:" in result.stderr
    assert "cuInit" not in result.stderr


@pytest.mark.slow
def test_cli_tflite_names_the_width_and_the_random_weights(tmp_path):
    out = tmp_path / "m.tflite"
    args = ["--model=s_mobilenet_v1", "--format=tflite", f"--out={out}"]
    args += ["--image_size=32", "--classes=10"]
    result = run_cli(*args, "--weights=none")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "random (untrained) weights" in result.stdout
    assert "at width 1.0 (the widest; --width picks another)" in result.stdout
    # Only the command's own output: no TensorFlow or converter logs.
    assert result.stderr == ""
    assert out.is_file()
    before = out.read_bytes()

    result = run_cli(*args, "--weights=none", "--width=0.25")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{out} already exists" in result.stderr
    assert "Pass --overwrite to replace it." in result.stderr
    assert "overwrite=True" not in result.stderr
    assert out.read_bytes() == before


@pytest.mark.slow
def test_cli_tflite_writes_one_file_with_a_signature_per_width(tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    out = tmp_path / "all.tflite"
    result = run_cli(
        "--model=s_mobilenet_v1",
        "--weights=none",
        "--format=tflite",
        "--widths=all",
        "--image_size=32",
        "--classes=10",
        f"--out={out}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "at widths 0.25, 0.5, 0.75, 1.0" in result.stdout
    signatures = Interpreter(model_path=str(out)).get_signature_list()
    assert set(signatures) == {
        "serving_default",
        "serving_w0_25",
        "serving_w0_5",
        "serving_w0_75",
        "serving_w1_0",
    }
