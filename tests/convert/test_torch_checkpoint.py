"""Tests of the torch-free PyTorch checkpoint reader.

The small checkpoints here are built by hand, without torch: a tiny pickle
writer emits the opcodes `torch.save` emits, and the zip and legacy layouts
are assembled around it.
"""

import collections
import io
import json
import os
import pickle
import re
import struct
import zipfile
from pathlib import Path
from typing import Any
from typing import NamedTuple

import numpy as np
import pytest

from keras_slimmable.convert import torch_checkpoint
from keras_slimmable.convert.torch_checkpoint import CheckpointError
from keras_slimmable.convert.torch_checkpoint import CheckpointFormatError
from keras_slimmable.convert.torch_checkpoint import UnsafeCheckpointError
from keras_slimmable.convert.torch_checkpoint import load_state_dict
from keras_slimmable.convert.torch_checkpoint import read_torch_checkpoint

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
OFFICIAL = SHARED / "fixtures" / "official"
COUNTS = SHARED / "reference" / "counts.json"

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
FORMATS = ("zip", "legacy")

# ---------------------------------------------------------------------------
# A minimal writer of protocol-2 pickles and of both checkpoint layouts.
# ---------------------------------------------------------------------------


class Global(NamedTuple):
    """Pickles as the GLOBAL opcode for `module.name`."""

    module: str
    name: str


class Call(NamedTuple):
    """Pickles as `func(*args)` (REDUCE)."""

    func: Any
    args: tuple


class Build(NamedTuple):
    """Pickles as `obj`, then BUILD with `state`."""

    obj: Any
    state: Any


class Persistent(NamedTuple):
    """Pickles as the persistent id `pid` (BINPERSID)."""

    pid: tuple


class Storage(NamedTuple):
    """A storage: its key and elements (1-D, native byte order)."""

    key: str
    data: np.ndarray
    untyped: bool = False


class Tensor(NamedTuple):
    """A tensor viewing `storage`; offset and strides count elements."""

    storage: Storage
    offset: int
    shape: tuple
    strides: tuple
    parameter: bool = False
    dtype: str | None = None  # torch dtype for _rebuild_tensor_v3
    view: tuple | None = None  # legacy storage view (key, offset, size)


STORAGE_TYPES = {
    "float32": "FloatStorage",
    "float64": "DoubleStorage",
    "float16": "HalfStorage",
    "bfloat16": "BFloat16Storage",
    "int64": "LongStorage",
    "int32": "IntStorage",
    "int16": "ShortStorage",
    "int8": "CharStorage",
    "uint8": "ByteStorage",
    "bool": "BoolStorage",
}


def dumps(obj, legacy=False):
    """Pickles `obj` (plain data and the node types above), protocol 2."""
    out = bytearray(b"\x80\x02")

    def emit(value):
        if isinstance(value, Global):
            out.extend(f"c{value.module}\n{value.name}\n".encode())
        elif isinstance(value, Call):
            emit(value.func)
            emit(tuple(value.args))
            out.extend(b"R")
        elif isinstance(value, Build):
            emit(value.obj)
            emit(value.state)
            out.extend(b"b")
        elif isinstance(value, Persistent):
            emit(value.pid)
            out.extend(b"Q")
        elif isinstance(value, Tensor):
            emit(tensor_call(value, legacy))
        elif isinstance(value, Storage):  # a bare storage
            emit(storage_pid(value, legacy))
        elif value is None:
            out.extend(b"N")
        elif value is True or value is False:
            out.extend(b"\x88" if value else b"\x89")
        elif isinstance(value, int):
            size = (value.bit_length() + 8) // 8
            out.extend(b"\x8a" + bytes([size]))
            out.extend(value.to_bytes(size, "little", signed=True))
        elif isinstance(value, float):
            out.extend(b"G" + struct.pack(">d", value))
        elif isinstance(value, str):
            data = value.encode()
            out.extend(b"X" + struct.pack("<I", len(data)) + data)
        elif isinstance(value, collections.OrderedDict):
            emit(Call(Global("collections", "OrderedDict"), ()))
            emit_items(value)
        elif isinstance(value, dict):
            out.extend(b"}")
            emit_items(value)
        elif isinstance(value, list):
            out.extend(b"](")
            for item in value:
                emit(item)
            out.extend(b"e")
        elif isinstance(value, tuple):
            out.extend(b"(")
            for item in value:
                emit(item)
            out.extend(b"t")
        else:
            raise TypeError(f"cannot pickle {type(value).__name__}")

    def emit_items(mapping):
        out.extend(b"(")
        for key, item in mapping.items():
            emit(key)
            emit(item)
        out.extend(b"u")

    emit(obj)
    out.extend(b".")
    return bytes(out)


