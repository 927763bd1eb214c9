"""Read PyTorch checkpoint files without torch and without running code.

`torch.save` writes a pickle, and unpickling runs whatever the pickle asks
for. The reader here uses a restricted unpickler that admits only the few
globals a checkpoint of tensors needs (tensor and parameter rebuild functions,
storage types, dtypes and `collections.OrderedDict`) and implements them with
NumPy, so a malicious file is refused before anything in it runs.

Both serializations are read:

- the zip format (torch >= 1.6): `<archive>/data.pkl` plus one raw record
  `<archive>/data/<key>` per storage;
- the legacy format: a magic-number pickle, a protocol-version pickle, a
  system-info pickle, the main pickle, a pickle of the storage keys, then per
  storage an int64 element count followed by its raw bytes.

Storages are read lazily, once each, however many tensors view them.
"""

import collections
import contextlib
import io
import math
import os
import pickle
import struct
import sys
import zipfile
import zlib
from typing import Any
from typing import NamedTuple

import numpy as np

try:
    import ml_dtypes
except ImportError:  # pragma: no cover - ml_dtypes ships with tensorflow
    ml_dtypes = None

__all__ = [
    "CheckpointError",
    "CheckpointFormatError",
    "UnsafeCheckpointError",
    "load_state_dict",
    "read_torch_checkpoint",
]


class CheckpointError(ValueError):
    """Base class of the errors raised when a checkpoint cannot be read."""


class CheckpointFormatError(CheckpointError):
    """The file is not a readable PyTorch checkpoint (corrupt, truncated)."""


class UnsafeCheckpointError(CheckpointError):
    """The checkpoint's pickle asks for a global outside the allow-list."""


# The first pickle of a legacy checkpoint holds this number.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001
_ZIP_SIGNATURES = (b"PK\x03\x04", b"PK\x05\x06")
_READ_CHUNK = 1 << 24

# Typed storage class name -> NumPy dtype name.
_STORAGE_DTYPES = {
    "FloatStorage": "float32",
    "DoubleStorage": "float64",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128",
}
_UNTYPED_STORAGES = {
    ("torch", "UntypedStorage"),
    ("torch.storage", "UntypedStorage"),
    ("torch", "_UntypedStorage"),
    ("torch.storage", "_UntypedStorage"),
}
# torch dtype attribute name -> NumPy dtype name.
_TORCH_DTYPES = {
    "float32": "float32",
    "float64": "float64",
    "float16": "float16",
    "bfloat16": "bfloat16",
    "int64": "int64",
    "int32": "int32",
    "int16": "int16",
    "int8": "int8",
    "uint8": "uint8",
    "uint16": "uint16",
    "uint32": "uint32",
    "uint64": "uint64",
    "bool": "bool",
    "complex64": "complex64",
    "complex128": "complex128",
    "float8_e4m3fn": "float8_e4m3fn",
    "float8_e5m2": "float8_e5m2",
    "float8_e4m3fnuz": "float8_e4m3fnuz",
    "float8_e5m2fnuz": "float8_e5m2fnuz",
}
_ML_DTYPES = {
    "bfloat16",
    "float8_e4m3fn",
    "float8_e5m2",
    "float8_e4m3fnuz",
    "float8_e5m2fnuz",
}
_REBUILD_FUNCTIONS = {
    "_rebuild_tensor",
    "_rebuild_tensor_v2",
    "_rebuild_tensor_v3",
    "_rebuild_parameter",
    "_rebuild_parameter_with_state",
}
_MAX_NDIM = 64
# Memory stays proportional to what the file holds. A tensor may not have
# more elements than its storage (strides of 0 repeat elements), the copies
# made of views of a storage may total its size plus this allowance, and
# compressed zip records (torch.save never compresses) may expand this many
# times, plus the allowance below, in total.
_COPY_ALLOWANCE = 16 << 20
_MAX_EXPANSION = 16
_EXPANSION_ALLOWANCE = 1 << 20
_MAX_DIM = 1 << 62
_PLAIN_TYPES = (str, bytes, bytearray, int, float, complex, bool, type(None))


