"""The GA as ga_select.py runs it against a straightforward serial, uncached DEAP ``eaSimple``
doing the same number of fitness evaluations on the same Xception features, timed in one run.

    python benchmarks/ga_speed.py --weights ../shared/weights/xception_imagenet_notop.weights.h5

(a) straightforward: ``eaSimple`` (two-point crossover, bit-flip mutation, tournaments) whose
    fitness is a 50-tree forest fitted on three quarters of the training features and scored on
    the last quarter, one individual after another, every evaluation fitted again.
(b) ga_select.py: the GA with out-of-bag fitness forests, identical masks never refitted, ``--jobs``
    processes.
Both start from the same first population and stop after the same number of evaluations.
Because (b)'s subsets may drift in size, the second line times both fitness functions on the
*same* masks too.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np

from ferkit import cli, features, ga
from ferkit.data import load_dataset
from ferkit.paths import DEFAULT_CACHE_DIR, DEFAULT_DATA
from ferkit.splits import stratified_subset


class Budget(Exception):
    pass


def straightforward_ga(x, y, config: ga.GAConfig, first_masks, budget: int):
    """What one writes first: eaSimple, a forest fitted for every individual needing a fitness,
    serially, until ``budget`` evaluations are done. Returns (seconds, evaluations, mean size)."""
    from deap import algorithms, base, creator, tools
    from sklearn.model_selection import train_test_split

    random.seed(config.seed)
    if not hasattr(creator, "PlainFitness"):
        creator.create("PlainFitness", base.Fitness, weights=(1.0,))
        creator.create("PlainMask", list, fitness=creator.PlainFitness)
    fit_idx, val_idx = train_test_split(np.arange(len(y)), test_size=0.25, stratify=y, random_state=config.seed)
    sizes = []

    def evaluate(individual):
        if len(sizes) >= budget:
            raise Budget
        mask = np.array(individual, bool)
        sizes.append(mask.sum())
        model = ga.forest(config, trees=50).fit(x[fit_idx][:, mask], y[fit_idx])
        accuracy = np.mean(model.predict(x[val_idx][:, mask]) == y[val_idx])
        return (accuracy - 0.02 * mask.mean(),)

    toolbox = base.Toolbox()
    toolbox.register("evaluate", evaluate)
    toolbox.register("mate", tools.cxTwoPoint)
    toolbox.register("mutate", tools.mutFlipBit, indpb=0.001)
    toolbox.register("select", tools.selTournament, tournsize=3)
    population = [creator.PlainMask(m.astype(int).tolist()) for m in first_masks]
    started = time.perf_counter()
    try:
        while True:
            population, _ = algorithms.eaSimple(population, toolbox, 0.7, 0.5, 1, verbose=False)
    except Budget:
        pass
    return time.perf_counter() - started, len(sizes), float(np.mean(sizes))


def same_masks(x, y, config: ga.GAConfig, masks) -> tuple[float, float]:
    """Seconds for (a)'s and (b)'s fitness on the same masks, (b) through the process pool."""
    from sklearn.model_selection import train_test_split

    fit_idx, val_idx = train_test_split(np.arange(len(y)), test_size=0.25, stratify=y, random_state=config.seed)
    started = time.perf_counter()
    for mask in masks:
        ga.forest(config, trees=50).fit(x[fit_idx][:, mask], y[fit_idx]).predict(x[val_idx][:, mask])
    plain = time.perf_counter() - started
    ga._init_fitness_data(x, y, config)
    keys = [np.packbits(m).tobytes() for m in masks]
    started = time.perf_counter()
    with ga._pool(config, x, y) as pool:
        pool.map(ga.mask_accuracy, keys)
    return plain, time.perf_counter() - started


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--weights", default="imagenet")
    p.add_argument("--size", type=int, default=139)
    p.add_argument("--train-limit", type=int, default=6000)
    p.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE_DIR)
    p.add_argument("--population", type=int, default=40)
    p.add_argument("--generations", type=int, default=6)
    p.add_argument("--jobs", type=int, default=ga.GAConfig.jobs)
    args = p.parse_args()

    data = load_dataset(args.data, cache_dir=args.cache_dir, progress=False)
    idx = stratified_subset(data.train.y, args.train_limit)
    faces, labels = data.train.x[idx], data.train.y[idx]
    x = features.cached_features(faces, labels, args.weights, args.size, args.cache_dir)
    config = ga.GAConfig(
        population=args.population, generations=args.generations, patience=args.generations + 1, jobs=args.jobs
    )
    rankings = ga.rank_features(x, labels, seed=0, jobs=args.jobs)
    random.seed(config.seed)
    first = ga.initial_masks(x.shape[1], config, rankings)

    started = time.perf_counter()
    ours = ga.run_ga(x, labels, config, progress=False, rankings=rankings)
    ours_seconds = time.perf_counter() - started
    budget = ours.evaluations + ours.cache_hits
    plain_seconds, plain_evaluations, plain_size = straightforward_ga(x, labels, config, first, budget)
    plain_same, ours_same = same_masks(x, labels, config, first)

    print(
        f"GA on {x.shape[0]} x {x.shape[1]} Xception features, population {config.population}, "
        f"{budget} fitness evaluations each, same first population"
    )
    print(
        f"  (a) straightforward eaSimple (serial, uncached, 50-tree hold-out fitness): {plain_seconds:7.1f} s, "
        f"{plain_evaluations} forests, mean subset {plain_size:.0f} features"
    )
    print(
        f"  (b) ga_select.py (out-of-bag fitness, cache, {config.jobs} jobs):                {ours_seconds:7.1f} s, "
        f"{ours.evaluations} forests + {ours.cache_hits} cache hits, mean population size "
        f"{np.mean([row['mean_features'] for row in ours.log]):.0f} features"
    )
    print(f"  speed-up (a)/(b): {plain_seconds / ours_seconds:.1f}x")
    print(
        f"  same {len(first)} first-population masks (mean {np.mean([m.sum() for m in first]):.0f} features), fitness "
        f"only: (a) {plain_same:.1f} s, (b) {ours_same:.1f} s, {plain_same / ours_same:.1f}x"
    )


if __name__ == "__main__":
    cli.run_main(main)