def storage_pid(storage, legacy, view=None):
    """The persistent id `torch.save` writes for a storage."""
    if storage.untyped:
        kind = Global("torch.storage", "UntypedStorage")
    else:
        kind = Global("torch", STORAGE_TYPES[storage.data.dtype.name])
    pid = ("storage", kind, storage.key, "cpu", storage.data.size)
    return Persistent(pid + (view,) if legacy else pid)


def tensor_call(tensor, legacy):
    """The reduce call `torch.save` writes for a tensor."""
    pid = storage_pid(tensor.storage, legacy, tensor.view)
    hooks = Call(Global("collections", "OrderedDict"), ())
    args = (pid, tensor.offset, tensor.shape, tensor.strides, False, hooks)
    if tensor.dtype is None:
        call = Call(Global("torch._utils", "_rebuild_tensor_v2"), args)
    else:
        dtype = Global("torch", tensor.dtype)
        rebuild = Global("torch._utils", "_rebuild_tensor_v3")
        call = Call(rebuild, args + (dtype,))
    if tensor.parameter:
        rebuild = Global("torch._utils", "_rebuild_parameter")
        call = Call(rebuild, (call, True, hooks))
    return call


def storage_bytes(storage, big_endian):
    data = storage.data.byteswap() if big_endian else storage.data
    return data.tobytes()