def _numpy_dtype(name):
    """NumPy dtype called `name`, or None if ml_dtypes is missing."""
    if name in _ML_DTYPES:
        if ml_dtypes is None:
            return None
        return np.dtype(getattr(ml_dtypes, name))
    return np.dtype(name)


# Placeholders built while unpickling. They are immutable tuples without
# `__setstate__`, so a pickle cannot alter them after they were validated
# (the BUILD opcode fails on them); they become arrays after unpickling.


class _StorageType(NamedTuple):
    name: str
    dtype: np.dtype  # uint8 for untyped storages
    untyped: bool


class _DType(NamedTuple):
    name: str
    dtype: np.dtype


class _StorageRef(NamedTuple):
    key: str
    type: _StorageType
    numel: int  # elements of the whole stored storage
    offset: int  # start of this view, in elements
    size: int  # elements in this view


class _TensorRef(NamedTuple):
    storage: _StorageRef
    dtype: np.dtype  # element type
    offset: int  # in elements of `dtype`
    shape: tuple
    strides: tuple  # in elements of `dtype`


def _describe(error):
    """`Type: message` of an exception, kept short."""
    text = f"{type(error).__name__}: {error}".rstrip(": ")
    return text if len(text) <= 200 else text[:200] + "..."


def _short(value, limit=80):
    """`repr(value)`, cut to `limit` characters: values come from the file."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


class _Unpickler(pickle.Unpickler):
    """Unpickler admitting only what a checkpoint of tensors needs."""

    def __init__(self, file, name, on_storage=None):
        super().__init__(file, encoding="utf-8")
        self._name = name
        self._on_storage = on_storage
        self._storages = {}

    # -- globals -------------------------------------------------------

    def find_class(self, module, name):
        if self._on_storage is not None:
            if (module, name) == ("collections", "OrderedDict"):
                return collections.OrderedDict
            if module == "torch._utils" and name in _REBUILD_FUNCTIONS:
                return getattr(self, name)
            if module in ("torch", "torch.cuda") and name in _STORAGE_DTYPES:
                dtype = self._dtype(_STORAGE_DTYPES[name])
                return _StorageType(f"{module}.{name}", dtype, False)
            if (module, name) in _UNTYPED_STORAGES:
                return _StorageType(f"{module}.{name}", np.dtype("u1"), True)
            if module == "torch" and name in _TORCH_DTYPES:
                return _DType(name, self._dtype(_TORCH_DTYPES[name]))
            allowed = (
                "only tensor and storage rebuilding, torch dtypes and "
                "collections.OrderedDict are allowed"
            )
        else:
            allowed = "this pickle may hold plain data only"
        raise UnsafeCheckpointError(
            f"refusing to load global '{module}.{name}' from checkpoint "
            f"'{self._name}': {allowed}"
        )

    def _dtype(self, name):
        dtype = _numpy_dtype(name)
        if dtype is None:
            raise self._corrupt(
                f"has {name} tensors; reading them needs the ml_dtypes package"
            )
        return dtype

    def persistent_load(self, pid):
        if self._on_storage is None:
            raise self._corrupt(
                f"has a storage reference {_short(pid)} where plain data "
                "was expected"
            )
        if not (
            isinstance(pid, tuple)
            and len(pid) in (5, 6)
            and pid[0] == "storage"
        ):
            raise self._corrupt(
                f"has an unexpected persistent id {_short(pid)}; expected "
                "('storage', storage_type, key, location, numel[, view])"
            )
        _, storage_type, key, location, numel = pid[:5]
        view = pid[5] if len(pid) == 6 else None
        if not isinstance(storage_type, _StorageType):
            raise self._corrupt(
                f"names {_short(storage_type)} as the type of storage "
                f"{_short(key)}; expected a torch storage class"
            )
        if not isinstance(key, str) or not isinstance(location, str):
            raise self._corrupt(
                f"has a storage key {_short(key)} at location "
                f"{_short(location)}; expected two strings"
            )
        if not _is_int(numel) or not 0 <= numel < _MAX_DIM:
            raise self._corrupt(
                f"gives storage {_short(key)} {_short(numel)} elements; "
                "expected an integer >= 0"
            )
        known = self._storages.get(key)
        if known is None:
            known = _StorageRef(key, storage_type, numel, 0, numel)
            self._storages[key] = known
            self._on_storage(known)
        elif known.type.dtype != storage_type.dtype or known.numel != numel:
            raise self._corrupt(
                f"refers to storage {_short(key)} as {numel} x "
                f"{storage_type.dtype} and as {known.numel} x "
                f"{known.type.dtype}"
            )
        if view is None:
            return known
        if not (
            isinstance(view, tuple)
            and len(view) == 3
            and isinstance(view[0], str)
            and _is_int(view[1])
            and _is_int(view[2])
            and 0 <= view[1]
            and 0 <= view[2]
            and view[1] + view[2] <= numel
        ):
            raise self._corrupt(
                f"has a view {_short(view)} of storage {_short(key)}; expected "
                f"(key, offset, size) within its {numel} elements"
            )
        return known._replace(offset=view[1], size=view[2])

    # -- torch._utils functions -------------------------------------------

    def _rebuild_tensor(self, storage, storage_offset, size, stride):
        return self._tensor(storage, storage_offset, size, stride, None)

    def _rebuild_tensor_v2(
        self,
        storage,
        storage_offset,
        size,
        stride,
        requires_grad=False,
        backward_hooks=None,
        metadata=None,
    ):
        return self._tensor(storage, storage_offset, size, stride, None)

    def _rebuild_tensor_v3(
        self,
        storage,
        storage_offset,
        size,
        stride,
        requires_grad,
        backward_hooks,
        dtype,
        metadata=None,
    ):
        if not isinstance(dtype, _DType):
            raise self._corrupt(
                f"rebuilds a tensor with dtype {_short(dtype)}; expected a "
                "torch dtype"
            )
        return self._tensor(storage, storage_offset, size, stride, dtype)

    def _rebuild_parameter(self, data, requires_grad, backward_hooks):
        if not isinstance(data, _TensorRef):
            raise self._corrupt(
                f"wraps a {type(data).__name__} in a Parameter; expected a "
                "tensor"
            )
        return data

    def _rebuild_parameter_with_state(
        self, data, requires_grad, backward_hooks, state
    ):
        return self._rebuild_parameter(data, requires_grad, backward_hooks)

    def _tensor(self, storage, offset, shape, strides, dtype):
        if not isinstance(storage, _StorageRef):
            raise self._corrupt(
                f"rebuilds a tensor from a {type(storage).__name__}; "
                "expected a storage"
            )
        if dtype is None:
            dtype = storage.type.dtype
            elements = storage.size
        else:
            if not storage.type.untyped:
                raise self._corrupt(
                    f"rebuilds a {dtype.name} tensor from the typed storage "
                    f"{storage.key!r} ({storage.type.name}); expected an "
                    "untyped storage"
                )
            dtype = dtype.dtype
            elements = storage.size // dtype.itemsize
        shape, strides = self._check_layout(storage, offset, shape, strides)
        count = math.prod(shape)
        if count > elements:
            raise self._corrupt(
                f"has a tensor of shape {shape} ({count} elements) on storage "
                f"{storage.key!r}, which holds {elements} "
                f"element{'' if elements == 1 else 's'}: a tensor may not "
                "repeat its storage's elements (strides of 0), as reading "
                "it would take memory the file does not hold"
            )
        if (
            count
            and offset + sum((n - 1) * s for n, s in zip(shape, strides))
            >= elements
        ):
            raise self._corrupt(
                f"has a tensor of shape {shape}, strides {strides} and "
                f"offset {offset} that reaches past the {elements} elements "
                f"of storage {storage.key!r}"
            )
        return _TensorRef(storage, dtype, offset, shape, strides)

    def _check_layout(self, storage, offset, shape, strides):
        def valid(values):
            return (
                isinstance(values, (tuple, list))
                and len(values) <= _MAX_NDIM
                and all(_is_int(v) and 0 <= v < _MAX_DIM for v in values)
            )

        if not (
            _is_int(offset)
            and 0 <= offset < _MAX_DIM
            and valid(shape)
            and valid(strides)
            and len(shape) == len(strides)
        ):
            raise self._corrupt(
                f"has a tensor on storage {storage.key!r} with offset "
                f"{_short(offset)}, shape {_short(shape)} and strides "
                f"{_short(strides)}; expected non-negative integers, as "
                "many strides as dimensions"
            )
        return tuple(shape), tuple(strides)

    def _corrupt(self, what):
        return CheckpointFormatError(f"checkpoint '{self._name}' {what}")


class _Reader:
    """Shared logic of the two formats: unpickle, then resolve placeholders."""

    def __init__(self, name, file):
        self.name = name
        self.file = file
        self.size = os.fstat(file.fileno()).st_size
        self.swap_bytes = False  # file byte order differs from ours
        self.storages = {}  # key -> _StorageRef of the whole storage
        self.arrays = {}  # key -> loaded 1-D array of the storage's dtype
        self.copied = 0  # bytes of tensor copies made so far
        self.stored = None  # bytes of all storages, once parsed

    def error(self, what):
        return CheckpointFormatError(f"checkpoint '{self.name}' {what}")

    def unpickle(self, file, what, on_storage=None):
        unpickler = _Unpickler(file, self.name, on_storage)
        try:
            return unpickler.load()
        except CheckpointError:
            raise
        except Exception as error:
            raise self.error(
                f"is truncated or corrupt: cannot read {what} "
                f"({_describe(error)})"
            ) from error

    def record(self, storage):
        self.storages[storage.key] = storage

    def read_storage(self, storage):
        """Returns the storage's bytes as a uint8 array (format-specific)."""
        raise NotImplementedError

    def parse(self):
        """Unpickles the main object, with placeholders for the tensors and
        storages, after checking every declared size against the file and
        before reading any storage (format-specific)."""
        raise NotImplementedError

    def count_copy(self, ref, count):
        """Counts a copy of `count` elements, refusing past the budget."""
        self.copied += count * ref.dtype.itemsize
        if self.stored is None:  # every storage is known once parsed
            self.stored = sum(
                s.numel * s.type.dtype.itemsize for s in self.storages.values()
            )
        stored = self.stored
        if self.copied > stored + _COPY_ALLOWANCE:
            raise self.error(
                f"makes more than {self.copied} bytes of copies of tensor "
                f"views (the last of shape {ref.shape} on storage "
                f"{ref.storage.key!r}), more than the {stored} bytes its "
                f"storages hold plus {_COPY_ALLOWANCE >> 20} MiB: its "
                "tensors view the same storages many times over"
            )

    # -- placeholders to arrays --------------------------------------------

    def storage_array(self, storage):
        array = self.arrays.get(storage.key)
        if array is None:
            raw = self.read_storage(self.storages[storage.key])
            nbytes = storage.numel * storage.type.dtype.itemsize
            if raw.size != nbytes:  # the readers guarantee this
                raise self.error(f"lost bytes of storage {storage.key!r}")
            array = raw.view(storage.type.dtype)
            if storage.type.dtype == np.bool_:
                array = raw != 0
            elif self.swap_bytes and not storage.type.untyped:
                array.byteswap(inplace=True)
            self.arrays[storage.key] = array
        return array[storage.offset : storage.offset + storage.size]

    def tensor_array(self, ref):
        data = self.storage_array(ref.storage)
        swap = False
        # Bools of an untyped storage stay bytes until the tensor is cut out
        # (then `!= 0`), so no tensor converts the whole storage.
        from_bytes = ref.dtype == np.bool_ and data.dtype != np.bool_
        if data.dtype != ref.dtype and not from_bytes:  # untyped storage
            data = data[: data.size - data.size % ref.dtype.itemsize]
            data = data.view(ref.dtype)
            swap = self.swap_bytes and ref.dtype.itemsize > 1
        count = math.prod(ref.shape)
        if count == 0:
            return np.zeros(ref.shape, ref.dtype)
        last = ref.offset + sum(
            (n - 1) * s for n, s in zip(ref.shape, ref.strides)
        )
        if last >= data.size:  # checked when unpickling; guards as_strided
            raise self.error(
                f"has a tensor outside storage {ref.storage.key!r}"
            )
        contiguous = all(
            n == 1 or s == math.prod(ref.shape[i + 1 :])
            for i, (n, s) in enumerate(zip(ref.shape, ref.strides))
        )
        if contiguous:
            flat = data[ref.offset : ref.offset + count]
            if count == data.size and not swap and not from_bytes:
                return flat.reshape(ref.shape)  # the whole storage: no copy
            self.count_copy(ref, count)
            array = flat.reshape(ref.shape).copy()
        else:
            self.count_copy(ref, count)
            view = np.lib.stride_tricks.as_strided(
                data[ref.offset :],
                shape=ref.shape,
                strides=[s * data.itemsize for s in ref.strides],
                writeable=False,
            )
            array = view.copy(order="C")
        if swap:
            array.byteswap(inplace=True)
        if from_bytes:
            array = array != 0
        return array

    def resolve(self, obj):
        memo = {}

        def key(value):
            if isinstance(value, _DType):
                return value.dtype
            if isinstance(value, (_StorageRef, _TensorRef, _StorageType)):
                raise self.error(
                    f"uses a {type(value).__name__.strip('_')} as a dict key "
                    "or set member"
                )
            return value

        def walk(value):
            kind = type(value)
            if kind in _PLAIN_TYPES:
                return value
            if kind is _TensorRef:
                if id(value) not in memo:
                    memo[id(value)] = (value, self.tensor_array(value))
                return memo[id(value)][1]
            if kind is _StorageRef:
                return self.storage_array(value)
            if kind is _DType:
                return value.dtype
            if id(value) in memo:
                return memo[id(value)][1]
            if kind in (dict, collections.OrderedDict):
                memo[id(value)] = (value, value)
                items = list(value.items())
                if any(type(k) is not str for k, _ in items):
                    value.clear()
                    for k, v in items:
                        value[key(k)] = v
                    items = list(value.items())
                for k, v in items:
                    value[k] = walk(v)
                if kind is collections.OrderedDict:
                    attributes = vars(value)
                    for k, v in list(attributes.items()):
                        attributes[k] = walk(v)
                return value
            if kind is list:
                memo[id(value)] = (value, value)
                for i, item in enumerate(value):
                    value[i] = walk(item)
                return value
            if kind is tuple:
                memo[id(value)] = (value, value)
                items = tuple(walk(item) for item in value)
                if any(a is not b for a, b in zip(items, value)):
                    memo[id(value)] = (value, items)
                    return items
                return value
            if kind in (set, frozenset):
                items = kind(key(item) for item in value)
                memo[id(value)] = (value, items)
                return items
            raise self.error(
                f"holds an unexpected {kind.__name__} object {_short(value)}"
            )

        try:
            return walk(obj)
        except CheckpointError:
            raise
        except RecursionError as error:
            raise self.error("nests containers too deeply") from error
        except (ValueError, TypeError, OverflowError, MemoryError) as error:
            raise self.error(
                f"has a tensor NumPy cannot build ({_describe(error)})"
            ) from error

    def read_into(self, file, nbytes, key):
        """Reads `nbytes` from `file` into a fresh uint8 array."""
        array = np.empty(nbytes, np.uint8)
        view = memoryview(array)
        done = 0
        while done < nbytes:
            chunk = file.read(min(_READ_CHUNK, nbytes - done))
            if not chunk:
                raise self.error(
                    f"is truncated: storage {_short(key)} needs {nbytes} "
                    f"bytes, found {done}"
                )
            view[done : done + len(chunk)] = chunk
            done += len(chunk)
        return array


