"""GA fitness on a Dask cluster: a ``map`` for DEAP's toolbox that sends each feature mask to a
``dask.distributed`` worker, with the fitness data (features, labels, settings) scattered to
every worker once instead of shipped with each task.

    mapper = DaskMapper("tcp://scheduler:8786", x, y, config)
    accuracies = mapper(ga.mask_accuracy, masks)   # mask_accuracy(mask, data) on the workers

Start a cluster with ``dask scheduler`` on one host and ``dask worker tcp://HOST:8786
--nthreads 1 --nworkers N`` on each (one single-threaded worker process per core: forests are
fitted one per task, ``n_jobs=1``).
"""

from __future__ import annotations

from .errors import ClusterError

# How long to wait for the scheduler before saying it cannot be reached.
CONNECT_TIMEOUT_S = 20


def _with_data(item, fn, data):
    """On a worker: ``fn(item, data)``, data being the scattered copy already held there."""
    return fn(item, data)


class DaskMapper:
    """``map(fn, items)`` over a Dask cluster, calling ``fn(item, data)`` on the workers with the
    scattered data; results come back in the order of ``items``."""

    def __init__(self, address: str, x, y, config):
        try:
            from dask.distributed import Client
        except ImportError:
            raise ClusterError(
                "--scheduler needs dask.distributed; install it with: pip install 'dask[distributed]'"
            ) from None
        try:
            self.client = Client(address, timeout=CONNECT_TIMEOUT_S)
        except (OSError, TimeoutError, ValueError) as exc:
            raise ClusterError(
                f"cannot reach the Dask scheduler at {address!r} ({exc.__class__.__name__}: {exc}). Start one "
                f"with 'dask scheduler' and workers with 'dask worker {address}', or drop --scheduler to use "
                f"local processes."
            ) from None
        try:
            self.workers = len(self.client.scheduler_info(n_workers=-1)["workers"])
            if not self.workers:
                self.client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
                self.workers = len(self.client.scheduler_info(n_workers=-1)["workers"])
            # One copy per worker, sent now; tasks carry only a reference to it.
            payload = {"x": x, "y": y, "config": config}
            self.data = self.client.scatter([payload], broadcast=True, hash=False)[0]
        except (OSError, TimeoutError) as exc:
            self.client.close()
            raise ClusterError(
                f"the Dask scheduler at {address!r} has no workers ({exc.__class__.__name__}); start some with "
                f"'dask worker {address} --nthreads 1 --nworkers N'."
            ) from None

    def __call__(self, fn, items):
        futures = self.client.map(_with_data, list(items), fn=fn, data=self.data, pure=False)
        return self.client.gather(futures)

    def close(self) -> None:
        """Release the scattered data and cancel unfinished tasks."""
        self.client.close()
