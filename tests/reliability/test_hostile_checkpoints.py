"""Hostile checkpoint files: small files must not cost large memory.

Each file here is a few hundred bytes to about a megabyte and declares far
more: a stride-0 tensor of 16384 x 16384 elements over one stored float, a
deflate bomb that expands to 512 MiB, thousands of transposed views of one
storage. The reader runs in a subprocess whose address space is capped a
few hundred MiB above its start (so a regression fails with a MemoryError
instead of exhausting the machine); the test asserts a clear error, a
small growth of the peak resident memory and a small peak of the memory
traced by tracemalloc. The files are written here byte by byte
(pickle opcodes and zip records): no torch is needed.
"""

import importlib.util
import json
import struct
import subprocess
import sys
import textwrap
import tracemalloc
import zlib

import numpy as np
import pytest

MiB = 1 << 20

# ---------------------------------------------------------------------------
# Writers: the pickle `torch.save` emits for a dict of tensors, and a zip
# archive whose records may be stored or given as raw deflate data.
# ---------------------------------------------------------------------------


def _int(value):
    size = (value.bit_length() + 8) // 8
    return b"\x8a" + bytes([size]) + value.to_bytes(size, "little", signed=True)


def _str(value):
    data = value.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _tuple(items):
    return b"(" + b"".join(items) + b"t"


def _tensor(storage_key, numel, offset, shape, strides, kind="FloatStorage"):
    """`_rebuild_tensor_v2(storage, offset, shape, strides, False, {})`."""
    storage = _tuple(
        [
            _str("storage"),
            f"ctorch\n{kind}\n".encode(),
            _str(storage_key),
            _str("cpu"),
            _int(numel),
        ]
    )
    arguments = _tuple(
        [
            storage + b"Q",
            _int(offset),
            _tuple([_int(n) for n in shape]),
            _tuple([_int(s) for s in strides]),
            b"\x89",
            b"ccollections\nOrderedDict\n)R",
        ]
    )
    return b"ctorch._utils\n_rebuild_tensor_v2\n" + arguments + b"R"


def state_dict_pickle(tensors):
    """A protocol-2 pickle of `{key: tensor}`; `tensors` maps each key to
    the arguments of `_tensor`."""
    items = b"".join(_str(key) + _tensor(*args) for key, args in tensors)
    return b"\x80\x02}(" + items + b"u."


def zip_archive(records):
    """A zip file of `(name, data, raw_deflate, size, crc)` records.

    `raw_deflate` is None for a stored record; otherwise it is the
    compressed bytes of `data`, whose `size` and `crc` are given (so a
    large expansion need not be held in memory here).
    """
    out = bytearray()
    central = bytearray()
    for name, data, raw_deflate, size, crc in records:
        name = name.encode()
        if raw_deflate is None:
            method, payload, size, crc = 0, data, len(data), zlib.crc32(data)
        else:
            method, payload = 8, raw_deflate
        offset = len(out)
        fields = struct.pack(
            "<HHHHHIIIHH", 20, 0, method, 0, 0, crc, len(payload), size,
            len(name), 0,
        )  # fmt: skip
        out += b"PK\x03\x04" + fields + name + payload
        central += (
            b"PK\x01\x02"
            + struct.pack("<H", 20)
            + fields
            + struct.pack("<HHHII", 0, 0, 0, 0, offset)
            + name
        )
    count = len(records)
    end = struct.pack("<HHHHIIH", 0, 0, count, count, len(central), len(out), 0)
    return bytes(out + central + b"PK\x05\x06" + end)