class _ZipReader(_Reader):
    """The zip serialization (torch >= 1.6)."""

    _ERRORS = (
        zipfile.BadZipFile,
        zlib.error,
        OSError,
        EOFError,
        ValueError,
        NotImplementedError,
        RuntimeError,
        MemoryError,
        struct.error,
    )

    zip = None

    def close(self):
        if self.zip is not None:
            self.zip.close()

    def parse(self):
        try:
            self.zip = zipfile.ZipFile(self.file)
            records = {info.filename: info for info in self.zip.infolist()}
        except self._ERRORS as error:
            raise self.error(
                f"is a damaged or truncated zip archive ({_describe(error)})"
            ) from error
        pickles = [
            name
            for name in records
            if name.endswith("/data.pkl") and name.count("/") == 1
        ]
        if len(pickles) != 1:
            raise self.error(
                "is a zip archive but not a PyTorch checkpoint: expected one "
                f"'<archive>/data.pkl' record, found {len(pickles)}"
            )
        self.prefix = pickles[0][: -len("data.pkl")]
        self.records = records
        byteorder = self.read_record(self.prefix + "byteorder", optional=True)
        if byteorder is None:
            byteorder = b"little"
        if byteorder not in (b"little", b"big"):
            raise self.error(
                f"gives byte order {byteorder[:20]!r}; expected b'little' or "
                "b'big'"
            )
        self.swap_bytes = byteorder.decode() != sys.byteorder
        self.check_expansion([pickles[0]])
        data = self.read_record(pickles[0])
        return self.unpickle(io.BytesIO(data), pickles[0], self.record)

    def resolve(self, obj):
        self.check_expansion(
            [f"{self.prefix}data/{key}" for key in self.storages]
        )
        return super().resolve(obj)

    def check_expansion(self, names):
        """Refuses compressed records that would expand far beyond the
        bytes the file holds for them (a decompression bomb)."""
        infos = [
            self.records[name]
            for name in names
            if name in self.records
            and self.records[name].compress_type != zipfile.ZIP_STORED
        ]
        expanded = sum(info.file_size for info in infos)
        packed = sum(info.compress_size for info in infos)
        if expanded <= _MAX_EXPANSION * packed + _EXPANSION_ALLOWANCE:
            return
        largest = max(infos, key=lambda info: info.file_size)
        raise self.error(
            f"has compressed records that would expand to {expanded} bytes "
            f"from {packed} (the largest, {largest.filename!r}, to "
            f"{largest.file_size} bytes from {largest.compress_size}); "
            "torch.save stores records uncompressed, and this reader "
            f"expands compressed records at most {_MAX_EXPANSION} times "
            f"(plus {_EXPANSION_ALLOWANCE >> 20} MiB), so that a small "
            "file cannot take large memory"
        )

    def read_record(self, name, optional=False):
        if name not in self.records:
            if optional:
                return None
            raise self.error(f"has no record {name!r}")
        try:
            return self.zip.read(name)
        except self._ERRORS as error:
            raise self.error(
                f"has a damaged record {name!r} ({_describe(error)})"
            ) from error

    def read_storage(self, storage):
        name = f"{self.prefix}data/{storage.key}"
        nbytes = storage.numel * storage.type.dtype.itemsize
        info = self.records.get(name)
        if info is None:
            if nbytes == 0:
                return np.empty(0, np.uint8)
            raise self.error(f"has no record {name!r} for storage data")
        if info.compress_type == zipfile.ZIP_STORED and (
            info.header_offset + info.file_size > self.size
        ):
            raise self.error(
                f"is truncated: record {name!r} claims {info.file_size} "
                f"bytes past the end of the file"
            )
        if info.file_size < nbytes:
            raise self.error(
                f"is truncated: storage {storage.key!r} needs {nbytes} "
                f"bytes, found {info.file_size}"
            )
        try:
            with self.zip.open(info) as record:
                return self.read_into(record, nbytes, storage.key)
        except CheckpointError:
            raise
        except self._ERRORS as error:
            raise self.error(
                f"has a damaged record {name!r} ({_describe(error)})"
            ) from error


