"""GA fitness on a real Dask cluster against local processes, side by side in one run, on FER2013's
Xception features: wall time, seconds per fitness evaluation, and the cluster's overhead per
evaluation. The cluster is started as README 'Scaling out' says (``dask scheduler`` and ``dask
worker`` processes from the command line, over 127.0.0.1).

    python benchmarks/dask_overhead.py --weights ../shared/weights/xception_imagenet_notop.weights.h5

On one machine the cluster cannot be faster than ``--jobs`` with as many processes: the same forests
run on the same cores, plus a round trip through the scheduler per task. What this measures is that
round trip; it decides how large a fitness task must be for a cluster of several machines to pay.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from ferkit import cli, features, ga
from ferkit.cluster import DaskMapper, start_local_cluster, stop_local_cluster
from ferkit.data import load_dataset
from ferkit.paths import DEFAULT_CACHE_DIR, DEFAULT_DATA
from ferkit.splits import stratified_subset


def timed_ga(x, y, config: ga.GAConfig):
    started = time.perf_counter()
    result = ga.run_ga(x, y, config, progress=False)
    return time.perf_counter() - started, result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--weights", default="imagenet")
    p.add_argument("--size", type=int, default=139)
    p.add_argument("--train-limit", type=int, default=3000)
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    p.add_argument("--population", type=int, default=24)
    p.add_argument("--generations", type=int, default=4)
    p.add_argument("--workers", type=int, default=2, help="Dask workers and local processes alike")
    p.add_argument("--repeats", type=int, default=2, help="runs of each, interleaved; the fastest counts")
    args = p.parse_args()

    data = load_dataset(args.data, cache_dir=args.cache_dir, progress=False)
    idx = stratified_subset(data.train.y, args.train_limit)
    x = features.cached_features(data.train.x[idx], data.train.y[idx], args.weights, args.size, args.cache_dir)
    y = data.train.y[idx]
    settings = dict(population=args.population, generations=args.generations, patience=args.generations + 1)

    with tempfile.TemporaryDirectory() as folder:
        address, processes = start_local_cluster(args.workers, Path(folder))
        try:
            started = time.perf_counter()
            mapper = DaskMapper(address, x, y, ga.GAConfig(**settings))  # connect and send the features to every worker
            scatter_seconds = time.perf_counter() - started
            # A round trip with no work in it: the floor of every task's overhead.
            items = list(range(200))
            started = time.perf_counter()
            mapper(lambda item, data: item, items)
            empty_seconds = (time.perf_counter() - started) / len(items)
            mapper.close()

            runs = {"serial": ga.GAConfig(**settings, jobs=1), "local": ga.GAConfig(**settings, jobs=args.workers),
                    "dask": ga.GAConfig(**settings, scheduler=address)}  # fmt: skip
            best = {}
            for _ in range(args.repeats):  # interleaved, so a slow spell of the machine hits all three
                for name, config in runs.items():
                    seconds, result = timed_ga(x, y, config)
                    best[name] = min(best.get(name, (seconds, result)), (seconds, result), key=lambda r: r[0])
            (serial_seconds, serial), (local_seconds, local), (dask_seconds, remote) = best.values()
        finally:
            stop_local_cluster(processes)

    same = (
        np.array_equal(local.mask, remote.mask)
        and local.accuracy == remote.accuracy
        and [r["best_accuracy"] for r in local.log] == [r["best_accuracy"] for r in remote.log]
    )
    n = local.evaluations
    print(
        f"GA on {x.shape[0]} x {x.shape[1]} FER2013 Xception features ({args.size} px), population "
        f"{args.population}, {args.generations} generations: {n} fitness forests "
        f"(+{local.cache_hits} cache hits) in each run"
    )
    print(f"  fastest of {args.repeats} runs each, interleaved")
    print(f"  serial, 1 process             {serial_seconds:7.1f} s   {serial_seconds / n:.3f} s per evaluation")
    print(
        f"  --jobs {args.workers} (local processes)   {local_seconds:7.1f} s   {local_seconds / n:.3f} s per evaluation"
    )
    print(
        f"  --scheduler ({args.workers} dask workers)  {dask_seconds:7.1f} s   {dask_seconds / n:.3f} s per evaluation"
    )
    print(
        f"  cluster / local: {dask_seconds / local_seconds:.2f}x; overhead per evaluation "
        f"{(dask_seconds - local_seconds) / n * 1000:+.1f} ms "
        f"(an empty task's round trip: {empty_seconds * 1000:.1f} ms; "
        f"connecting and sending the features once: {scatter_seconds:.2f} s)"
    )
    print(f"  same subset, accuracy and per-generation log as --jobs {args.workers}: {'yes' if same else 'NO'}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    cli.run_main(main)
