"""Xception features + a DEAP genetic algorithm that picks a feature subset for a random forest.

    python ga_select.py --data ../shared/data/fer2013 --weights ../shared/weights/xception_imagenet_notop.weights.h5 \\
        --train-limit 6000

1. ImageNet Xception (no top, global average pooling) turns each face into 2,048 features;
   features are cached on disk with the settings that produced them.
2. A genetic algorithm evolves bit masks over those features. Fitness is random-forest accuracy
   on a held-out part of the *training* features (or k-fold CV), minus a small penalty per
   selected feature. Identical masks are never refitted; evaluations run in parallel.
3. A final forest on all training features under the best mask is scored on the test set next
   to two baselines computed in the same run: all 2,048 features, and SelectKBest (ANOVA F) at
   the same number of features.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

import fer_common as fc

XCEPTION_MIN_SIZE = 71


class FeatureError(ValueError):
    """Bad weights, cache or GA settings; the message says what to do."""


# --------------------------------------------------------------------------- feature extraction


def xception_input(faces: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, 48, 48) grey faces -> Xception's input: size x size, 3 channels, [-1, 1]."""
    from keras.applications.xception import preprocess_input

    resized = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_CUBIC) for f in faces])
    return preprocess_input(np.repeat(resized[..., None], 3, axis=-1).astype(np.float32))


def load_xception(weights: str, size: int):
    if size < XCEPTION_MIN_SIZE:
        raise FeatureError(f"--size must be at least {XCEPTION_MIN_SIZE} (Xception's minimum input).")
    if weights != "imagenet" and not Path(weights).is_file():
        raise FeatureError(
            f"weights file {weights} not found. Pass --weights PATH to an Xception no-top weights file "
            f"(xception_weights_tf_dim_ordering_tf_kernels_notop.h5 or a .weights.h5), or --weights "
            f"imagenet to download it.")
    import keras

    try:
        return keras.applications.Xception(include_top=False, pooling="avg", weights=weights,
                                           input_shape=(size, size, 3))
    except Exception as exc:  # download failures surface as many exception types
        raise FeatureError(
            f"could not load Xception weights '{weights}' ({type(exc).__name__}: {exc}). Without "
            f"internet, download the no-top weights elsewhere and pass --weights PATH.") from None


def extract_features(faces: np.ndarray, weights: str, size: int, batch_size: int = 64,
                     model=None, desc: str = "Xception features") -> np.ndarray:
    """2,048 features per face, batched, with a progress bar."""
    from tqdm import tqdm

    model = model or load_xception(weights, size)
    out = np.zeros((len(faces), model.output_shape[-1]), np.float32)
    for start in tqdm(range(0, len(faces), batch_size), desc=desc, unit="batch"):
        batch = xception_input(faces[start:start + batch_size], size)
        out[start:start + len(batch)] = np.asarray(model.predict_on_batch(batch))
    return out


def cached_features(faces: np.ndarray, labels: np.ndarray, weights: str, size: int,
                    cache_dir: Path | None, model=None, desc: str = "Xception features") -> np.ndarray:
    """Features for these exact faces and settings, from the cache when it has them."""
    digest = hashlib.sha256(np.ascontiguousarray(faces).tobytes()).hexdigest()
    weights_id = "imagenet" if weights == "imagenet" else f"{Path(weights).name}:{Path(weights).stat().st_size}"
    settings = {"faces_sha256": digest, "count": len(faces), "size": size, "weights": weights_id,
                "model": "Xception(include_top=False, pooling='avg')", "preprocess": "cubic resize, grey x3, preprocess_input"}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]
    path = cache_dir / f"xception-{key}.npz" if cache_dir else None
    if path and path.exists():
        try:
            with np.load(path) as cached:
                features, cached_labels = cached["features"], cached["labels"]
                cached_settings = json.loads(str(cached["settings"]))
        except (OSError, ValueError, KeyError, EOFError):
            raise FeatureError(f"feature cache {path} is empty or damaged; delete it and rerun.") from None
        if cached_settings != settings or features.shape[0] != len(faces) or not np.array_equal(cached_labels, labels):
            raise FeatureError(f"feature cache {path} does not match these images; delete it and rerun.")
        return features
    features = extract_features(faces, weights, size, model=model, desc=desc)
    if path:
        fc.atomic_savez(path, features=features, labels=labels, settings=json.dumps(settings))
    return features


# --------------------------------------------------------------------------- the genetic algorithm