class _LegacyReader(_Reader):
    """The legacy serialization (torch < 1.6, or no zip requested)."""

    def close(self):
        pass

    def parse(self):
        try:
            magic = self.unpickle(self.file, "the magic number")
        except CheckpointFormatError as error:
            raise self.error(
                "is not a PyTorch checkpoint: it is neither a zip archive "
                "nor a legacy checkpoint starting with a magic number pickle"
            ) from error
        if magic != _LEGACY_MAGIC:
            raise self.error(
                "is not a PyTorch checkpoint: its first pickle holds "
                f"{_short(magic, 40)}, expected the legacy magic number"
            )
        version = self.unpickle(self.file, "the protocol version")
        if version != _LEGACY_PROTOCOL:
            raise self.error(
                f"has legacy protocol version {_short(version, 40)}; expected "
                f"{_LEGACY_PROTOCOL}"
            )
        info = self.unpickle(self.file, "the system info")
        if not isinstance(info, dict) or not isinstance(
            info.get("little_endian"), bool
        ):
            raise self.error(
                f"has system info {_short(info)}; expected a dict with a "
                "'little_endian' flag"
            )
        order = "little" if info["little_endian"] else "big"
        self.swap_bytes = order != sys.byteorder
        obj = self.unpickle(self.file, "the main pickle", self.record)
        keys = self.unpickle(self.file, "the list of storage keys")
        if not isinstance(keys, list) or not all(
            isinstance(k, str) for k in keys
        ):
            raise self.error(
                f"lists storage keys {_short(keys)}; expected a list of strings"
            )
        self.offsets = {}
        position = self.file.tell()
        for key in keys:
            storage = self.storages.get(key)
            if storage is None:
                raise self.error(
                    f"stores storage {_short(key)}, which no tensor uses"
                )
            if position + 8 > self.size:
                raise self.error(
                    f"is truncated: the header of storage {_short(key)} is "
                    f"missing at byte {position}"
                )
            self.file.seek(position)
            numel = int.from_bytes(self.file.read(8), order, signed=True)
            if numel != storage.numel:
                raise self.error(
                    f"stores {numel} elements for storage {_short(key)}; its "
                    f"tensors expect {storage.numel}"
                )
            nbytes = numel * storage.type.dtype.itemsize
            position += 8
            if position + nbytes > self.size:
                raise self.error(
                    f"is truncated: storage {_short(key)} needs {nbytes} "
                    f"bytes, found {self.size - position}"
                )
            self.offsets[key] = position
            position += nbytes
        missing = set(self.storages) - set(self.offsets)
        if missing:
            raise self.error(
                f"does not store storage {sorted(missing)[0]!r} that its "
                "tensors use"
            )
        return obj

    def read_storage(self, storage):
        nbytes = storage.numel * storage.type.dtype.itemsize
        self.file.seek(self.offsets[storage.key])
        return self.read_into(self.file, nbytes, storage.key)


