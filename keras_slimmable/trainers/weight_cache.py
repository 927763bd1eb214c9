"""Each width's sliced weights, cached for eager inference (TensorFlow).

A narrower width runs on slices of the shared kernels, and slicing copies:
at batch 1 the slices cost S-MobileNet v1 about 10% at width 0.75 (1.10x
its materialized model, against 1.035x with this cache). Eager inference,
`model(x, width=w)`, therefore reads copies of the large slices held in
variables of this cache; training and graph-mode calls still slice in the
graph, so that gradients reach the shared variables.

When are the copies stale? Every entry holds the tensor it last read from
each source variable (a snapshot). TensorFlow never writes a variable's
buffer in place while another tensor refers to it: assignments and
optimizer updates copy first (copy-on-write), and sparse updates switch the
variable to copy-on-read. So while the snapshot is held, the variable's
buffer is the snapshot's buffer exactly when nothing has been written since.
Each cached call also returns a read of every source variable (an alias of
its buffer, not a copy), and the outputs are used only if every address
equals its snapshot's. Otherwise the stale entries are refreshed and the call
repeats; if the addresses never settle (copy-on-read variables, a variable
off the CPU) the cache switches itself off and calls slice again. Refreshes
take a lock and bump a generation counter before and after (a seqlock), so a
call that overlaps one in another thread is not trusted either.

The cost: one copy of each narrower width's sliced weights, made at its
first eager call, and, after the weights change, the old buffers stay alive
until the next eager call refreshes them (`release` drops them before
training).
"""

import threading

import numpy as np
import tensorflow as tf

from keras_slimmable.layers.base import weight_cache_scope

# Slices smaller than this are still taken in the graph: checking a cached
# copy costs more than copying a small slice. Measured on S-MobileNet v1 and
# v2 at batch 1 (random order, paired): 64K elements beat caching every
# slice, 16K elements and no cache, at every width tried.
MIN_CACHED_ELEMENTS = 65536


def _address(tensor):
    """The address of an eager CPU tensor's buffer (numpy shares it)."""
    return np.asarray(tensor).__array_interface__["data"][0]


def _resource_variable(variable):
    """The plain TF variable behind `variable`, or None if it has none."""
    value = getattr(variable, "_value", variable)  # keras.Variable
    if not isinstance(value, tf.Variable) or not hasattr(value, "handle"):
        return None
    if tf.distribute.has_strategy() or "CPU" not in value.device:
        return None
    return value


class _Entry:
    """Cached copies of one derived weight (a tensor or a list of them)."""

    def __init__(self, compute, sources, dtype, name):
        self._compute = compute
        self.sources = sources
        self._dtype = dtype
        self.addresses = None
        self._snapshots = None
        with tf.init_scope():
            values = self._read()
            self.variables = [
                tf.Variable(v, trainable=False, name=f"{name}_{k}")
                for k, v in enumerate(values)
            ]

    def _read(self):
        """The derived values, from fresh snapshots of the sources."""
        snapshots = [source.value() for source in self.sources]
        values = self._compute(*snapshots)
        flat = values if isinstance(values, (list, tuple)) else [values]
        self._list = isinstance(values, (list, tuple))
        self._snapshots = snapshots
        self.addresses = [_address(s) for s in snapshots]
        return [tf.cast(v, self._dtype) for v in flat]

    def refresh(self):
        for variable, value in zip(self.variables, self._read()):
            variable.assign(value)

    def release(self):
        self._snapshots = None
        self.addresses = None

    def values(self):
        """The cached values, read in the graph being traced."""
        values = [variable.value() for variable in self.variables]
        return values if self._list else values[0]


class _Recorder:
    """Active while one width's inference function is traced."""

    def __init__(self, cache):
        self._cache = cache
        self.entries = []

    def lookup(self, layer, key, compute, variables):
        sources = [_resource_variable(v) for v in variables]
        if not sources or any(s is None for s in sources):
            return compute(*variables)
        sliced = compute(*variables)  # unused, hence pruned, if cached
        flat = sliced if isinstance(sliced, (list, tuple)) else [sliced]
        if sum(int(np.prod(t.shape)) for t in flat) < self._cache.min_elements:
            return sliced
        dtype = variables[0].dtype  # what the layer would see (autocast)
        entry = self._cache.entry(
            (id(layer), key, dtype), compute, sources, dtype, layer.name
        )
        self.entries.append(entry)
        return entry.values()

    def source_reads(self):
        """Reads of every source, in entry order (function outputs)."""
        return [
            source.value() for entry in self.entries for source in entry.sources
        ]


class WeightCache:
    """One model's cached slices, shared by its per-width functions."""

    def __init__(self):
        self._lock = threading.Lock()
        self._entries = {}
        self._used = {}  # width index -> the entries its function reads
        self._expected = {}  # width index -> (generation, addresses)
        self._generation = 0  # odd while entries change (a seqlock)
        self.enabled = True
        self.min_elements = MIN_CACHED_ELEMENTS

    def _bump(self):
        self._generation += 1

    def entry(self, key, compute, sources, dtype, name):
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self._bump()
                try:
                    entry = _Entry(compute, sources, dtype, name)
                    self._entries[key] = entry
                finally:
                    self._bump()
            return entry

    def trace(self, index, forward):
        """Traces `forward()` reading cached weights; returns its outputs
        and the reads of their sources, for `run` to check."""
        recorder = _Recorder(self)
        with weight_cache_scope(recorder):
            outputs = forward()
        used = self._used.setdefault(index, recorder.entries)
        if [id(e) for e in used] != [id(e) for e in recorder.entries]:
            self.enabled = False  # traces disagree: never trust the cache
        return outputs, recorder.source_reads()

    def run(self, function, index, inputs):
        """`function(inputs)`'s outputs if they were computed from fresh
        copies, else None (the caller then slices in the graph)."""
        refreshed = False
        for _ in range(3):
            generation = self._generation
            if generation % 2 or not self.enabled:
                return None
            outputs, reads = function(inputs)
            addresses = [_address(read) for read in reads]
            stale = self._stale(index, addresses, generation)
            if self._generation != generation:
                continue  # entries changed meanwhile: nothing is trusted
            if not stale:
                return outputs
            if refreshed:  # still stale right after a refresh
                self.enabled = False
                return None
            self._refresh(stale)
            refreshed = True
        return None

    def _stale(self, index, addresses, generation):
        """The entries of width `index` whose snapshots `addresses` (the
        sources' buffers during the call) contradict."""
        used = self._used.get(index)
        if used is None:  # not traced by this cache: trust nothing
            return list(self._entries.values())
        expected = self._expected.get(index)
        if expected is None or expected[0] != generation:
            flat = []
            for entry in used:
                flat.extend(entry.addresses or [None] * len(entry.sources))
            expected = (generation, flat)
            self._expected[index] = expected
        if addresses == expected[1]:
            return []
        stale = []
        addresses = iter(addresses)
        for entry in used:
            current = [next(addresses) for _ in entry.sources]
            if current != entry.addresses:
                stale.append(entry)
        return stale

    def _refresh(self, entries):
        with self._lock:
            self._bump()
            try:
                for entry in dict.fromkeys(entries):
                    entry.refresh()
            finally:
                self._bump()

    def release(self):
        """Drops the snapshots (the next eager call refreshes the copies),
        so that training does not keep the old buffers alive."""
        with self._lock:
            self._bump()
            for entry in self._entries.values():
                entry.release()
            self._bump()
