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

import dataclasses
import json
import time

import numpy as np

from ferkit import cli
from ferkit.data import Split, load_dataset, stratified_subset
from ferkit.features import cached_features, load_xception
from ferkit.ga import GAConfig, compare_on_test, run_ga
from ferkit.report import plot_ga_progress

D = GAConfig  # the GA's defaults, defined once in the package
XCEPTION_FEATURES = 2048


def parse_args(argv=None):
    p = cli.parser(__doc__)
    cli.add_common(p, "data")
    p.add_argument("--weights", default="imagenet", help="'imagenet' (download) or a local weights file")
    p.add_argument(
        "--size",
        type=int,
        default=139,
        help="Xception input size in pixels (>= 71; 139 gave the best validation accuracy, see README)",
    )
    p.add_argument("--train-limit", type=int, default=6000, help="stratified training subset (0 = all)")
    p.add_argument("--test-limit", type=int, default=0, help="stratified test subset (0 = all)")
    p.add_argument("--population", type=int, default=D.population)
    p.add_argument("--generations", type=int, default=D.generations)
    p.add_argument("--crossover", type=float, default=D.crossover)
    p.add_argument("--mutation", type=float, default=D.mutation)
    p.add_argument("--bit-flip", type=float, default=D.bit_flip)
    p.add_argument("--init-rate", type=float, default=D.init_rate)
    p.add_argument("--tournament", type=int, default=D.tournament)
    p.add_argument("--elite", type=int, default=D.elite)
    p.add_argument("--penalty", type=float, default=D.penalty)
    p.add_argument("--trees", type=int, default=D.trees, help="trees per fitness forest")
    p.add_argument("--final-trees", type=int, default=300, help="trees in the final and baseline forests")
    p.add_argument("--cv", type=int, default=D.cv, help="k-fold CV for fitness (0 = one held-out split)")
    p.add_argument(
        "--fitness-samples", type=int, default=D.fitness_samples, help="training rows used for fitness (0 = all)"
    )
    p.add_argument("--patience", type=int, default=D.patience)
    p.add_argument("--jobs", type=int, default=D.jobs, help="processes fitting forests (default: all cores)")
    p.add_argument("--seed", type=int, default=D.seed)
    cli.add_common(p, "cache_dir", "models_dir", "plots_dir")
    args = p.parse_args(argv)
    cli.check(p, lambda: ga_config(args).validate(XCEPTION_FEATURES))
    return args


def ga_config(args) -> GAConfig:
    names = {f.name for f in dataclasses.fields(GAConfig)}
    return GAConfig(**{k: v for k, v in vars(args).items() if k in names})


def run(args) -> dict:
    config = ga_config(args)
    started = time.time()
    data = load_dataset(args.data, cache_dir=args.cache_dir)
    train, test = data.train, data.test
    if args.train_limit:
        idx = stratified_subset(train.y, args.train_limit, seed=args.seed)
        train = Split(train.x[idx], train.y[idx])
    if args.test_limit:
        idx = stratified_subset(test.y, args.test_limit, seed=args.seed)
        test = Split(test.x[idx], test.y[idx])
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
    plot = plot_ga_progress(ga.log, args.plots_dir / "ga_progress.png")
    report = {
        "table": comparison["rows"],
        "selected_features": np.flatnonzero(ga.mask).tolist(),
        "ga": {
            "fitness": ga.fitness,
            "fitness_accuracy": ga.accuracy,
            "forests_fitted": ga.evaluations,
            "cache_hits": ga.cache_hits,
            "seconds": round(ga.seconds, 1),
            "log": ga.log,
        },
        "config": vars(config),
        "xception_size": args.size,
        "weights": args.weights,
        "train_images": len(train),
        "test_images": len(test),
        "extraction_seconds": round(extract_seconds, 1),
        "total_seconds": round(time.time() - started, 1),
    }
    (args.models_dir / "ga_report.json").write_text(json.dumps(report, indent=1))

    print(f"\n{'method':<24}{'features':>9}{'test accuracy':>15}")
    for name, row in comparison["rows"].items():
        print(f"{name:<24}{row['features']:>9}{row['test_accuracy']:>15.4f}")
    print(
        f"\nGA: {ga.evaluations} forests fitted, {ga.cache_hits} cache hits, {ga.seconds:.0f} s; "
        f"total {report['total_seconds']:.0f} s"
    )
    print(
        f"saved {args.models_dir / 'ga_mask.npy'}, {args.models_dir / 'ga_forest.joblib'}, "
        f"{args.models_dir / 'ga_report.json'}, {plot}"
    )
    return report


def main(argv=None) -> dict:
    return cli.run_main(run, parse_args(argv))


if __name__ == "__main__":
    main()
