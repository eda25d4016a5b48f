"""Data-parallel training over every visible device with the engines built for it: Keras 3's
distribution API (``keras.distribution.DataParallel``) on the JAX backend and
``tf.distribute.MirroredStrategy`` on the TensorFlow backend.

The batch size stays the *global* batch: each of N devices computes 1/N of it and the gradients
are averaged, so a run on N devices follows the one-device run with the same batch and learning
rate (the test shows the loss curves agree). To go faster with more devices, raise the global batch
(e.g. 128 per device) and the learning rate with it (the linear scaling rule), keeping a few
warm-up epochs.

Several hosts (JAX): set ``KERAS_DISTRIBUTION_JOB_ADDRESSES`` (host:port of every process,
comma-separated), ``KERAS_DISTRIBUTION_NUM_PROCESSES`` and ``KERAS_DISTRIBUTION_PROCESS_ID`` on
each host (``keras.distribution.initialize`` reads them). Each process feeds its share of every
global batch; process 0 writes the checkpoints and outputs (outside the distribution: every new
variable under it is a collective), into a folder all hosts can read (``--checkpoint-dir`` on
shared storage) so that all resume from the same epoch. Run as two processes over loopback in
the tests. TensorFlow's ``TF_CONFIG`` (MultiWorkerMirroredStrategy) is refused: Keras 3's
TensorFlow trainer fails under it (tensorflow/tensorflow#72388).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import keras

from .errors import ParameterError

BACKENDS = ("jax", "tensorflow")


@dataclass
class Plan:
    """Where a training run's steps go: the scope to build, load and compile the model in, how
    many replicas share each batch, and whether this process writes files."""

    replicas: int = 1
    writer: bool = True
    description: str = "one device"
    scope: object = contextlib.nullcontext  # called: ``with plan.scope(): ...``
    # Batch statistics over the global batch: TensorFlow's replicas each see only their share
    # (measured: without it the 2-device loss curve left the 1-device one by 30% in epoch 1).
    sync_bn: bool = False
    shard: tuple[int, int] = (0, 1)  # (this process, processes): each host feeds its share of a batch

    @contextlib.contextmanager
    def local(self):
        """Work this process does alone (reading the teachers before training), outside the
        distribution: its batches need not split evenly over the devices."""
        if keras.backend.backend() != "jax" or self.replicas == 1:
            yield
            return
        saved = keras.distribution.distribution()
        keras.distribution.set_distribution(None)
        try:
            yield
        finally:
            keras.distribution.set_distribution(saved)

    def close(self) -> None:
        """Back to one device, for evaluation (its batches need not split evenly)."""
        if keras.backend.backend() == "jax":
            keras.distribution.set_distribution(None)


def split_cpu(devices: int) -> None:
    """Present the CPU as ``devices`` devices, to try data parallelism without GPUs. Must run
    before the backend first touches a device. Seen on JAX (2 CPU devices on 2 cores): with the
    augmentation layers, XLA's CPU all-reduce sometimes waited for a device that never joined and
    aborted after 40 s; without them it ran every time, as did TensorFlow with them."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        try:
            jax.config.update("jax_num_cpu_devices", devices)
        except RuntimeError:  # JAX has already started
            if jax.device_count() != devices:
                raise ParameterError(
                    "cpu_devices", "must be set before JAX starts; run it in a fresh process"
                ) from None
    elif backend == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * devices)
            # One thread per kernel; the replicas share the cores between them. A kernel's sums
            # are split by the threads it gets, so the numbers depend on them (here, first-epoch
            # loss on 2 devices: 1.33731 with 2 cores, 1.33888 pinned to 1), and with replicas
            # racing for one pool that varied within a machine: in CI two identical runs differed
            # by 0.16% in their first epoch (likely oneDNN, which takes a kernel started from a
            # pool thread for nested and gives it one thread). One thread: the same to the last
            # digit on 1 core or 2.
            tf.config.threading.set_intra_op_parallelism_threads(1)
        except RuntimeError:
            # Already initialised: fine if it was split the same way before (a second run in one process).
            if len(tf.config.list_logical_devices("CPU")) != devices:
                raise ParameterError(
                    "cpu_devices", "must be set before TensorFlow starts; run it in a fresh process"
                ) from None
    else:
        raise ParameterError("cpu_devices", f"works on the {' and '.join(BACKENDS)} backends, not {backend}")


