"""Genetic feature selection with DEAP: which columns of a feature matrix a random forest should use.

A GA over bit masks of at most ``max_features`` columns, maximising a random forest's
out-of-bag accuracy on the training features. What makes it earn its place (measured in the
README):

- Fitness with little noise: the out-of-bag accuracy of a forest fitted on *all* fitness rows
  (each row is scored by the trees that did not see it), from small bootstrap samples
  (``max_samples``) with ``min_samples_leaf`` leaves. It ranks subsets the way a large forest on
  the validation split does better than one held-out quarter, and costs a fifth as much.
- A good start: half the first population are the top features of two filter rankings (ANOVA F
  and forest importances, both from the training features) at sizes spread up to
  ``max_features``, the rest random masks of random sizes.
- Moves that keep subsets whole: uniform crossover mixes two parents' choices, mutation swaps
  selected features for unselected ones (the size stays) or grows / shrinks a subset a little.
- Identical masks are never refitted, and fitness evaluations run in ``jobs`` processes.

Every subset evaluated is kept with its score: the best ``candidates`` are scored again on a
separate validation split and the best there is chosen (``choose_on_validation``), never on the
test split; ``compare_on_test`` then scores it once beside all features and SelectKBest at the
same size. The Pareto front (accuracy against size) of everything evaluated comes for free.
"""

from __future__ import annotations

import gc
import hashlib
import multiprocessing
import os
import random
import signal
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import gastate
from .errors import FerWarning, Interrupted, ParameterError
from .splits import stratified_subset


@dataclass
class GAConfig:
    """The GA's settings; these defaults are ``ga_select.py``'s."""

    population: int = 40
    generations: int = 20
    crossover: float = 0.7  # chance a pair of parents is crossed
    mutation: float = 0.8  # chance a child is mutated
    max_features: int = 512  # no subset grows beyond this
    min_features: int = 16  # nor shrinks below this
    init_ranked: float = 0.5  # share of the first population taken from filter rankings
    tournament: int = 3
    elite: int = 2  # best subsets carried over unchanged
    trees: int = 32  # trees per fitness forest
    max_samples: float = 0.15  # bootstrap sample of each fitness tree, as a share of the rows
    min_samples_leaf: int = 3
    fitness_samples: int = 0  # training rows used for fitness (stratified subsample; 0 = all)
    candidates: int = 12  # best subsets (out-of-bag) scored on the validation split
    patience: int = 8  # stop after this many generations without a better front
    jobs: int = os.cpu_count() or 1
    seed: int = 0
    scheduler: str | None = None  # a Dask scheduler's address: fitness on that cluster instead of local processes

    def validate(self, n_features: int) -> None:
        """Raise ``ParameterError`` for the first setting out of range."""
        checks = [
            ("population", self.population >= 4, "must be at least 4"),
            ("generations", self.generations >= 1, "must be at least 1"),
            ("crossover", 0 <= self.crossover <= 1, "is a probability: give a value in [0, 1]"),
            ("mutation", 0 <= self.mutation <= 1, "is a probability: give a value in [0, 1]"),
            ("min_features", self.min_features >= 1, "must be at least 1"),
            (  # both values said: either setting may be the one to change
                "max_features",
                self.min_features < self.max_features,
                f"({self.max_features}) must be larger than the smallest subset, min features ({self.min_features})",
            ),
            ("init_ranked", 0 <= self.init_ranked <= 1, "is a share: give a value in [0, 1]"),
            ("tournament", 2 <= self.tournament <= self.population, "must be between 2 and population"),
            ("elite", 0 <= self.elite < self.population, "must be at least 0 and smaller than population"),
            ("trees", self.trees >= 1, "must be at least 1"),
            ("max_samples", 0 < self.max_samples <= 1, "must be in (0, 1]"),
            ("min_samples_leaf", self.min_samples_leaf >= 1, "must be at least 1"),
            ("fitness_samples", self.fitness_samples >= 0, "must be at least 0 (0 = all)"),
            ("candidates", self.candidates >= 1, "must be at least 1"),
            ("patience", self.patience >= 1, "must be at least 1"),
            (
                "jobs",
                1 <= self.jobs <= 4 * (os.cpu_count() or 1),
                f"must be between 1 and {4 * (os.cpu_count() or 1)} (4 per core: each holds the features)",
            ),
        ]
        for param, ok, problem in checks:
            if not ok:
                raise ParameterError(param, problem)
        if n_features <= self.min_features:
            raise ParameterError("min_features", f"must be smaller than the number of features ({n_features})")
        if self.max_features >= n_features:
            raise ParameterError(
                "max_features", f"must be smaller than the number of features ({n_features}); a subset is the point"
            )


