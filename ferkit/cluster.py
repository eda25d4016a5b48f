"""GA fitness on a Dask cluster: a ``map`` for DEAP's toolbox that sends each feature mask to a
``dask.distributed`` worker, with the fitness data (features, labels, settings) sent to every
worker once, as a worker plugin, instead of shipped with each task.

    mapper = DaskMapper("tcp://scheduler:8786", x, y, config)
    accuracies = mapper(ga.mask_accuracy, masks)   # mask_accuracy(mask, data) on the workers

Start a cluster with ``dask scheduler`` on one host and ``dask worker tcp://HOST:8786
--nthreads 1 --nworkers N`` on each (one single-threaded worker process per core: forests are
fitted one per task, ``n_jobs=1``).
"""

from __future__ import annotations

import contextlib
import uuid
from pathlib import Path

from .errors import ClusterError

try:
    from distributed.diagnostics.plugin import WorkerPlugin
except ImportError:  # connect() says how to install it
    WorkerPlugin = object

# How long to wait for the scheduler before saying it cannot be reached.
CONNECT_TIMEOUT_S = 20


def connect(address: str):
    """A ``dask.distributed`` client of the scheduler at ``address``, or a ``ClusterError`` saying
    how to start one (scripts call ``check_scheduler`` before their long work, so that a wrong
    address is said at the start, not after the features)."""
    try:
        from dask.distributed import Client
    except ImportError:
        raise ClusterError(
            "--scheduler needs dask.distributed; install it with: pip install 'dask[distributed]'"
        ) from None
    try:
        return Client(address, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(
            f"cannot reach the Dask scheduler at {address!r} ({exc.__class__.__name__}: {exc}). Start one "
            f"with 'dask scheduler' and workers with 'dask worker {address}', or drop --scheduler to use "
            f"local processes."
        ) from None


def check_scheduler(address: str) -> None:
    """Raise ``ClusterError`` now if the scheduler at ``address`` cannot be reached."""
    connect(address).close()


class FitnessData(WorkerPlugin):
    """The fitness data, held by every worker of the cluster, those that join or restart later
    too (the scheduler hands its plugins to each new worker). Not ``client.scatter(...,
    broadcast=True)``: Dask's Active Memory Manager (on by default) drops the extra copies of
    scattered data within seconds whenever no task waits for them, so each GA generation sent the
    features to the workers again (measured: 2 copies at once, 1 after 5 s)."""

    def __init__(self, payload: dict):
        self.payload = payload

    def teardown(self, worker) -> None:
        self.payload = None


def _with_data(item, fn, name):
    """On a worker: ``fn(item, data)``, data being the copy that worker holds as plugin ``name``."""
    from distributed import get_worker

    return fn(item, get_worker().plugins[name].payload)


class DaskMapper:
    """``map(fn, items)`` over a Dask cluster, calling ``fn(item, data)`` on the workers with the
    data each of them holds; results come back in the order of ``items``."""

    def __init__(self, address: str, x, y, config):
        self.client = connect(address)
        self.name = f"ferkit-fitness-{uuid.uuid4().hex}"
        try:
            self.workers = len(self.client.scheduler_info(n_workers=-1)["workers"])
            if not self.workers:
                self.client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
                self.workers = len(self.client.scheduler_info(n_workers=-1)["workers"])
            # One copy per worker, sent now; tasks carry only its name.
            self.client.register_plugin(FitnessData({"x": x, "y": y, "config": config}), name=self.name)
        except (OSError, TimeoutError) as exc:
            self.client.close()
            raise ClusterError(
                f"the Dask scheduler at {address!r} has no workers ({exc.__class__.__name__}); start some with "
                f"'dask worker {address} --nthreads 1 --nworkers N'."
            ) from None

    def __call__(self, fn, items):
        futures = self.client.map(_with_data, list(items), fn=fn, name=self.name, pure=False)
        return self.client.gather(futures)

    def close(self) -> None:
        """Release the workers' copies of the data and cancel unfinished tasks."""
        with contextlib.suppress(Exception):  # a cluster already gone holds nothing to release
            self.client.unregister_worker_plugin(self.name)
        self.client.close()


def start_local_cluster(workers: int, folder: Path, timeout: float = 60.0):
    """Start a cluster on this machine the way README 'Scaling out' starts one on several: a
    ``dask scheduler`` and ``workers`` single-threaded ``dask worker`` processes, over 127.0.0.1,
    each in its own process group (so a worker can be killed with its nanny). For trying
    ``--scheduler`` and for the tests and benchmarks. Returns (address, processes): the
    scheduler first; end them with ``stop_local_cluster``."""
    import json
    import subprocess
    import sys
    import time

    quiet = dict(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address_file = Path(folder) / "scheduler.json"
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
         "--no-dashboard", "--scheduler-file", str(address_file)], **quiet,
    )  # fmt: skip
    processes = [scheduler]
    try:
        deadline = time.monotonic() + timeout
        while not (address_file.exists() and address_file.stat().st_size):
            if scheduler.poll() is not None or time.monotonic() > deadline:
                raise ClusterError("the local Dask scheduler did not start; is dask.distributed installed?")
            time.sleep(0.1)
        address = json.loads(address_file.read_text())["address"]
        processes += [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "distributed.cli.dask_worker",
                    address,
                    "--nthreads",
                    "1",
                    "--no-dashboard",
                    "--host",
                    "127.0.0.1",
                    "--name",
                    f"w{i}",
                ],
                **quiet,
            )  # fmt: skip
            for i in range(workers)
        ]
        from dask.distributed import Client

        with Client(address, timeout=timeout) as client:
            client.wait_for_workers(workers, timeout=timeout)
    except BaseException:
        stop_local_cluster(processes)
        raise
    return address, processes


def stop_local_cluster(processes) -> None:
    """Kill what ``start_local_cluster`` started (each process with its group) and reap it."""
    import contextlib
    import os
    import signal

    for process in processes:
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # gone between poll and kill
                os.killpg(process.pid, signal.SIGKILL)
        process.wait()