def zip_bytes(obj, storages, byteorder="little", extra=()):
    """A zip-format checkpoint laid out as `torch.save` does."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", dumps(obj))
        archive.writestr("archive/byteorder", byteorder)
        for storage in [*storages, *extra]:
            archive.writestr(
                f"archive/data/{storage.key}",
                storage_bytes(storage, byteorder == "big"),
            )
        archive.writestr("archive/version", "3\n")
    return buffer.getvalue()


def legacy_bytes(obj, storages, little_endian=True, header=None):
    """A legacy-format checkpoint laid out as `torch.save` does."""
    info = {
        "protocol_version": 1001,
        "little_endian": little_endian,
        "type_sizes": {"short": 2, "int": 4, "long": 4},
    }
    order = "<q" if little_endian else ">q"
    parts = [
        header or pickle.dumps(LEGACY_MAGIC, protocol=2),
        pickle.dumps(1001, protocol=2),
        pickle.dumps(info, protocol=2),
        dumps(obj, legacy=True),
        pickle.dumps([storage.key for storage in storages], protocol=2),
    ]
    for storage in storages:
        parts.append(struct.pack(order, storage.data.size))
        parts.append(storage_bytes(storage, not little_endian))
    return b"".join(parts)


def checkpoint_bytes(fmt, obj, storages):
    if fmt == "zip":
        return zip_bytes(obj, storages)
    return legacy_bytes(obj, storages)


def write(path, fmt, obj, storages, **options):
    if fmt == "zip":
        path.write_bytes(zip_bytes(obj, storages, **options))
    else:
        path.write_bytes(legacy_bytes(obj, storages, **options))
    return path


# ---------------------------------------------------------------------------
# The hand-made sample: views, offsets, several dtypes, nested containers.
# ---------------------------------------------------------------------------

GRID = np.arange(60, dtype=np.float32).reshape(6, 10) / 4


def sample():
    """Returns (object to pickle, storages, expected read result)."""
    floats = Storage("0", GRID.ravel())
    halves = Storage(
        "1", np.array([0.5, -2, 65504, 1e-3, np.inf, -0.0], np.float16)
    )
    longs = Storage(
        "2", np.array([-5, 2**40, 7, -(2**63), 2**63 - 1], np.int64)
    )
    step = Storage("3", np.array([123], np.int64))
    flags = Storage("4", np.array([True, False, True]))
    weight = Storage("5", np.array([1.5, -1.25, 3.0, 0.0], np.float64))
    obj = {
        "model": collections.OrderedDict(
            [
                ("grid", Tensor(floats, 0, (6, 10), (10, 1))),
                ("transposed", Tensor(floats, 0, (10, 6), (1, 10))),
                ("block", Tensor(floats, 12, (3, 5), (10, 1))),
                ("block_t", Tensor(floats, 23, (3, 3), (1, 10))),
                ("strided", Tensor(floats, 1, (3, 3), (20, 4))),
                ("broadcast", Tensor(floats, 30, (2, 3), (0, 1))),
                ("empty", Tensor(floats, 0, (0, 4), (4, 1))),
                ("half", Tensor(halves, 0, (2, 3), (3, 1))),
                ("long", Tensor(longs, 0, (5,), (1,))),
                ("num_batches_tracked", Tensor(step, 0, (), ())),
                ("flags", Tensor(flags, 0, (3,), (1,))),
                ("weight", Tensor(weight, 0, (2, 2), (1, 2), parameter=True)),
            ]
        ),
        "epoch": 7,
        "lr": 0.25,
        "big": 2**70,
        "arch": "s_mobilenet_v1",
        "widths": [0.25, 0.5, (0.75, 1.0)],
        "flag": True,
        "nothing": None,
        "pair": (Tensor(longs, 2, (2,), (1,)), "x"),
    }
    storages = [floats, halves, longs, step, flags, weight]
    expected = {
        "model": collections.OrderedDict(
            [
                ("grid", GRID),
                ("transposed", GRID.T),
                ("block", GRID[1:4, 2:7]),
                ("block_t", GRID[2:5, 3:6].T),
                ("strided", GRID[::2, 1::4]),
                ("broadcast", np.broadcast_to(GRID[3, :3], (2, 3))),
                ("empty", np.zeros((0, 4), np.float32)),
                ("half", halves.data.reshape(2, 3)),
                ("long", longs.data),
                ("num_batches_tracked", np.array(123, np.int64)),
                ("flags", np.array([True, False, True])),
                ("weight", weight.data.reshape(2, 2).T),
            ]
        ),
        "epoch": 7,
        "lr": 0.25,
        "big": 2**70,
        "arch": "s_mobilenet_v1",
        "widths": [0.25, 0.5, (0.75, 1.0)],
        "flag": True,
        "nothing": None,
        "pair": (np.array([7, -(2**63)], np.int64), "x"),
    }
    return obj, storages, expected


def assert_same(actual, expected, where="checkpoint"):
    """Exact equality, down to types, dtypes, layout and bits."""
    assert type(actual) is type(expected), where
    if isinstance(expected, np.ndarray):
        assert actual.dtype == expected.dtype, where
        assert actual.shape == expected.shape, where
        assert actual.flags.c_contiguous, where
        assert actual.tobytes() == np.ascontiguousarray(expected).tobytes()
    elif isinstance(expected, dict):
        assert list(actual) == list(expected), where
        for key in expected:
            assert_same(actual[key], expected[key], f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert len(actual) == len(expected), where
        for i, (a, b) in enumerate(zip(actual, expected)):
            assert_same(a, b, f"{where}[{i}]")
    else:
        assert actual == expected, where


# ---------------------------------------------------------------------------
# Round trips of hand-made checkpoints.
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(tmp_path, fmt):
    obj, storages, expected = sample()
    path = write(tmp_path / "sample.pt", fmt, obj, storages)
    assert_same(read_torch_checkpoint(path), expected)


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_big_endian(tmp_path, fmt):
    obj, storages, expected = sample()
    if fmt == "zip":
        options = {"byteorder": "big"}
    else:
        options = {"little_endian": False}
    path = write(tmp_path / "sample.pt", fmt, obj, storages, **options)
    assert_same(read_torch_checkpoint(path), expected)


@pytest.mark.parametrize("fmt", FORMATS)
def test_arrays_are_writable_and_independent_views_are_copies(tmp_path, fmt):
    obj, storages, _ = sample()
    path = write(tmp_path / "sample.pt", fmt, obj, storages)
    model = read_torch_checkpoint(path)["model"]
    assert all(array.flags.writeable for array in model.values())
    assert not np.shares_memory(model["block"], model["grid"])
    assert not np.shares_memory(model["transposed"], model["grid"])


@pytest.mark.parametrize("fmt", FORMATS)
def test_str_path_and_pathlike_both_work(tmp_path, fmt):
    obj, storages, expected = sample()
    path = write(tmp_path / "sample.pt", fmt, obj, storages)
    assert_same(read_torch_checkpoint(str(path)), expected)


@pytest.mark.parametrize("fmt", FORMATS)
def test_untyped_storage_with_dtype(tmp_path, fmt):
    values = np.array([1, 65535, 300], np.uint16)
    raw = Storage("0", values.view(np.uint8), untyped=True)
    obj = {"u16": Tensor(raw, 1, (2,), (1,), dtype="uint16"), "t": "x"}
    path = write(tmp_path / "v3.pt", fmt, obj, [raw])
    assert_same(read_torch_checkpoint(path), {"u16": values[1:], "t": "x"})


@pytest.mark.parametrize("fmt", FORMATS)
def test_bfloat16(tmp_path, fmt):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    values = np.array([1.5, -2.0, 3.25, 1e30], ml_dtypes.bfloat16)
    storage = Storage("0", values)
    obj = {"bf": Tensor(storage, 0, (2, 2), (1, 2))}
    path = write(tmp_path / "bf16.pt", fmt, obj, [storage])
    result = read_torch_checkpoint(path)
    assert_same(result, {"bf": values.reshape(2, 2).T.copy()})


@pytest.mark.parametrize("fmt", FORMATS)
def test_dtype_objects_and_bare_storages(tmp_path, fmt):
    storage = Storage("0", np.array([3, 1, 2], np.int32))
    obj = {"dtype": Global("torch", "float16"), "storage": storage}
    path = write(tmp_path / "misc.pt", fmt, obj, [storage])
    result = read_torch_checkpoint(path)
    assert result["dtype"] == np.dtype(np.float16)
    assert_same(result["storage"], storage.data)


def test_legacy_storage_view(tmp_path):
    floats = Storage("0", GRID.ravel())
    view = ("0-view", 20, 10)
    obj = {"v": Tensor(floats, 1, (2, 3), (1, 2), view=view)}
    path = write(tmp_path / "view.pt", "legacy", obj, [floats])
    result = read_torch_checkpoint(path)
    window = GRID.ravel()[20:30]
    expected = np.array(
        [[window[1 + i + 2 * j] for j in range(3)] for i in range(2)]
    )
    assert_same(result, {"v": expected})


@pytest.mark.parametrize("fmt", FORMATS)
def test_storages_are_read_lazily_and_once(tmp_path, fmt, monkeypatch):
    obj, storages, _ = sample()
    reader = {"zip": torch_checkpoint._ZipReader}.get(
        fmt, torch_checkpoint._LegacyReader
    )
    calls = collections.Counter()
    original = reader.read_storage

    def counting(self, storage):
        calls[storage.key] += 1
        return original(self, storage)

    monkeypatch.setattr(reader, "read_storage", counting)
    options = {}
    if fmt == "zip":  # an unused record is never read
        options["extra"] = [Storage("9", np.zeros(1000, np.float32))]
    path = write(tmp_path / "sample.pt", fmt, obj, storages, **options)
    read_torch_checkpoint(path)
    assert calls == {storage.key: 1 for storage in storages}


@pytest.mark.parametrize("fmt", FORMATS)
def test_load_state_dict_strips_module_prefix(tmp_path, fmt):
    step = Storage("0", np.array([5], np.int64))
    bias = Storage("1", np.array([1.0, 2.0], np.float32))
    state = collections.OrderedDict(
        [
            ("module.fc.bias", Tensor(bias, 0, (2,), (1,))),
            ("module.bn.num_batches_tracked", Tensor(step, 0, (), ())),
        ]
    )
    for wrapper in ("model", "state_dict", None):
        obj = state if wrapper is None else {wrapper: state, "epoch": 3}
        path = write(tmp_path / "sd.pt", fmt, obj, [bias, step])
        result = load_state_dict(path)
        assert_same(
            result,
            {
                "fc.bias": bias.data,
                "bn.num_batches_tracked": np.array(5, np.int64),
            },
        )


@pytest.mark.parametrize("fmt", FORMATS)
def test_load_state_dict_rejects_non_tensor_entries(tmp_path, fmt):
    obj = {"model": {"module.fc.weight": "not a tensor"}}
    path = write(tmp_path / "sd.pt", fmt, obj, [])
    with pytest.raises(CheckpointFormatError, match="'module.fc.weight'"):
        load_state_dict(path)


# ---------------------------------------------------------------------------
# Malicious pickles: refused by name, nothing runs.
# ---------------------------------------------------------------------------


PAYLOADS = ["posix.system", "os.system", "builtins.eval", "builtins.exec"]


def payload(qualified_name, marker):
    """A call of `qualified_name` that would create the file `marker`."""
    module, name = qualified_name.rsplit(".", 1)
    command = f"touch {marker}"
    if name != "system":
        command = f"__import__('os').system({command!r})"
    return Call(Global(module, name), (command,))


@pytest.mark.skipif(os.name != "posix", reason="the payloads use touch")
@pytest.mark.parametrize("qualified_name", PAYLOADS)
def test_payloads_are_live_under_plain_pickle(tmp_path, qualified_name):
    """The payloads below do run when unpickled without restrictions."""
    marker = tmp_path / "ran"
    pickle.loads(dumps(payload(qualified_name, marker)))
    assert marker.exists()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("qualified_name", PAYLOADS)
def test_malicious_global_is_refused(tmp_path, fmt, qualified_name):
    marker = tmp_path / "pwned"
    obj, storages, _ = sample()
    obj["model"]["evil"] = payload(qualified_name, marker)
    path = write(tmp_path / "evil.pt", fmt, obj, storages)
    with pytest.raises(UnsafeCheckpointError) as info:
        read_torch_checkpoint(path)
    message = str(info.value)
    assert f"refusing to load global '{qualified_name}'" in message
    assert str(path) in message
    assert not marker.exists()


@pytest.mark.parametrize("fmt", FORMATS)
def test_malicious_storage_type_is_refused(tmp_path, fmt):
    marker = tmp_path / "pwned"
    evil = payload("posix.system", marker)
    pid = ("storage", evil, "0", "cpu", 1)
    obj = {"x": Persistent(pid + (None,) if fmt == "legacy" else pid)}
    path = write(tmp_path / "evil.pt", fmt, obj, [])
    with pytest.raises(UnsafeCheckpointError, match="'posix.system'"):
        read_torch_checkpoint(path)
    assert not marker.exists()


def test_malicious_legacy_header_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    header = dumps(payload("posix.system", marker))
    path = tmp_path / "evil.pt"
    path.write_bytes(legacy_bytes({}, [], header=header))
    with pytest.raises(UnsafeCheckpointError, match="'posix.system'"):
        read_torch_checkpoint(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "module, name",
    [
        ("torch", "load"),
        ("torch._utils", "_rebuild_device_tensor_from_numpy"),
        ("torch", "QInt8Storage"),
        ("collections", "defaultdict"),
        ("copyreg", "_reconstructor"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("builtins", "getattr"),
        ("subprocess", "Popen"),
    ],
)
def test_other_globals_are_refused(tmp_path, module, name):
    obj = {"x": Call(Global(module, name), ())}
    path = write(tmp_path / "other.pt", "zip", obj, [])
    with pytest.raises(
        UnsafeCheckpointError, match=re.escape(module + "." + name)
    ):
        read_torch_checkpoint(path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_build_cannot_tamper_with_a_tensor(tmp_path, fmt):
    floats = Storage("0", GRID.ravel())
    tensor = Tensor(floats, 0, (2,), (1,))
    obj = {"x": Build(tensor, (None, {"offset": 10**6, "shape": (10**6,)}))}
    path = write(tmp_path / "build.pt", fmt, obj, [floats])
    with pytest.raises(CheckpointFormatError, match="cannot read"):
        read_torch_checkpoint(path)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    "offset, shape, strides",
    [
        (0, (7, 10), (10, 1)),  # one row too many
        (59, (2,), (1,)),
        (0, (2, 3), (58, 1)),
        (-1, (2,), (1,)),
        (0, (2,), (-1,)),
        (0, (2, 3), (1,)),
        (0.5, (2,), (1,)),
        (0, "ab", (1, 1)),
        (0, (0, 2**62 - 1, 2**62 - 1), (1, 1, 1)),  # empty, yet too big
    ],
)
def test_bad_tensor_layout_is_refused(tmp_path, fmt, offset, shape, strides):
    floats = Storage("0", GRID.ravel())
    obj = {"x": Tensor(floats, offset, shape, strides)}
    path = write(tmp_path / "layout.pt", fmt, obj, [floats])
    with pytest.raises(CheckpointFormatError) as info:
        read_torch_checkpoint(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------------------
# Truncated and corrupt files.
# ---------------------------------------------------------------------------


def positions(size):
    """Byte positions to damage: both ends densely, the middle sparsely."""
    return sorted({*range(64), *range(0, size, 7), *range(size - 64, size)})


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncations_are_reported(tmp_path, fmt):
    obj, storages, _ = sample()
    data = checkpoint_bytes(fmt, obj, storages)
    path = tmp_path / "cut.pt"
    for size in positions(len(data)):
        path.write_bytes(data[:size])
        with pytest.raises(CheckpointFormatError) as info:
            read_torch_checkpoint(path)
        assert str(path) in str(info.value), size


def test_truncated_legacy_storage_message(tmp_path):
    floats = Storage("7", np.ones(1024, np.float32))
    obj = {"x": Tensor(floats, 0, (1024,), (1,))}
    data = legacy_bytes(obj, [floats])
    path = tmp_path / "cut.pt"
    path.write_bytes(data[:-4000])
    message = f"'{path}' is truncated: storage '7' needs 4096 bytes, found 96"
    with pytest.raises(CheckpointFormatError, match=re.escape(message)):
        read_torch_checkpoint(path)


def test_short_zip_record_message(tmp_path):
    floats = Storage("3", np.ones(1024, np.float32))
    short = Storage("3", np.ones(25, np.float32))
    obj = {"x": Tensor(floats, 0, (1024,), (1,))}
    path = tmp_path / "short.pt"
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/data.pkl", dumps(obj))
        archive.writestr("archive/data/3", short.data.tobytes())
    path.write_bytes(buffer.getvalue())
    message = "is truncated: storage '3' needs 4096 bytes, found 100"
    with pytest.raises(CheckpointFormatError, match=re.escape(message)):
        read_torch_checkpoint(path)


@pytest.mark.parametrize(
    "head", [b"", b"\x80", b"PK\x03\x04", b"\x80\x02\x8a\x0a"], ids=repr
)
def test_random_bytes_are_not_a_checkpoint(tmp_path, head):
    rng = np.random.default_rng(0)
    path = tmp_path / "random.pt"
    path.write_bytes(head + rng.bytes(4096))
    with pytest.raises(CheckpointFormatError) as info:
        read_torch_checkpoint(path)
    assert str(path) in str(info.value)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.pt"
    path.write_bytes(b"")
    with pytest.raises(CheckpointFormatError, match="is empty"):
        read_torch_checkpoint(path)


def test_zip_without_data_pkl(tmp_path):
    path = tmp_path / "other.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "hi")
    with pytest.raises(CheckpointFormatError, match="not a PyTorch checkpoint"):
        read_torch_checkpoint(path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_flipped_bytes_never_leak_other_errors(tmp_path, fmt):
    """A corrupted byte gives a result or a CheckpointError, nothing else."""
    obj, storages, _ = sample()
    data = bytearray(checkpoint_bytes(fmt, obj, storages))
    path = tmp_path / "flipped.pt"
    for position in positions(len(data)):
        data[position] ^= 0x80
        path.write_bytes(data)
        try:
            read_torch_checkpoint(path)
        except CheckpointError as error:
            assert str(path) in str(error)
        data[position] ^= 0x80


# ---------------------------------------------------------------------------
# The official fixtures, against facts from ARCHITECTURES.md and counts.json.
# ---------------------------------------------------------------------------


def make_divisible(value, divisor=8):
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


# model -> (widths, number of keys, {key: shape}, BN prefix, BN sizes)
OFFICIAL_FACTS = {
    "s_mobilenet_v1": (
        (0.25, 0.5, 0.75, 1.0),
        # 27 convs (stem, 13 x depthwise + pointwise), a switchable BN of
        # 5 entries per width after each, the classifier's weight and bias.
        27 + 27 * 4 * 5 + 2,
        {
            "features.0.0.weight": (32, 3, 3, 3),
            "classifier.0.weight": (1000, 1024),
        },
        "features.0.1",
        [make_divisible(32 * w) for w in (0.25, 0.5, 0.75, 1.0)],
    ),
    "s_mobilenet_v2": (
        (0.35, 0.5, 0.75, 1.0),
        # Stem conv, 2 convs in the t == 1 block, 3 in the 16 others, tail
        # conv: 52 convs; 51 switchable BNs, one plain BN, classifier.
        52 + 51 * 4 * 5 + 5 + 2,
        {
            "features.0.0.weight": (32, 3, 3, 3),
            "features.18.0.weight": (1280, 320, 1, 1),
            "features.18.1.running_var": (1280,),
            "classifier.0.weight": (1000, 1280),
        },
        "features.0.1",
        [make_divisible(32 * w) for w in (0.35, 0.5, 0.75, 1.0)],
    ),
    "s_shufflenet": (
        (0.5, 1.0, 2.0),
        # 3 stem convs with BNs; 16 units of 3 + 1 + 3 convs with BNs.
        3 + 3 * 3 * 5 + 16 * (7 + 7 * 3 * 5) + 2,
        {
            "head_0.0.weight": (48 // 3, 3, 3, 3),
            "classifier.0.weight": (1000, 1920),
        },
        "head_0.1",
        [int(24 * w) // 3 for w in (0.5, 1.0, 2.0)],
    ),
    "s_resnet50": (
        (0.25, 0.5, 0.75, 1.0),
        # Stem conv, 16 bottlenecks of 3 convs, 4 projection shortcuts.
        53 + 53 * 4 * 5 + 2,
        {
            "features.0.0.weight": (64, 3, 7, 7),
            "classifier.0.weight": (1000, 2048),
        },
        "features.0.1",
        [int(64 * w) for w in (0.25, 0.5, 0.75, 1.0)],
    ),
}


def official_path(model):
    path = OFFICIAL / f"{model}.pt"
    if not path.is_file():
        pytest.skip(f"official fixture {path} is not available")
    return path


@pytest.fixture(scope="module")
def official_state_dict():
    """Reads each official checkpoint at most once per test module."""
    cache = {}

    def load(model):
        if model not in cache:
            cache[model] = load_state_dict(official_path(model))
        return cache[model]

    return load


def test_official_fixtures_cover_both_formats():
    zipped = official_path("s_mobilenet_v1")
    legacy = official_path("s_mobilenet_v2")
    assert zipfile.is_zipfile(zipped)
    assert not zipfile.is_zipfile(legacy)
    magic = pickle.dumps(LEGACY_MAGIC, protocol=2)
    assert legacy.read_bytes()[: len(magic)] == magic


@pytest.mark.parametrize("model", ["s_mobilenet_v1", "s_mobilenet_v2"])
def test_official_raw_layout(model):
    raw = read_torch_checkpoint(official_path(model))
    assert type(raw) is dict and list(raw) == ["model"]
    assert type(raw["model"]) is collections.OrderedDict
    assert all(key.startswith("module.") for key in raw["model"])


@pytest.mark.parametrize("model", sorted(OFFICIAL_FACTS))
def test_official_state_dict(official_state_dict, model):
    widths, count, shapes, bn_prefix, bn_sizes = OFFICIAL_FACTS[model]
    state = official_state_dict(model)
    assert len(state) == count
    assert not any(key.startswith("module.") for key in state)
    for key, shape in shapes.items():
        assert state[key].shape == shape, key
    for i, size in enumerate(bn_sizes):
        for entry in ("weight", "bias", "running_mean", "running_var"):
            assert state[f"{bn_prefix}.bn.{i}.{entry}"].shape == (size,)
    steps = [k for k in state if k.endswith(".num_batches_tracked")]
    assert steps
    for step in steps:  # every BN has its four 1-D siblings
        prefix = step.removesuffix("num_batches_tracked")
        sizes = {
            state[prefix + entry].shape
            for entry in ("weight", "bias", "running_mean", "running_var")
        }
        assert len(sizes) == 1 and len(sizes.pop()) == 1, prefix
    for key, value in state.items():
        assert value.flags.c_contiguous, key
        if key.endswith("num_batches_tracked"):
            assert value.dtype == np.int64 and value.shape == (), key
        else:
            assert value.dtype == np.float32, key
            assert np.isfinite(value).all(), key


@pytest.mark.parametrize("model", sorted(OFFICIAL_FACTS))
def test_official_parameter_counts(official_state_dict, model):
    if not COUNTS.is_file():
        pytest.skip(f"{COUNTS} is not available")
    widths = OFFICIAL_FACTS[model][0]
    widest = json.loads(COUNTS.read_text())[model][str(float(widths[-1]))]
    state = official_state_dict(model)
    conv_fc = sum(
        value.size
        for key, value in state.items()
        if value.ndim == 4 or key.startswith("classifier.")
    )
    assert conv_fc == widest["conv_fc_params"]
    last = len(widths) - 1
    affine = sum(
        value.size
        for key, value in state.items()
        if key.endswith((f".bn.{last}.weight", f".bn.{last}.bias"))
        or (
            key.startswith("features.18.1.")
            and key.endswith(("weight", "bias"))
        )
    )
    assert affine == widest["bn_affine_params"]