@dataclass
class GAConfig:
    population: int = 30
    generations: int = 20
    crossover: float = 0.7
    mutation: float = 0.5          # chance an individual is mutated
    bit_flip: float = 0.01         # chance each bit flips in a mutated individual
    init_rate: float = 0.1         # share of features switched on in the first population
    tournament: int = 3
    elite: int = 2
    penalty: float = 0.02          # fitness loss for selecting every feature
    trees: int = 50
    cv: int = 0                    # 0: one held-out split; k >= 2: k-fold CV
    fitness_samples: int = 4000    # training rows used for fitness (stratified subsample)
    patience: int = 8              # stop after this many generations without improvement
    jobs: int = 2
    seed: int = 0

    def validate(self, n_features: int) -> None:
        problems = []
        if self.population < 4:
            problems.append("--population must be at least 4")
        if self.generations < 1:
            problems.append("--generations must be at least 1")
        if not 0 <= self.crossover <= 1 or not 0 <= self.mutation <= 1 or not 0 <= self.bit_flip <= 1:
            problems.append("--crossover, --mutation and --bit-flip are probabilities in [0, 1]")
        if not 0 < self.init_rate <= 1:
            problems.append("--init-rate must be in (0, 1]")
        if self.elite >= self.population:
            problems.append("--elite must be smaller than --population")
        if not 2 <= self.tournament <= self.population:
            problems.append("--tournament must be between 2 and --population")
        if self.trees < 1 or self.jobs < 1 or self.cv == 1 or self.cv < 0:
            problems.append("--trees and --jobs must be at least 1, --cv 0 or at least 2")
        if n_features < 2:
            problems.append(f"need at least 2 features, got {n_features}")
        if problems:
            raise FeatureError("; ".join(problems))


# Data for fitness evaluation lives in module globals so forked worker processes share it.
_FIT: dict = {}


def _init_fitness_data(x, y, config: GAConfig) -> None:
    from sklearn.model_selection import StratifiedKFold, train_test_split

    _FIT.update(x=x, y=y, config=config)
    if config.cv:
        folds = StratifiedKFold(config.cv, shuffle=True, random_state=config.seed)
        _FIT["splits"] = list(folds.split(x, y))
    else:
        train_idx, val_idx = train_test_split(np.arange(len(y)), test_size=0.25, stratify=y,
                                              random_state=config.seed)
        _FIT["splits"] = [(train_idx, val_idx)]


def forest(config: GAConfig, trees: int | None = None, jobs: int = 1):
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=trees or config.trees, n_jobs=jobs,
                                  random_state=config.seed, max_features="sqrt")


def mask_accuracy(mask_bytes: bytes) -> float:
    """Random-forest accuracy of one feature mask on the fitness data (module globals)."""
    mask = np.unpackbits(np.frombuffer(mask_bytes, np.uint8))[:_FIT["x"].shape[1]].astype(bool)
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
    return fc.stratified_subset(y, config.fitness_samples, seed=config.seed) if config.fitness_samples else np.arange(len(y))


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
            config.jobs, initializer=None if method == "fork" else _init_fitness_data,
            initargs=() if method == "fork" else (x[subset], y[subset], config))
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
            row = {"generation": generation, "best_fitness": hall[0].fitness.values[0],
                   "mean_fitness": float(np.mean(fits)), "best_accuracy": hall[0].accuracy,
                   "best_features": int(sum(hall[0])), "mean_features": float(np.mean([sum(i) for i in population])),
                   "evaluations": result.evaluations, "seconds": round(time.time() - started, 1)}
            result.log.append(row)
            if progress:
                print(f"generation {generation:3d}: best fitness {row['best_fitness']:.4f} "
                      f"(accuracy {row['best_accuracy']:.4f}, {row['best_features']} features), mean "
                      f"{row['mean_fitness']:.4f}, {result.evaluations} forests fitted, {row['seconds']:.0f} s",
                      flush=True)
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
    for name, columns in (("GA-selected", mask), ("all features", np.ones(x_train.shape[1], bool)),
                          ("SelectKBest (ANOVA F)", kbest)):
        model = forest(config, trees=trees, jobs=config.jobs).fit(x_train[:, columns], y_train)
        accuracy = float(np.mean(model.predict(x_test[:, columns]) == y_test))
        rows[name] = {"features": int(columns.sum()), "test_accuracy": accuracy}
        models[name] = model
    return {"rows": rows, "ga_forest": models["GA-selected"], "kbest_mask": kbest}