def zeros_deflate(size):
    """Raw deflate data of `size` zero bytes, and their crc32 (fast: one
    16 MiB block compressed once and repeated after a full flush)."""
    block = 16 * MiB
    assert size % block == 0
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    chunk = compressor.compress(bytes(block))
    chunk += compressor.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    zeros = bytes(block)
    for _ in range(size // block):
        crc = zlib.crc32(zeros, crc)
    # b"\x03\x00": an empty final block with fixed Huffman codes.
    return chunk * (size // block) + b"\x03\x00", crc


def checkpoint(tensors, storages, deflated=()):
    """A zip-format checkpoint: `storages` maps keys to stored bytes,
    `deflated` maps keys to `(raw_deflate, size, crc)`."""
    records = [("archive/data.pkl", state_dict_pickle(tensors), None, 0, 0)]
    records.append(("archive/byteorder", b"little", None, 0, 0))
    for key, data in storages.items():
        records.append((f"archive/data/{key}", data, None, 0, 0))
    for key, (raw, size, crc) in dict(deflated).items():
        records.append((f"archive/data/{key}", b"", raw, size, crc))
    records.append(("archive/version", b"3\n", None, 0, 0))
    return zip_archive(records)


# ---------------------------------------------------------------------------
# The reader in a subprocess with a capped address space.
# ---------------------------------------------------------------------------

_READER = textwrap.dedent(
    """
    import importlib.util, json, resource, sys, tracemalloc

    spec = importlib.util.spec_from_file_location("reader", sys.argv[1])
    reader = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(reader)

    def virtual_size():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024

    limit = virtual_size() + int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()  # NumPy reports its array memory to tracemalloc
    try:
        reader.read_torch_checkpoint(sys.argv[2])
        result = {"error": None, "message": ""}
    except BaseException as error:
        result = {"error": type(error).__name__, "message": str(error)}
    result["traced_peak"] = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result["rss_growth"] = (after - before) * 1024
    print(json.dumps(result))
    """
)
_ADDRESS_SPACE_ALLOWANCE = 300 * MiB


def _reader_path():
    # The reader imports only NumPy: load its file alone, without the
    # package (whose import pulls in Keras and TensorFlow).
    package = importlib.util.find_spec("keras_slimmable")
    folder = package.submodule_search_locations[0]
    return f"{folder}/convert/torch_checkpoint.py"


def read_in_subprocess(path):
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _READER,
            _reader_path(),
            str(path),
            str(_ADDRESS_SPACE_ALLOWANCE),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_refused_cheaply(result, *phrases):
    assert result["error"] == "CheckpointFormatError", result
    assert "MemoryError" not in result["message"], result
    for phrase in phrases:
        assert phrase in result["message"], result
    assert result["rss_growth"] < 32 * MiB, result
    assert result["traced_peak"] < 32 * MiB, result


def test_a_stride_zero_tensor_larger_than_its_storage(tmp_path):
    tensors = [("weight", ("0", 1, 0, (16384, 16384), (0, 0)))]
    path = tmp_path / "stride0.pt"
    path.write_bytes(checkpoint(tensors, {"0": np.float32(1).tobytes()}))
    assert path.stat().st_size < 1000

    result = read_in_subprocess(path)
    assert_refused_cheaply(
        result, "(16384, 16384)", "268435456 elements", "1 element"
    )


def test_a_deflate_bomb(tmp_path):
    size = 512 * MiB
    raw, crc = zeros_deflate(size)
    numel = size // 4
    tensors = [("weight", ("0", numel, 0, (numel,), (1,)))]
    path = tmp_path / "bomb.pt"
    path.write_bytes(checkpoint(tensors, {}, {"0": (raw, size, crc)}))
    assert path.stat().st_size < 2 * MiB

    result = read_in_subprocess(path)
    assert_refused_cheaply(result, "archive/data/0", str(size), "compress")


def test_many_views_of_one_storage(tmp_path):
    # 2000 transposed views of one 1 MiB storage would be 2000 MiB of
    # copies from a file of about 1.2 MB.
    side = 512
    tensors = [
        (f"view{i}", ("0", side * side, 0, (side, side), (1, side)))
        for i in range(2000)
    ]
    data = np.zeros(side * side, np.float32).tobytes()
    path = tmp_path / "views.pt"
    path.write_bytes(checkpoint(tensors, {"0": data}))
    assert path.stat().st_size < 2 * MiB

    result = read_in_subprocess(path)
    assert_refused_cheaply(result, "copies")


def test_honest_files_still_read(tmp_path):
    """The same writers, with sizes that match: the limits do not bite."""
    from keras_slimmable.convert.torch_checkpoint import read_torch_checkpoint

    grid = np.arange(12, dtype=np.float32)
    tensors = [
        ("grid", ("0", 12, 0, (3, 4), (4, 1))),
        ("transposed", ("0", 12, 0, (4, 3), (1, 4))),
        ("row", ("0", 12, 4, (4,), (1,))),
        ("broadcast", ("0", 12, 0, (3, 4), (0, 1))),
    ]
    path = tmp_path / "honest.pt"
    path.write_bytes(checkpoint(tensors, {"0": grid.tobytes()}))
    state = read_torch_checkpoint(path)
    np.testing.assert_array_equal(state["grid"], grid.reshape(3, 4))
    np.testing.assert_array_equal(state["transposed"], grid.reshape(3, 4).T)
    np.testing.assert_array_equal(state["row"], grid[4:8])
    np.testing.assert_array_equal(
        state["broadcast"], np.broadcast_to(grid[:4], (3, 4))
    )

    # A compressed record of real-looking weights (it barely compresses).
    weights = np.random.default_rng(0).normal(size=4096).astype(np.float32)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw = compressor.compress(weights.tobytes()) + compressor.flush()
    crc = zlib.crc32(weights.tobytes())
    tensors = [("w", ("0", 4096, 0, (64, 64), (64, 1)))]
    path.write_bytes(checkpoint(tensors, {}, {"0": (raw, 16384, crc)}))
    np.testing.assert_array_equal(
        read_torch_checkpoint(path)["w"], weights.reshape(64, 64)
    )


# ---------------------------------------------------------------------------
# load_reference_checkpoint: the model's shapes are checked first.
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model():
    import keras

    from keras_slimmable import SlimmableDense
    from keras_slimmable import SlimmableModel

    inputs = keras.Input((4,))
    outputs = SlimmableDense((2, 3), name="dense")(inputs)
    return SlimmableModel(inputs, outputs, widths=(0.5, 1.0))


@pytest.fixture
def tiny_key_map():
    return {"dense": "fc"}


def test_a_bomb_of_the_wrong_shape_is_refused_before_reading(
    tmp_path, tiny_model, tiny_key_map
):
    """A 64 MiB weight (deflated to 64 KiB) where the model wants (3, 4):
    the shape is refused before any storage is read."""
    from keras_slimmable.convert.reference import CheckpointMismatchError
    from keras_slimmable.convert.reference import load_reference_checkpoint

    size = 64 * MiB
    raw, crc = zeros_deflate(size)
    bias = np.zeros(3, np.float32).tobytes()
    tensors = [
        ("fc.weight", ("0", size // 4, 0, (size // 16, 4), (4, 1))),
        ("fc.bias", ("1", 3, 0, (3,), (1,))),
    ]
    path = tmp_path / "wrong_shape.pt"
    path.write_bytes(checkpoint(tensors, {"1": bias}, {"0": (raw, size, crc)}))
    before = [np.array(v) for v in tiny_model.weights]

    tracemalloc.start()
    try:
        with pytest.raises(CheckpointMismatchError) as info:
            load_reference_checkpoint(tiny_model, path, tiny_key_map)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "fc.weight: expected (3, 4), found (4194304, 4)" in str(info.value)
    assert peak < 8 * MiB, peak
    for a, b in zip(before, tiny_model.weights):
        np.testing.assert_array_equal(a, np.array(b))


def test_an_int64_weight_in_a_file_is_refused_before_reading(
    tmp_path, tiny_model, tiny_key_map, monkeypatch
):
    from keras_slimmable.convert import torch_checkpoint
    from keras_slimmable.convert.reference import CheckpointMismatchError
    from keras_slimmable.convert.reference import load_reference_checkpoint

    reads = []
    original = torch_checkpoint._ZipReader.read_storage

    def counting(self, storage):
        reads.append(storage.key)
        return original(self, storage)

    monkeypatch.setattr(torch_checkpoint._ZipReader, "read_storage", counting)
    weight = np.arange(12, dtype=np.int64).tobytes()
    bias = np.zeros(3, np.float32).tobytes()
    tensors = [
        ("fc.weight", ("0", 12, 0, (3, 4), (4, 1), "LongStorage")),
        ("fc.bias", ("1", 3, 0, (3,), (1,))),
    ]
    path = tmp_path / "int64.pt"
    path.write_bytes(checkpoint(tensors, {"0": weight, "1": bias}))
    before = [np.array(v) for v in tiny_model.weights]

    with pytest.raises(CheckpointMismatchError, match="fc.weight: int64"):
        load_reference_checkpoint(tiny_model, path, tiny_key_map)
    assert reads == []
    for a, b in zip(before, tiny_model.weights):
        np.testing.assert_array_equal(a, np.array(b))
