"""The GA as ga_select.py runs it (fitness cache, parallel evaluation, subsampled fitness data)
against a straightforward serial, uncached DEAP ``eaSimple`` loop: same population, generations
and Xception features of the same FER2013 training subset, timed in one run.

    python benchmarks/ga_speed.py --weights ../shared/weights/xception_imagenet_notop.weights.h5
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np

from ferkit import features, ga
from ferkit.data import load_dataset, stratified_subset
from ferkit.paths import DEFAULT_CACHE_DIR


def straightforward_ga(x, y, config: ga.GAConfig):
    """What one writes first: eaSimple, a forest fitted on the full training features for
    every individual of every generation, one after another."""
    from deap import algorithms
    from sklearn.model_selection import train_test_split

    random.seed(config.seed)
    fit_idx, val_idx = train_test_split(np.arange(len(y)), test_size=0.25, stratify=y, random_state=config.seed)
    toolbox = ga.make_toolbox(x.shape[1], config)

    def evaluate(individual):
        mask = np.array(individual, bool)
        if not mask.any():
            return (0.0,)
        model = ga.forest(config).fit(x[fit_idx][:, mask], y[fit_idx])
        accuracy = np.mean(model.predict(x[val_idx][:, mask]) == y[val_idx])
        return (accuracy - config.penalty * mask.mean(),)

    toolbox.register("evaluate", evaluate)
    population = toolbox.population(config.population)
    population, _ = algorithms.eaSimple(
        population, toolbox, config.crossover, config.mutation, config.generations, verbose=False
    )
    return max(population, key=lambda ind: ind.fitness.values[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("../shared/data/fer2013"))
    p.add_argument("--weights", default="imagenet")
    p.add_argument("--size", type=int, default=139)
    p.add_argument("--train-limit", type=int, default=6000)
    p.add_argument("--population", type=int, default=20)
    p.add_argument("--generations", type=int, default=8)
    p.add_argument("--jobs", type=int, default=2)
    args = p.parse_args()

    data = load_dataset(args.data, progress=False)
    idx = stratified_subset(data.train.y, args.train_limit)
    faces, labels = data.train.x[idx], data.train.y[idx]
    x = features.cached_features(faces, labels, args.weights, args.size, DEFAULT_CACHE_DIR)
    config = ga.GAConfig(
        population=args.population, generations=args.generations, patience=args.generations + 1, jobs=args.jobs
    )

    started = time.perf_counter()
    ours = ga.run_ga(x, labels, config, progress=False)
    ours_seconds = time.perf_counter() - started
    started = time.perf_counter()
    plain = straightforward_ga(x, labels, config)
    plain_seconds = time.perf_counter() - started

    print(
        f"GA on {x.shape[0]} x {x.shape[1]} Xception features, population {config.population}, "
        f"{config.generations} generations, {config.trees} trees per fitness forest"
    )
    print(
        f"  straightforward (serial, uncached, full fitness data): {plain_seconds:7.1f} s, "
        f"best {int(sum(plain))} features"
    )
    print(
        f"  ga_select.py (cache, {config.jobs} jobs, {config.fitness_samples} fitness rows): "
        f"{ours_seconds:7.1f} s, best {int(ours.mask.sum())} features, {ours.evaluations} forests "
        f"fitted, {ours.cache_hits} cache hits"
    )
    print(f"  speed-up: {plain_seconds / ours_seconds:.1f}x")


if __name__ == "__main__":
    main()