def plot_progress(log: list, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    gens = [r["generation"] for r in log]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    top.plot(gens, [r["best_fitness"] for r in log], "o-", label="best fitness")
    top.plot(gens, [r["mean_fitness"] for r in log], "s-", label="mean fitness")
    top.plot(gens, [r["best_accuracy"] for r in log], "--", label="best RF accuracy (fitness data)")
    top.set_ylabel("fitness / accuracy")
    top.legend()
    top.grid(alpha=0.3)
    bottom.plot(gens, [r["best_features"] for r in log], "o-", label="features in best mask")
    bottom.plot(gens, [r["mean_features"] for r in log], "s-", label="mean features in population")
    bottom.set_xlabel("generation")
    bottom.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    bottom.set_ylabel("selected features")
    bottom.legend()
    bottom.grid(alpha=0.3)
    fig.suptitle("Genetic feature selection")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=fc.DEFAULT_DATA, help="dataset folder or fer2013.csv (default data/fer2013)")
    p.add_argument("--weights", default="imagenet", help="'imagenet' (download) or a local weights file")
    p.add_argument("--size", type=int, default=139,
                   help="Xception input size in pixels (>= 71; 139 gave the best validation accuracy, see README)")
    p.add_argument("--train-limit", type=int, default=6000, help="stratified training subset (0 = all)")
    p.add_argument("--test-limit", type=int, default=0, help="stratified test subset (0 = all)")
    p.add_argument("--population", type=int, default=30)
    p.add_argument("--generations", type=int, default=20)
    p.add_argument("--crossover", type=float, default=0.7)
    p.add_argument("--mutation", type=float, default=0.5)
    p.add_argument("--bit-flip", type=float, default=0.01)
    p.add_argument("--init-rate", type=float, default=0.1)
    p.add_argument("--tournament", type=int, default=3)
    p.add_argument("--elite", type=int, default=2)
    p.add_argument("--penalty", type=float, default=0.02)
    p.add_argument("--trees", type=int, default=50, help="trees per fitness forest")
    p.add_argument("--final-trees", type=int, default=300, help="trees in the final and baseline forests")
    p.add_argument("--cv", type=int, default=0, help="k-fold CV for fitness (0 = one held-out split)")
    p.add_argument("--fitness-samples", type=int, default=4000, help="training rows used for fitness (0 = all)")
    p.add_argument("--patience", type=int, default=8)
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", type=Path, default=fc.DEFAULT_CACHE_DIR)
    p.add_argument("--models-dir", type=Path, default=fc.MODELS_DIR)
    p.add_argument("--plots-dir", type=Path, default=fc.PLOTS_DIR)
    return p.parse_args(argv)


def ga_config(args: argparse.Namespace) -> GAConfig:
    return GAConfig(population=args.population, generations=args.generations, crossover=args.crossover,
                    mutation=args.mutation, bit_flip=args.bit_flip, init_rate=args.init_rate,
                    tournament=args.tournament, elite=args.elite, penalty=args.penalty, trees=args.trees,
                    cv=args.cv, fitness_samples=args.fitness_samples, patience=args.patience,
                    jobs=args.jobs, seed=args.seed)


def run(args: argparse.Namespace) -> dict:
    config = ga_config(args)
    config.validate(2048)
    started = time.time()
    data = fc.load_dataset(args.data, cache_dir=args.cache_dir)
    train, test = data.train, data.test
    if args.train_limit:
        idx = fc.stratified_subset(train.y, args.train_limit, seed=args.seed)
        train = fc.Split(train.x[idx], train.y[idx])
    if args.test_limit:
        idx = fc.stratified_subset(test.y, args.test_limit, seed=args.seed)
        test = fc.Split(test.x[idx], test.y[idx])
    model = load_xception(args.weights, args.size)
    extract_started = time.time()
    x_train = cached_features(train.x, train.y, args.weights, args.size, args.cache_dir, model, "train features")
    x_test = cached_features(test.x, test.y, args.weights, args.size, args.cache_dir, model, "test features")
    extract_seconds = time.time() - extract_started
    print(f"features: train {x_train.shape}, test {x_test.shape} ({extract_seconds:.0f} s)")

    ga = run_ga(x_train, train.y, config)
    comparison = compare_on_test(x_train, train.y, x_test, test.y, ga.mask, config, args.final_trees)

    args.models_dir.mkdir(parents=True, exist_ok=True)
    np.save(args.models_dir / "ga_mask.npy", ga.mask)
    import joblib

    joblib.dump(comparison["ga_forest"], args.models_dir / "ga_forest.joblib", compress=3)
    plot = plot_progress(ga.log, args.plots_dir / "ga_progress.png")
    report = {"table": comparison["rows"], "selected_features": np.flatnonzero(ga.mask).tolist(),
              "ga": {"fitness": ga.fitness, "fitness_accuracy": ga.accuracy, "forests_fitted": ga.evaluations,
                     "cache_hits": ga.cache_hits, "seconds": round(ga.seconds, 1), "log": ga.log},
              "config": vars(config), "xception_size": args.size, "weights": args.weights,
              "train_images": len(train), "test_images": len(test),
              "extraction_seconds": round(extract_seconds, 1), "total_seconds": round(time.time() - started, 1)}
    (args.models_dir / "ga_report.json").write_text(json.dumps(report, indent=1))

    print(f"\n{'method':<24}{'features':>9}{'test accuracy':>15}")
    for name, row in comparison["rows"].items():
        print(f"{name:<24}{row['features']:>9}{row['test_accuracy']:>15.4f}")
    print(f"\nGA: {ga.evaluations} forests fitted, {ga.cache_hits} cache hits, {ga.seconds:.0f} s; "
          f"total {report['total_seconds']:.0f} s")
    print(f"saved {args.models_dir / 'ga_mask.npy'}, {args.models_dir / 'ga_forest.joblib'}, "
          f"{args.models_dir / 'ga_report.json'}, {plot}")
    return report


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        run(args)
    except (FeatureError, fc.DatasetError) as exc:
        fc.fail(str(exc))


if __name__ == "__main__":
    main()