@contextlib.contextmanager
def _open(path):
    """Yields the reader of the checkpoint at `path`, closing it after."""
    name = os.fspath(path)
    with open(name, "rb") as file:
        head = file.read(512)
        file.seek(0)
        if head.startswith(_ZIP_SIGNATURES):
            reader = _ZipReader(name, file)
        elif head[:1] == b"\x80":  # pickle PROTO opcode
            reader = _LegacyReader(name, file)
        elif head[257:262] == b"ustar":
            raise CheckpointFormatError(
                f"checkpoint '{name}' uses the tar serialization of torch "
                "< 0.4, which is not supported"
            )
        else:
            what = f"starts with {head[:8]!r}" if head else "is empty"
            raise CheckpointFormatError(
                f"checkpoint '{name}' is not a PyTorch checkpoint: it {what}, "
                "expected a zip archive or a pickle"
            )
        try:
            yield reader
        finally:
            reader.close()


def read_torch_checkpoint(path: str | os.PathLike) -> Any:
    """Reads a `torch.save` file without torch and without running its code.

    Returns the saved object with every tensor as a C-contiguous NumPy array
    of the tensor's dtype and shape (bfloat16 and float8 via `ml_dtypes`),
    storages as 1-D arrays, torch dtypes as NumPy dtypes, and dicts,
    OrderedDicts, lists, tuples and scalars as they were. Arrays share memory
    only when their tensors were the whole of one storage.

    Memory stays proportional to the file: every declared size is checked
    against the bytes the file holds before anything is allocated; tensors
    with more elements than their storage (strides of 0), copies of views
    totalling more than the storages plus 16 MiB, and compressed records
    expanding more than 16 times are refused.

    Raises:
        UnsafeCheckpointError: the pickle asks for any other global.
        CheckpointFormatError: the file is not a readable checkpoint, or
            declares more data than it holds.
    """
    with _open(path) as reader:
        return reader.resolve(reader.parse())