# --------------------------------------------------------------------------- fitness

# Data for fitness evaluation lives in module globals so forked worker processes share it.
_FIT: dict = {}


def _init_fitness_data(x, y, config: GAConfig) -> None:
    _FIT.update(x=x, y=y, config=config)


def _end_with_parent() -> None:
    """On Linux, have the kernel send this worker SIGTERM when the main process dies (even by
    SIGKILL): otherwise it lives on and prints BrokenPipe tracebacks into the user's terminal."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(0)


def _init_worker(x=None, y=None, config=None) -> None:
    # Ctrl-C goes to the main process, which stops the pool; workers must not print tracebacks,
    # and the pool's own SIGTERM must simply end them (not the parent's stop-like-Ctrl-C handler).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # Out of the job's process group: a signal to the whole group (Ctrl-C, `timeout`, `kill --
    # -PGID`, a batch system) reaches only the main process, which stops the pool. A worker the
    # group's SIGTERM killed while it held the pool's task-queue lock (an idle worker does, waiting)
    # left the main process waiting for that lock in Pool.terminate() forever. Linux only: there
    # PR_SET_PDEATHSIG still ends a worker whose parent is killed; elsewhere (no PDEATHSIG, no
    # setpgrp on Windows) the workers stay in the group.
    if sys.platform.startswith("linux"):
        os.setpgrp()
    _end_with_parent()
    if x is not None:
        _init_fitness_data(x, y, config)


def forest(config: GAConfig, trees: int | None = None, jobs: int = 1, seed: int | None = None):
    """The forest of the final comparison: ``trees`` full-size trees (the scikit-learn defaults)."""
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(
        n_estimators=trees or config.trees,
        n_jobs=jobs,
        random_state=config.seed if seed is None else seed,
        max_features="sqrt",
    )


def fitness_forest(config: GAConfig):
    """The forest whose out-of-bag accuracy is the fitness: small bootstrap samples, small leaves."""
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(
        n_estimators=config.trees,
        max_samples=config.max_samples,
        min_samples_leaf=config.min_samples_leaf,
        oob_score=True,
        n_jobs=1,
        random_state=config.seed,
        max_features="sqrt",
    )


def mask_accuracy(mask_bytes: bytes, data: dict | None = None) -> float:
    """Out-of-bag accuracy of the fitness forest on one feature mask; ``data`` (x, y, config)
    defaults to the module's (set once per worker process)."""
    data = data or _FIT
    mask = np.unpackbits(np.frombuffer(mask_bytes, np.uint8))[: data["x"].shape[1]].astype(bool)
    if not mask.any():
        return 0.0
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a few rows may be in every bag: sklearn warns, the score stands
        return float(fitness_forest(data["config"]).fit(data["x"][:, mask], data["y"]).oob_score_)


# --------------------------------------------------------------------------- rankings and moves


# The constant columns already named, per data: a run ranks the same features once per seed and
# per SelectKBest size, and the line said once is enough (Python's own once-per-place rule does
# not hold: every ``catch_warnings`` resets it).
_CONSTANT_SAID: set[tuple] = set()


