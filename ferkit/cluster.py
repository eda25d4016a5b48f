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


# The workers' copies of the fitness data are worker plugins named PLUGIN_PREFIX + the client's id,
# so that a run that died without closing (killed, out of memory) can be told from a live one.
PLUGIN_PREFIX = "ferkit-fitness-"


class FitnessData(WorkerPlugin):
    """The fitness data, held by every worker of the cluster, those that join or restart later
    too (the scheduler keeps the plugin, data included, and hands it to each new worker). Not
    ``client.scatter(..., broadcast=True)``: Dask's Active Memory Manager (on by default) drops
    the extra copies of scattered data within seconds whenever no task waits for them, so each GA
    generation sent the features to the workers again (measured: 2 copies at once, 1 after 5 s)."""

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
    data each of them holds; results come back in the order of ``items``. ``close()`` releases the
    data; a run that died without it leaves its copies until the next mapper on that cluster
    removes them."""

    def __init__(self, address: str, x, y, config):
        self.client = connect(address)
        self.name = PLUGIN_PREFIX + self.client.id
        self._futures = []
        try:
            self.workers = len(self.client.scheduler_info(n_workers=-1)["workers"])
            if not self.workers:
                self.client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
                self.workers = len(self.client.scheduler_info(n_workers=-1)["workers"])
        except (OSError, TimeoutError) as exc:
            self.client.close()
            raise ClusterError(
                f"the Dask scheduler at {address!r} has no workers ({exc.__class__.__name__}); start some with "
                f"'dask worker {address} --nthreads 1 --nworkers N'."
            ) from None
        try:
            self.removed_orphans = self._remove_orphans()
            # One copy per worker, sent now; tasks carry only its name.
            self.client.register_plugin(FitnessData({"x": x, "y": y, "config": config}), name=self.name)
        except Exception as exc:  # noqa: BLE001 - a worker's own error (no ferkit there, say) comes back as is
            self.close()
            raise ClusterError(
                f"the workers of {address!r} could not take the fitness data ({exc.__class__.__name__}: {exc}); "
                "every worker needs this project's package installed, the same version as here "
                "(pip install -e . in a checkout of it)."
            ) from None

    def _remove_orphans(self) -> list[str]:
        """Unregister the data of earlier runs on this cluster that died without closing."""

        def orphaned(dask_scheduler=None) -> list[str]:
            # On the scheduler; nested, so it travels by value: the scheduler need not have ferkit.
            return [
                name
                for name in dask_scheduler.worker_plugins
                if name.startswith("ferkit-fitness-")
                and name.removeprefix("ferkit-fitness-") not in dask_scheduler.clients
            ]

        orphans = self.client.run_on_scheduler(orphaned)
        for name in orphans:
            self.client.unregister_worker_plugin(name)
        return orphans

    def __call__(self, fn, items):
        self._futures = self.client.map(_with_data, list(items), fn=fn, name=self.name, pure=False)
        results = self.client.gather(self._futures)
        self._futures = []  # kept only while they run, for close() to cancel after an interruption
        return results

    def close(self) -> None:
        """Cancel unfinished tasks, then release the workers' copies of the data (where the
        scheduler can still be reached: a lost one holds nothing to release)."""
        if self.client.status == "running":
            with contextlib.suppress(Exception):
                self.client.cancel(self._futures)
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