def load_state_dict(
    path: str | os.PathLike, check=None
) -> dict[str, np.ndarray]:
    """Reads a checkpoint's state dict as `{name: array}`.

    Uses the "model" or "state_dict" entry when the saved object has one that
    is a dict, and strips the leading "module." that `DataParallel` adds.
    Only that state dict's tensors are read.

    Args:
        path: the checkpoint file.
        check: optional; called with `{name: (shape, dtype)}` (names
            without "module.") after the file's structure is read and
            before any tensor data is, so that it can refuse (raise) before
            any memory is spent on a checkpoint of the wrong shapes.
    """
    name = os.fspath(path)
    with _open(path) as reader:
        obj = reader.parse()
        if isinstance(obj, dict):
            for entry in ("model", "state_dict"):
                if isinstance(obj.get(entry), dict):
                    obj = obj[entry]
                    break
        else:
            raise CheckpointFormatError(
                f"checkpoint '{name}' holds a {type(obj).__name__}; "
                "expected a dict of tensors"
            )
        refs = {}
        for key, value in obj.items():
            if not isinstance(key, str) or not isinstance(
                value, (_TensorRef, _StorageRef)
            ):
                raise CheckpointFormatError(
                    f"checkpoint '{name}' has state dict entry "
                    f"{_short(key)} holding a {type(value).__name__}; "
                    "expected string keys and tensors"
                )
            short = key.removeprefix("module.")
            if short in refs:
                raise CheckpointFormatError(
                    f"checkpoint '{name}' has key {short!r} both with "
                    "and without the 'module.' prefix"
                )
            refs[short] = value
        if check is not None:
            check({key: _spec(value) for key, value in refs.items()})
        return reader.resolve(refs)


def _spec(ref):
    """`(shape, dtype)` of a tensor or storage placeholder."""
    if isinstance(ref, _TensorRef):
        return ref.shape, ref.dtype
    return (ref.size,), ref.type.dtype
