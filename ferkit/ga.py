"""Genetic feature selection with DEAP: bit masks over feature columns evolve under random-forest
fitness; a final forest on the best mask is compared with all features and SelectKBest."""

from __future__ import annotations

import multiprocessing
import os
import random
import time
from dataclasses import dataclass, field

import numpy as np

from .data import stratified_subset
from .errors import ParameterError


@dataclass
class GAConfig:
    """The GA's settings; these defaults are ``ga_select.py``'s."""

    population: int = 30
    generations: int = 20
    crossover: float = 0.7
    mutation: float = 0.5  # chance an individual is mutated
    bit_flip: float = 0.01  # chance each bit flips in a mutated individual
    init_rate: float = 0.1  # share of features switched on in the first population
    tournament: int = 3
    elite: int = 2
    penalty: float = 0.02  # fitness loss for selecting every feature
    trees: int = 50
    cv: int = 0  # 0: one held-out split; k >= 2: k-fold CV
    fitness_samples: int = 4000  # training rows used for fitness (stratified subsample)
    patience: int = 8  # stop after this many generations without improvement
    jobs: int = os.cpu_count() or 1
    seed: int = 0

    def validate(self, n_features: int) -> None:
        """Raise ``ParameterError`` for the first setting out of range."""
        checks = [
            ("population", self.population >= 4, "must be at least 4"),
            ("generations", self.generations >= 1, "must be at least 1"),
            ("crossover", 0 <= self.crossover <= 1, "is a probability: give a value in [0, 1]"),
            ("mutation", 0 <= self.mutation <= 1, "is a probability: give a value in [0, 1]"),
            ("bit_flip", 0 <= self.bit_flip <= 1, "is a probability: give a value in [0, 1]"),
            ("init_rate", 0 < self.init_rate <= 1, "must be in (0, 1]"),
            ("elite", 0 <= self.elite < self.population, "must be at least 0 and smaller than population"),
            ("tournament", 2 <= self.tournament <= self.population, "must be between 2 and population"),
            ("penalty", self.penalty >= 0, "must be at least 0"),
            ("trees", self.trees >= 1, "must be at least 1"),
            ("jobs", self.jobs >= 1, "must be at least 1"),
            ("cv", self.cv == 0 or self.cv >= 2, "must be 0 (one held-out split) or at least 2"),
            ("fitness_samples", self.fitness_samples >= 0, "must be at least 0 (0 = all)"),
            ("patience", self.patience >= 1, "must be at least 1"),
        ]
        for param, ok, problem in checks:
            if not ok:
                raise ParameterError(param, problem)
        if n_features < 2:
            raise ParameterError("features", f"must number at least 2, got {n_features}")


# Data for fitness evaluation lives in module globals so forked worker processes share it.
_FIT: dict = {}


def _init_fitness_data(x, y, config: GAConfig) -> None:
    from sklearn.model_selection import StratifiedKFold, train_test_split

    _FIT.update(x=x, y=y, config=config)
    if config.cv:
        folds = StratifiedKFold(config.cv, shuffle=True, random_state=config.seed)
        _FIT["splits"] = list(folds.split(x, y))
    else:
        train_idx, val_idx = train_test_split(np.arange(len(y)), test_size=0.25, stratify=y, random_state=config.seed)
        _FIT["splits"] = [(train_idx, val_idx)]


def forest(config: GAConfig, trees: int | None = None, jobs: int = 1):
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(
        n_estimators=trees or config.trees, n_jobs=jobs, random_state=config.seed, max_features="sqrt"
    )


def mask_accuracy(mask_bytes: bytes) -> float:
    """Random-forest accuracy of one feature mask on the fitness data (module globals)."""
    mask = np.unpackbits(np.frombuffer(mask_bytes, np.uint8))[: _FIT["x"].shape[1]].astype(bool)
    if not mask.any():
        return 0.0
    x = _FIT["x"][:, mask]
    scores = []
    for train_idx, val_idx in _FIT["splits"]:
        model = forest(_FIT["config"]).fit(x[train_idx], _FIT["y"][train_idx])
        scores.append(np.mean(model.predict(x[val_idx]) == _FIT["y"][val_idx]))
    return float(np.mean(scores))


@dataclass
class GAResult:
    mask: np.ndarray
    fitness: float
    accuracy: float
    log: list = field(default_factory=list)
    evaluations: int = 0
    cache_hits: int = 0
    seconds: float = 0.0


def _deap_types():
    from deap import base, creator

    if not hasattr(creator, "FeatureFitness"):
        creator.create("FeatureFitness", base.Fitness, weights=(1.0,))
        creator.create("FeatureMask", list, fitness=creator.FeatureFitness)
    return creator


def make_toolbox(n_features: int, config: GAConfig):
    """DEAP toolbox: random masks, two-point crossover, bit-flip mutation, tournaments."""
    from deap import base, tools

    creator = _deap_types()
    toolbox = base.Toolbox()
    toolbox.register("bit", lambda: int(random.random() < config.init_rate))
    toolbox.register("individual", tools.initRepeat, creator.FeatureMask, toolbox.bit, n_features)
    toolbox.register("population", tools.initRepeat, list, toolbox.individual)
    toolbox.register("mate", tools.cxTwoPoint)
    toolbox.register("mutate", tools.mutFlipBit, indpb=config.bit_flip)
    toolbox.register("select", tools.selTournament, tournsize=config.tournament)
    return toolbox