def anova_f(x: np.ndarray, y: np.ndarray):
    """scikit-learn's ``f_classif`` (F and p per column) without its two warnings per call for
    columns that are the same on every face (few faces: ``--train-limit 20``, say): one line
    instead, naming how many, once per data; their F is NaN, which every ranking here puts last."""
    from sklearn.feature_selection import f_classif

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        scores = f_classif(x, y)
    columns = np.flatnonzero(np.ptp(x, axis=0) == 0)
    # Which data: its shape, the constant columns and a digest of every 64th face's features.
    digest = hashlib.blake2b(np.ascontiguousarray(x[:: max(1, len(x) // 64)]).tobytes(), digest_size=16).digest()
    constant, said = len(columns), (x.shape, columns.tobytes(), digest)
    if constant and said not in _CONSTANT_SAID:
        _CONSTANT_SAID.add(said)
        warnings.warn(
            f"{constant} of the {x.shape[1]} features are the same for all {len(y)} training faces (too few faces?); "
            f"they rank last",
            FerWarning,
            stacklevel=2,
        )
    return scores


def rank_features(x: np.ndarray, y: np.ndarray, seed: int = 0, jobs: int = 1) -> dict[str, np.ndarray]:
    """Column indices, best first, by ANOVA F and by the importances of a 100-tree forest."""
    f_scores, _ = anova_f(x, y)
    importances = forest(GAConfig(seed=seed), trees=100, jobs=jobs).fit(x, y).feature_importances_
    return {
        "anova": np.argsort(-np.nan_to_num(f_scores), kind="stable"),
        "importance": np.argsort(-importances, kind="stable"),
    }


def _deap_types():
    from deap import base, creator

    if not hasattr(creator, "SubsetFitness"):
        creator.create("SubsetFitness", base.Fitness, weights=(1.0,))
        creator.create("FeatureSubset", list, fitness=creator.SubsetFitness)
    return creator


def _sizes(config: GAConfig, n: int, n_features: int) -> list[int]:
    top = min(config.max_features, n_features - 1)
    return [int(round(s)) for s in np.geomspace(max(config.min_features, top // 16), top, n)] if n else []


def initial_masks(
    n_features: int, config: GAConfig, rankings: dict[str, np.ndarray] | None, rng=random
) -> list[np.ndarray]:
    """The first population: top-k masks of each ranking at spread sizes, then random masks."""
    masks = []
    n_ranked = int(round(config.init_ranked * config.population)) if rankings else 0
    if n_ranked:
        orders = list(rankings.values())
        for i, k in enumerate(_sizes(config, n_ranked, n_features)):
            mask = np.zeros(n_features, bool)
            mask[orders[i % len(orders)][:k]] = True
            masks.append(mask)
    top = min(config.max_features, n_features - 1)
    while len(masks) < config.population:
        k = rng.randint(config.min_features, top)
        mask = np.zeros(n_features, bool)
        mask[rng.sample(range(n_features), k)] = True
        masks.append(mask)
    return masks


def mutate_subset(individual, config: GAConfig, rng=random):
    """Swap a few selected features for unselected ones (the size stays), or, one time in three,
    grow or shrink the subset by up to a tenth."""
    on = [i for i, bit in enumerate(individual) if bit]
    off = [i for i, bit in enumerate(individual) if not bit]
    if rng.random() < 1 / 3:
        step = rng.randint(1, max(1, len(on) // 10))
        if rng.random() < 0.5 and off:
            for i in rng.sample(off, min(step, len(off))):
                individual[i] = 1
        else:
            for i in rng.sample(on, min(step, max(len(on) - 1, 0))):
                individual[i] = 0
    else:
        swaps = min(1 + int(rng.expovariate(1 / max(1, len(on) // 50))), len(on), len(off))
        for i in rng.sample(on, swaps):
            individual[i] = 0
        for i in rng.sample(off, swaps):
            individual[i] = 1
    return (individual,)


def repair(individual, config: GAConfig, rng=random) -> None:
    """Keep a subset's size within [min_features, max_features] by random removals / additions."""
    on = [i for i, bit in enumerate(individual) if bit]
    if len(on) > config.max_features:
        for i in rng.sample(on, len(on) - config.max_features):
            individual[i] = 0
    elif len(on) < config.min_features:
        off = [i for i, bit in enumerate(individual) if not bit]
        for i in rng.sample(off, config.min_features - len(on)):
            individual[i] = 1


def cx_uniform(ind1, ind2, rng, indpb: float = 0.5):
    """Uniform crossover (DEAP's cxUniform, drawing from ``rng``)."""
    for i in range(min(len(ind1), len(ind2))):
        if rng.random() < indpb:
            ind1[i], ind2[i] = ind2[i], ind1[i]
    return ind1, ind2


def select_tournament(individuals, k: int, rng, tournsize: int):
    """k winners of tournaments among ``tournsize`` random picks (DEAP's selTournament, from ``rng``)."""
    return [max((rng.choice(individuals) for _ in range(tournsize)), key=lambda ind: ind.fitness) for _ in range(k)]


def vary(population, toolbox, cxpb: float, mutpb: float, rng):
    """Crossover of neighbours, then mutation, on clones (DEAP's varAnd, drawing from ``rng``)."""
    offspring = [toolbox.clone(ind) for ind in population]
    for i in range(1, len(offspring), 2):
        if rng.random() < cxpb:
            offspring[i - 1], offspring[i] = toolbox.mate(offspring[i - 1], offspring[i])
            del offspring[i - 1].fitness.values, offspring[i].fitness.values
    for i in range(len(offspring)):
        if rng.random() < mutpb:
            (offspring[i],) = toolbox.mutate(offspring[i])
            del offspring[i].fitness.values
    return offspring


def make_toolbox(n_features: int, config: GAConfig, rng=random):
    """DEAP toolbox: uniform crossover, swap / resize mutation, tournament selection. The operators
    draw from ``rng``, the GA's own random stream: DEAP's own draw from Python's global one, which
    a Dask client's threads also draw from, so a run would not repeat."""
    from deap import base

    _deap_types()
    toolbox = base.Toolbox()
    toolbox.register("mate", cx_uniform, rng=rng)
    toolbox.register("mutate", mutate_subset, config=config, rng=rng)
    toolbox.register("select", select_tournament, rng=rng, tournsize=config.tournament)
    return toolbox


# --------------------------------------------------------------------------- the search


@dataclass
class GAResult:
    """The best subset by out-of-bag accuracy, the Pareto front (accuracy against size) of every
    subset evaluated, the log by generation, and the cost."""

    mask: np.ndarray
    accuracy: float
    front: list = field(default_factory=list)  # (mask, out-of-bag accuracy), fewest features first
    ranked: list = field(default_factory=list)  # every distinct subset evaluated, best first
    log: list = field(default_factory=list)
    evaluations: int = 0
    cache_hits: int = 0
    seconds: float = 0.0

    @property
    def fitness(self) -> float:
        return self.accuracy


def fitness_subset(y: np.ndarray, config: GAConfig) -> np.ndarray:
    if not config.fitness_samples:
        return np.arange(len(y))
    return stratified_subset(y, config.fitness_samples, seed=config.seed, flag="fitness-samples")


def _pool(config: GAConfig, x, y):
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    args = () if method == "fork" else (x, y, config)
    # A forked worker has only the thread that forked it. Garbage left in this process (a
    # TensorFlow input iterator from the feature extraction, say) would be collected in the
    # worker, whose destructor then waits forever for a thread that is not there: seen here, a
    # GA with --jobs 2 that hung after training in the same process. So collect it here, where
    # its threads live, and freeze what is left out of the workers' collections (harmless where
    # workers are spawned instead).
    gc.collect()
    gc.freeze()
    try:
        return multiprocessing.get_context(method).Pool(config.jobs, initializer=_init_worker, initargs=args)
    finally:
        gc.unfreeze()


def pareto_front(scored: list) -> list:
    """The (mask, accuracy) pairs no smaller-or-equal subset beats, fewest features first."""
    front, best = [], -1.0
    for mask, accuracy in sorted(scored, key=lambda item: (item[0].sum(), -item[1])):
        if accuracy > best:
            front.append((mask, accuracy))
            best = accuracy
    return front


def _restored(creator, masks, fitness) -> list:
    """Saved subsets as DEAP individuals with their fitness, as the search held them."""
    individuals = [creator.FeatureSubset(list(m)) for m in masks]
    for ind, value in zip(individuals, fitness):
        ind.fitness.values = (value,)
    return individuals


def _state(population, hall, cache, rng, stale, result, row, finished) -> gastate.SearchState:
    return gastate.SearchState(
        population=[list(ind) for ind in population],
        fitness=[ind.fitness.values[0] for ind in population],
        best=list(hall[0]),
        best_fitness=hall[0].fitness.values[0],
        cache=dict(cache),
        rng_state=rng.getstate(),
        stale=stale,
        log=list(result.log),
        evaluations=result.evaluations,
        cache_hits=result.cache_hits,
        seconds=row["seconds"],
        finished=finished,
    )


def run_ga(
    x: np.ndarray,
    y: np.ndarray,
    config: GAConfig,
    progress: bool = True,
    rankings: dict[str, np.ndarray] | None = None,
    mapper=None,
    checkpoint: Path | None = None,
) -> GAResult:
    """Evolve feature subsets of at most ``max_features`` columns of x towards the best
    out-of-bag accuracy (tournaments, elitism, uniform crossover, swap / resize mutation).

    ``rankings`` (from ``rank_features``) seed part of the first population. Fitness runs in
    ``config.jobs`` local processes, or on the Dask cluster at ``config.scheduler``; ``mapper``
    replaces both (any ``map``-like callable). Ctrl-C stops the workers at once and raises
    ``Interrupted``. ``checkpoint``: a file the search's state is written to after every
    generation and, where it exists, goes on from (``ferkit.gastate``); it makes the same choices
    as a search never stopped.
    """
    from deap import tools

    config.validate(x.shape[1])
    subset = fitness_subset(y, config)
    fp = gastate.fingerprint(x[subset], y[subset], config) if checkpoint else None
    state = gastate.load(checkpoint, fp) if checkpoint else None  # refused before any worker starts
    _init_fitness_data(x[subset], y[subset], config)
    rng = random.Random(config.seed)
    toolbox = make_toolbox(x.shape[1], config, rng)
    creator = _deap_types()
    cache: dict[bytes, float] = {}
    result = GAResult(mask=np.zeros(x.shape[1], bool), accuracy=0.0)
    pool = cluster = None
    if mapper is None and config.scheduler:
        from .cluster import DaskMapper

        mapper = cluster = DaskMapper(config.scheduler, x[subset], y[subset], config)
    elif mapper is None and config.jobs > 1:
        pool = _pool(config, x[subset], y[subset])
    toolbox.register("map", mapper or (pool.map if pool else map))

    def evaluate(population) -> None:
        for ind in population:
            repair(ind, config, rng)
        todo = [ind for ind in population if not ind.fitness.valid]
        keys = [np.packbits(np.array(ind, bool)).tobytes() for ind in todo]
        fresh = list(dict.fromkeys(k for k in keys if k not in cache))
        result.evaluations += len(fresh)
        result.cache_hits += len(keys) - len(fresh)
        cache.update(zip(fresh, toolbox.map(mask_accuracy, fresh)))
        for ind, key in zip(todo, keys):
            ind.fitness.values = (cache[key],)

    hall = tools.HallOfFame(1)
    started = time.time() - (state.seconds if state else 0.0)
    try:
        if state:
            population = _restored(creator, state.population, state.fitness)
            hall.insert(_restored(creator, [state.best], [state.best_fitness])[0])
            cache.update(state.cache)
            rng.setstate(state.rng_state)
            stale, result.log = state.stale, state.log
            result.evaluations, result.cache_hits = state.evaluations, state.cache_hits
            if progress:
                print(
                    f"going on from {checkpoint}: "
                    + ("the search had finished" if state.finished else f"after generation {len(state.log) - 1}"),
                    flush=True,
                )
        else:
            population = [
                creator.FeatureSubset(m.astype(int).tolist()) for m in initial_masks(x.shape[1], config, rankings, rng)
            ]
            evaluate(population)
            hall.update(population)
            stale = 0
        first = config.generations + 1 if state and state.finished else len(result.log)
        for generation in range(first, config.generations + 1):
            if generation:
                elite = [toolbox.clone(ind) for ind in tools.selBest(population, config.elite)]
                offspring = toolbox.select(population, config.population - config.elite)
                offspring = vary(offspring, toolbox, config.crossover, config.mutation, rng)
                evaluate(offspring)
                population = elite + offspring
                previous = hall[0].fitness.values[0]
                hall.update(population)
                stale = 0 if hall[0].fitness.values[0] > previous + 1e-9 else stale + 1
            row = {
                "generation": generation,
                "best_accuracy": hall[0].fitness.values[0],
                "mean_accuracy": float(np.mean([ind.fitness.values[0] for ind in population])),
                "best_features": int(sum(hall[0])),
                "mean_features": float(np.mean([sum(ind) for ind in population])),
                "evaluations": result.evaluations,
                "seconds": round(time.time() - started, 1),
            }
            result.log.append(row)
            if progress:
                print(
                    f"generation {generation:3d}: best out-of-bag accuracy {row['best_accuracy']:.4f} "
                    f"({row['best_features']} features), population mean {row['mean_accuracy']:.4f} "
                    f"({row['mean_features']:.0f} features), {result.evaluations} forests fitted, "
                    f"{row['seconds']:.0f} s",
                    flush=True,
                )
            finished = stale >= config.patience or generation == config.generations
            if checkpoint:
                gastate.save(checkpoint, _state(population, hall, cache, rng, stale, result, row, finished), fp)
            if stale >= config.patience:
                if progress:
                    print(f"stopping: no better subset for {config.patience} generations")
                break
    except KeyboardInterrupt:
        if pool:
            pool.terminate()
            pool = None
        way_on = (
            f"the same command goes on after generation {len(result.log) - 1} (saved in {checkpoint})"
            if checkpoint and result.log
            else "rerun with fewer --generations or --seeds for a shorter run"
        )
        stopped = Interrupted(
            f"interrupted in generation {len(result.log)} ({result.evaluations} forests fitted); {way_on}"
        )
        if len(hall):
            stopped.partial = {
                "mask": np.array(hall[0], bool),
                "oob_accuracy": hall[0].fitness.values[0],
                "generations": len(result.log),
                "log": result.log,
            }
        raise stopped from None
    finally:
        if pool:
            pool.close()
            pool.join()
        if cluster:
            cluster.close()  # also cancels its tasks still running after a Ctrl-C
    n = x.shape[1]
    scored = [(np.unpackbits(np.frombuffer(k, np.uint8))[:n].astype(bool), acc) for k, acc in cache.items()]
    result.ranked = sorted(scored, key=lambda item: -item[1])
    result.front = pareto_front(scored)
    result.mask, result.accuracy = np.array(hall[0], bool), hall[0].fitness.values[0]
    result.seconds = time.time() - started
    return result