# What a collective or the coordination service says when another process of the run has gone
# (seen here on loopback when one of two processes was killed: "Gloo all-reduce failed: ... Read
# error ...: Connection reset by peer"; a peer that stops answering: a heartbeat timeout).
_PEER_GONE = (
    "gloo",
    "connection reset",
    "connection refused",
    "connection closed",
    "broken pipe",
    "socket closed",
    "heartbeat",
    "coordination service",
    "barrier",
)


def lost_peer(error: BaseException, plan: Plan) -> str | None:
    """The short reason, when ``error`` (or what it was raised from) says another process of this
    several-process run stopped; None for every other error (and always in a one-process run)."""
    if plan.shard[1] == 1:
        return None
    seen = error
    while seen is not None:
        text = str(seen)
        if any(word in text.lower() for word in _PEER_GONE):
            first = text.strip().splitlines()[0]
            return first if len(first) <= 160 else first[:157] + "..."
        seen = seen.__cause__ or seen.__context__
    return None


def _multihost_jax() -> bool:
    return int(os.environ.get("KERAS_DISTRIBUTION_NUM_PROCESSES", "1") or 1) > 1


def data_parallel(batch_size: int) -> Plan:
    """Set up data parallelism over all visible devices of this backend (and hosts, see the
    module docstring). ``batch_size`` is the global batch; it must split evenly."""
    backend = keras.backend.backend()
    if backend == "jax":
        if _multihost_jax():
            keras.distribution.initialize()
        import jax

        devices = keras.distribution.list_devices()
        # Each process feeds its own share of every batch (EpochBatches' shard), so Keras must
        # not shard the (PyDataset) input again.
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False))
        plan = Plan(len(devices), jax.process_index() == 0, f"JAX DataParallel over {len(devices)} devices")
        plan.shard = (jax.process_index(), jax.process_count())
    elif backend == "tensorflow":
        import tensorflow as tf

        if os.environ.get("TF_CONFIG"):
            # Tried here on loopback: Keras 3's TensorFlow trainer cannot train under
            # MultiWorkerMirroredStrategy (it all-reduces an input batch to learn its shapes and
            # scalar logs along axis 0: "Invalid reduction dimension 0 for input with 0 dimensions",
            # tensorflow/tensorflow#72388). Say so at the start instead of failing in fit.
            raise ParameterError(
                "distribute",
                "over several processes (TF_CONFIG is set) does not work with Keras 3 on TensorFlow "
                "(MultiWorkerMirroredStrategy, tensorflow/tensorflow#72388); run several hosts on JAX "
                "(KERAS_BACKEND=jax with KERAS_DISTRIBUTION_JOB_ADDRESSES, see README 'Scaling out'), or unset "
                "TF_CONFIG",
            )
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus or tf.config.list_logical_devices("CPU")]
        strategy, writer, kind = tf.distribute.MirroredStrategy(devices), True, "MirroredStrategy"
        plan = Plan(strategy.num_replicas_in_sync, writer, f"TF {kind} over {strategy.num_replicas_in_sync} devices")
        plan.scope, plan.sync_bn = strategy.scope, plan.replicas > 1
    else:
        raise ParameterError("distribute", f"works on the {' and '.join(BACKENDS)} backends, not {backend}")
    if batch_size % plan.replicas:
        plan.close()
        raise ParameterError(
            "batch_size", f"({batch_size}, the global batch) must be a multiple of the {plan.replicas} devices"
        )
    return plan
