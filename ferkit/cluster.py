"""GA fitness on a Dask cluster: a ``map`` for DEAP's toolbox that sends each feature mask to a
``dask.distributed`` worker, with the fitness data (features, labels, settings) scattered to
every worker once instead of shipped with each task.

    mapper = DaskMapper("tcp://scheduler:8786", x, y, config)
    accuracies = mapper(ga.mask_accuracy, masks)

Start a cluster with ``dask scheduler`` on one host and ``dask worker tcp://HOST:8786
--nthreads 1 --nworkers N`` on each (one single-threaded worker process per core: forests are
fitted one per task, ``n_jobs=1``).
"""

from __future__ import annotations

from .errors import ClusterError

# How long to wait for the scheduler before saying it cannot be reached.
CONNECT_TIMEOUT_S = 20


def _run_with_data(item, fn, data, token):
    """On a worker: install the scattered fitness data once per run (``token``), then run fn."""
    from . import ga

    if ga._FIT.get("token") != token:
        ga._init_fitness_data(data["x"], data["y"], data["config"])
        ga._FIT["token"] = token
    return fn(item)


class DaskMapper:
    """``map(fn, items)`` over a Dask cluster; results come back in the order of ``items``."""

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
        import uuid

        self.token = uuid.uuid4().hex
        # One copy per worker, sent now; tasks carry only a reference to it.
        self.data = self.client.scatter([{"x": x, "y": y, "config": config}], broadcast=True, hash=False)[0]
        self.workers = len(self.client.scheduler_info(n_workers=-1)["workers"])

    def __call__(self, fn, items):
        items = list(items)
        futures = self.client.map(_run_with_data, items, fn=fn, data=self.data, token=self.token, pure=False, key=None)
        return self.client.gather(futures)

    def close(self) -> None:
        self.client.close()
