"""Slimmable training on several processes or machines (JAX backend).

Keras 3 does not support TensorFlow's `MultiWorkerMirroredStrategy`
(keras-team/keras#20585). What works is Keras's distribution API on JAX:
the processes join through `jax.distributed`, and
`keras.distribution.DataParallel` replicates the variables on every device
of every process and shards each global batch over them. `fit` then runs
`SlimmableModel`'s training step (every width, gradients summed, one
optimizer step) as one program over the global batch: XLA reduces the
gradients, and the batch-norm statistics, across the processes, so each
process ends with the weights one process training on the global batch
would have.

Example, on each of two processes (`process_id` 0 and 1), with
`KERAS_BACKEND=jax`:

```python
from keras_slimmable import distribute

distribute.data_parallel(
    coordinator_address="10.0.0.1:1234", num_processes=2, process_id=0
)
keras.utils.set_random_seed(1)  # the same initial weights everywhere
model = keras_slimmable.zoo.s_mobilenet_v1(...)  # after data_parallel
model.compile(...)
model.fit(dataset)  # a tf.data.Dataset of global batches, the same order
                    # on every process: each takes its share of a batch
```

On CPU the processes exchange through Gloo (JAX's default CPU collectives).
`examples/train.py --strategy=jax_data_parallel` runs this; see
`docs/multi_host.md`.
"""

import os

_ENVIRONMENT = (
    "KERAS_DISTRIBUTION_JOB_ADDRESSES",
    "KERAS_DISTRIBUTION_NUM_PROCESSES",
    "KERAS_DISTRIBUTION_PROCESS_ID",
)


def data_parallel(
    coordinator_address=None, num_processes=None, process_id=None
):
    """Joins the processes and makes data parallelism Keras's distribution.

    Call it first, before any JAX computation and before building the
    model: the variables of a model built before it are not replicated.

    Args:
        coordinator_address: `"host:port"` of process 0, which every
            process connects to. Defaults to Keras's
            `KERAS_DISTRIBUTION_JOB_ADDRESSES`, then to `jax.distributed`'s
            own discovery (cluster schedulers, Cloud TPU).
        num_processes: how many processes train together. Defaults to
            `KERAS_DISTRIBUTION_NUM_PROCESSES` (or discovery). `1`: this
            process alone, data parallel over its own devices.
        process_id: this process's index, `0` to `num_processes - 1`.
            Defaults to `KERAS_DISTRIBUTION_PROCESS_ID` (or discovery).

    Returns:
        The `keras.distribution.DataParallel` now in effect.
    """
    import keras

    backend = keras.backend.backend()
    if backend != "jax":
        raise ValueError(
            "Data-parallel training over processes uses Keras's "
            "distribution API on JAX: set KERAS_BACKEND=jax. "
            f"Received: KERAS_BACKEND={backend!r}"
        )
    if num_processes is not None and num_processes < 1:
        raise ValueError(
            f"num_processes must be at least 1. Received: {num_processes}"
        )
    if process_id is not None and not (
        0 <= process_id < (num_processes or process_id + 1)
    ):
        raise ValueError(
            f"process_id must be in [0, num_processes - 1] = "
            f"[0, {num_processes - 1}]. Received: process_id={process_id}"
        )
    joining = num_processes != 1 and (
        coordinator_address is not None
        or num_processes is not None
        or process_id is not None
        or any(os.environ.get(name) for name in _ENVIRONMENT)
    )
    if joining:
        keras.distribution.initialize(
            job_addresses=coordinator_address,
            num_processes=num_processes,
            process_id=process_id,
        )
    distribution = keras.distribution.DataParallel()
    keras.distribution.set_distribution(distribution)
    return distribution


def process_count():
    """How many processes train together (1 without `data_parallel`)."""
    import jax

    return jax.process_count()


def process_index():
    """This process's index among them (0: the coordinator)."""
    import jax

    return jax.process_index()


def from_first_process(value):
    """The integer `value` of process 0, on every process.

    For what the processes must agree on and only one may choose: a seed
    drawn at random, a resumed step.
    """
    import jax
    import numpy as np

    if jax.process_count() == 1:
        return value
    from jax.experimental import multihost_utils

    return int(multihost_utils.broadcast_one_to_all(np.int32(value)))


def every_process(value):
    """The integer `value` of every process, in process order."""
    import jax
    import numpy as np

    if jax.process_count() == 1:
        return [value]
    from jax.experimental import multihost_utils

    gathered = multihost_utils.process_allgather(np.int32(value))
    return [int(v) for v in np.asarray(gathered).ravel()]