def fitness_subset(y: np.ndarray, config: GAConfig) -> np.ndarray:
    return (
        stratified_subset(y, config.fitness_samples, seed=config.seed) if config.fitness_samples else np.arange(len(y))
    )


def run_ga(x: np.ndarray, y: np.ndarray, config: GAConfig, progress: bool = True) -> GAResult:
    """Evolve feature masks over the columns of x; returns the best mask found."""
    from deap import algorithms, tools

    config.validate(x.shape[1])
    random.seed(config.seed)
    np.random.seed(config.seed)
    subset = fitness_subset(y, config)
    _init_fitness_data(x[subset], y[subset], config)
    toolbox = make_toolbox(x.shape[1], config)
    cache: dict[bytes, float] = {}
    result = GAResult(mask=np.zeros(x.shape[1], bool), fitness=-1.0, accuracy=0.0)
    pool = None
    if config.jobs > 1:
        method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
        pool = multiprocessing.get_context(method).Pool(
            config.jobs,
            initializer=None if method == "fork" else _init_fitness_data,
            initargs=() if method == "fork" else (x[subset], y[subset], config),
        )
    toolbox.register("map", pool.map if pool else map)

    def evaluate(population) -> None:
        todo = [ind for ind in population if not ind.fitness.valid]
        keys = [np.packbits(np.array(ind, bool)).tobytes() for ind in todo]
        fresh = list(dict.fromkeys(k for k in keys if k not in cache))
        result.evaluations += len(fresh)
        result.cache_hits += len(keys) - len(fresh)
        cache.update(zip(fresh, toolbox.map(mask_accuracy, fresh)))
        for ind, key in zip(todo, keys):
            ind.accuracy = cache[key]
            ind.fitness.values = (cache[key] - config.penalty * sum(ind) / len(ind),)

    started = time.time()
    hall = tools.HallOfFame(1)
    try:
        population = toolbox.population(config.population)
        evaluate(population)
        hall.update(population)
        stale = 0
        for generation in range(config.generations + 1):
            if generation:
                elite = [toolbox.clone(ind) for ind in tools.selBest(population, config.elite)]
                offspring = toolbox.select(population, config.population - config.elite)
                offspring = algorithms.varAnd(offspring, toolbox, config.crossover, config.mutation)
                evaluate(offspring)
                population = elite + offspring
                previous = hall[0].fitness.values[0]
                hall.update(population)
                stale = 0 if hall[0].fitness.values[0] > previous + 1e-9 else stale + 1
            fits = [ind.fitness.values[0] for ind in population]
            row = {
                "generation": generation,
                "best_fitness": hall[0].fitness.values[0],
                "mean_fitness": float(np.mean(fits)),
                "best_accuracy": hall[0].accuracy,
                "best_features": int(sum(hall[0])),
                "mean_features": float(np.mean([sum(i) for i in population])),
                "evaluations": result.evaluations,
                "seconds": round(time.time() - started, 1),
            }
            result.log.append(row)
            if progress:
                print(
                    f"generation {generation:3d}: best fitness {row['best_fitness']:.4f} "
                    f"(accuracy {row['best_accuracy']:.4f}, {row['best_features']} features), mean "
                    f"{row['mean_fitness']:.4f}, {result.evaluations} forests fitted, {row['seconds']:.0f} s",
                    flush=True,
                )
            if stale >= config.patience:
                if progress:
                    print(f"stopping: no improvement for {config.patience} generations")
                break
    finally:
        if pool:
            pool.close()
            pool.join()
    result.mask = np.array(hall[0], bool)
    result.fitness, result.accuracy = hall[0].fitness.values[0], hall[0].accuracy
    result.seconds = time.time() - started
    return result


# --------------------------------------------------------------------------- final comparison


def compare_on_test(x_train, y_train, x_test, y_test, mask: np.ndarray, config: GAConfig, trees: int) -> dict:
    """Test accuracy of forests on the GA mask, on all features and on SelectKBest at the same k."""
    from sklearn.feature_selection import SelectKBest, f_classif

    k = int(mask.sum())
    kbest = SelectKBest(f_classif, k=k).fit(x_train, y_train).get_support()
    rows, models = {}, {}
    for name, columns in (
        ("GA-selected", mask),
        ("all features", np.ones(x_train.shape[1], bool)),
        ("SelectKBest (ANOVA F)", kbest),
    ):
        model = forest(config, trees=trees, jobs=config.jobs).fit(x_train[:, columns], y_train)
        accuracy = float(np.mean(model.predict(x_test[:, columns]) == y_test))
        rows[name] = {"features": int(columns.sum()), "test_accuracy": accuracy}
        models[name] = model
    return {"rows": rows, "ga_forest": models["GA-selected"], "kbest_mask": kbest}
