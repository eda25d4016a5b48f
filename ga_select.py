"""Xception features + a DEAP genetic algorithm that picks a feature subset for a random forest.

    python ga_select.py --data data/fer2013 --train-limit 6000 --models-dir runs/ga --plots-dir runs/ga
    python ga_select.py --data data/fer2013 --weights PATH/xception_notop.weights.h5 --overwrite  # offline

The first downloads the ImageNet weights once and writes into runs/ga; the second replaces the
shipped models/ga_report.json and plots/ga_*.png (refused without ``--overwrite``).

1. ImageNet Xception (no top, global average pooling) turns each face into 2,048 features;
   features are cached on disk with the settings that produced them.
2. For each of ``--seeds`` seeds, a GA evolves feature subsets of at most ``--max-features``
   towards the best out-of-bag accuracy of a random forest on the training features; the
   ``--candidates`` best subsets are scored on the validation split (PublicTest) and the best
   one there is chosen.
3. The test split is used once per seed: forests (``--final-trees``) on the chosen subset, on
   all 2,048 features and on SelectKBest (ANOVA F) at the same size, with mean and spread over
   the seeds; a plot of test accuracy against the number of features tells the story.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import re
import time
from pathlib import Path

import numpy as np

from ferkit import cli
from ferkit.atomic import atomic_write_text, replacing
from ferkit.data import Split, load_dataset
from ferkit.errors import FeatureError, Interrupted
from ferkit.features import XCEPTION_MIN_SIZE, cached_features, check_weights_path, load_xception
from ferkit.ga import GAConfig, forest, rank_features, run_ga
from ferkit.gacompare import choose_on_validation, compare_on_test, jaccard, kbest_mask
from ferkit.interrupts import interrupts_held
from ferkit.report import plot_ga_progress, plot_ga_selection
from ferkit.splits import stratified_subset

D = GAConfig  # the GA's defaults, defined once in the package
XCEPTION_FEATURES = 2048
CURVE_K = (32, 64, 128, 256, 512, 1024)
# What a run writes (the first three to --models-dir, the plots to --plots-dir); one clone ships
# models/ga_report.json and both plots, so a run refuses to replace them without --overwrite.
MODEL_OUTPUTS = ("ga_mask.npy", "ga_forest.joblib", "ga_report.json")
PLOT_OUTPUTS = ("ga_progress.png", "ga_selection.png")
INTERRUPTED = "ga_interrupted.json"  # what an interrupted run had finished, in --models-dir
# Each seed's search state after every generation (ferkit.gastate): a stopped run's same command
# goes on from it; removed when the run completes.
SEARCHES = Path("checkpoints") / "ga"


def search_state(models_dir: Path, seed: int) -> Path:
    return models_dir / SEARCHES / f"seed{seed}.npz"


def remove_search_states(models_dir: Path, seeds: int) -> None:
    """A complete run's search states, by name (nothing else in the folders), then the folders
    where that leaves them empty."""
    for seed in range(seeds):
        search_state(models_dir, seed).unlink(missing_ok=True)
    for folder in (models_dir / SEARCHES, models_dir / SEARCHES.parent):
        with contextlib.suppress(OSError):  # not empty (a training run's checkpoints, say) or not there
            folder.rmdir()


# A Dask scheduler's address: [protocol://]host:port, the host a name, an IPv4 or a bracketed IPv6.
SCHEDULER_ADDRESS = re.compile(r"^([a-z]+://)?(\[[0-9a-fA-F:.]+\]|[^\s:/\[\]]+):\d{1,5}$")


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
    p.add_argument("--val-limit", type=int, default=0, help="stratified validation subset (0 = all)")
    p.add_argument("--test-limit", type=int, default=0, help="stratified test subset (0 = all)")
    p.add_argument(
        "--seeds", type=int, default=3, help="independent GA runs (seeds 0..N-1), reported as mean and spread"
    )
    p.add_argument("--population", type=int, default=D.population, help="subsets per generation")
    p.add_argument("--generations", type=int, default=D.generations, help="most generations per seed")
    p.add_argument(
        "--crossover", type=cli.finite_float, default=D.crossover, help="chance a pair of parents is crossed"
    )
    p.add_argument("--mutation", type=cli.finite_float, default=D.mutation, help="chance a child is mutated")
    p.add_argument("--max-features", type=int, default=D.max_features, help="largest subset the GA may choose")
    p.add_argument("--min-features", type=int, default=D.min_features, help="smallest subset the GA may choose")
    p.add_argument(
        "--init-ranked", type=cli.finite_float, default=D.init_ranked, help="share of first masks from rankings"
    )
    p.add_argument("--trees", type=int, default=D.trees, help="trees per fitness forest")
    p.add_argument(
        "--max-samples", type=cli.finite_float, default=D.max_samples, help="bootstrap share per fitness tree"
    )
    p.add_argument("--min-samples-leaf", type=int, default=D.min_samples_leaf, help="leaf size of the fitness trees")
    p.add_argument(
        "--fitness-samples", type=int, default=D.fitness_samples, help="training rows used for fitness (0 = all)"
    )
    p.add_argument("--candidates", type=int, default=D.candidates, help="front members scored on validation")
    p.add_argument("--final-trees", type=int, default=300, help="trees in the validation, final and baseline forests")
    p.add_argument("--patience", type=int, default=D.patience, help="stop after N generations without a better subset")
    p.add_argument("--jobs", type=int, default=D.jobs, help="processes fitting forests (default all cores)")
    p.add_argument(
        "--scheduler",
        default=D.scheduler,
        metavar="ADDRESS",
        help="a dask.distributed scheduler (e.g. tcp://10.0.0.5:8786): GA fitness runs on its workers, the "
        "features sent to each worker once; --jobs still sets the local processes for the other forests",
    )
    cli.add_common(p, "cache_dir", "models_dir", "plots_dir")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an earlier run's outputs (or the shipped models/ga_report.json and plots/ga_*.png)",
    )
    args = p.parse_args(argv)
    for name in ("seeds", "final_trees"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("train_limit", "val_limit", "test_limit"):
        if getattr(args, name) < 0:
            p.error(f"--{name.replace('_', '-')} must be at least 0 (0 = all)")
    if not XCEPTION_MIN_SIZE <= args.size <= 299:
        p.error(f"--size must be between {XCEPTION_MIN_SIZE} (Xception's smallest input) and 299 (its native size)")
    if args.scheduler and not SCHEDULER_ADDRESS.match(args.scheduler):
        p.error(
            f"--scheduler {args.scheduler!r} is not a scheduler's address; give HOST:PORT or tcp://HOST:PORT "
            "(what 'dask scheduler' prints, e.g. tcp://10.0.0.5:8786)"
        )
    cli.check(p, lambda: ga_config(args, seed=0).validate(XCEPTION_FEATURES))
    try:  # before the data is decoded and Keras loaded
        check_weights_path(args.weights)
    except FeatureError as exc:
        p.error(str(exc))
    cli.check_output_dir(p, "--models-dir", args.models_dir)
    cli.check_output_dir(p, "--plots-dir", args.plots_dir)
    cli.refuse_inside_data(
        p,
        args.data,
        {"--models-dir": args.models_dir, "--plots-dir": args.plots_dir},
        {"--models-dir": "files", "--plots-dir": "pictures"},
    )
    # A stopped run's record goes when the same command goes on from its saved searches.
    resuming = any(search_state(args.models_dir, seed).exists() for seed in range(args.seeds))
    cli.refuse_existing(
        p,
        [args.models_dir / n for n in (*MODEL_OUTPUTS, *([] if resuming else [INTERRUPTED]))]
        + [args.plots_dir / n for n in PLOT_OUTPUTS],
        args.overwrite,
        "Give other --models-dir and --plots-dir",
    )
    return args


def ga_config(args, seed: int) -> GAConfig:
    names = {f.name for f in dataclasses.fields(GAConfig)}
    return GAConfig(**{k: v for k, v in vars(args).items() if k in names}, seed=seed)


def mean_std(values) -> dict:
    return {"mean": float(np.mean(values)), "std": float(np.std(values, ddof=1)) if len(values) > 1 else 0.0}


def one_seed(seed, args, x_train, y_train, x_val, y_val, x_test, y_test) -> dict:
    """One GA run, its choice on validation, and the test comparison for this seed."""
    config = ga_config(args, seed)
    print(f"\n== seed {seed} ==", flush=True)
    rankings = rank_features(x_train, y_train, seed=seed, jobs=config.jobs)
    ga = run_ga(x_train, y_train, config, rankings=rankings, checkpoint=search_state(args.models_dir, seed))
    try:
        return score_seed(seed, args, config, ga, rankings, x_train, y_train, x_val, y_val, x_test, y_test)
    except KeyboardInterrupt:  # the search is done: its best subset is kept with what was finished
        stopped = Interrupted(f"interrupted after seed {seed}'s search, while its subset was scored")
        stopped.partial = {"mask": ga.mask, "oob_accuracy": ga.accuracy, "generations": len(ga.log), "finished": True}
        raise stopped from None


def score_seed(seed, args, config, ga, rankings, x_train, y_train, x_val, y_val, x_test, y_test) -> dict:
    """A finished search's choice on validation and its test comparison (minutes at full size)."""
    n = min(config.candidates, len(ga.ranked))
    print(
        f"seed {seed}: scoring the search's {n} best subsets on validation ({args.final_trees} trees each)", flush=True
    )
    mask, candidates = choose_on_validation(ga.ranked, x_train, y_train, x_val, y_val, config, trees=args.final_trees)
    print(
        f"seed {seed}: test forests on the chosen {int(mask.sum())} features, all {x_train.shape[1]}, SelectKBest "
        "and the forest-importance top-k",
        flush=True,
    )
    chosen = next(row for row in candidates if row["mask"] is mask)  # its forest has the final settings
    comparison = compare_on_test(
        x_train, y_train, x_test, y_test, mask, config, args.final_trees, seed=seed, ga_model=chosen["model"]
    )
    k = int(mask.sum())
    top_k = np.zeros_like(mask)
    top_k[rankings["importance"][:k]] = True
    importance_model = forest(config, trees=args.final_trees, jobs=config.jobs, seed=seed).fit(
        x_train[:, top_k], y_train
    )
    importance_accuracy = float(np.mean(importance_model.predict(x_test[:, top_k]) == y_test))
    for row in candidates:  # for the plot only: the choice above was made on validation
        row["test_accuracy"] = float(np.mean(row.pop("model").predict(x_test[:, row["mask"]]) == y_test))
    chosen_val = chosen["val_accuracy"]
    test = {name: row["test_accuracy"] for name, row in comparison["rows"].items()}
    print(
        f"seed {seed}: chose {k} features on validation ({chosen_val:.4f}); test: GA {test['GA-selected']:.4f}, "
        f"all {test['all features']:.4f}, SelectKBest {test['SelectKBest (ANOVA F)']:.4f}",
        flush=True,
    )
    return {
        "seed": seed,
        "mask": mask,
        "val_accuracy": chosen_val,
        "rows": comparison["rows"],
        "importance_top_k_accuracy": importance_accuracy,
        "forest": comparison["ga_forest"],
        "candidates": [{k: v for k, v in row.items() if k != "mask"} for row in candidates],
        "ga": ga,
    }


def save_interrupted(args, runs, stopped) -> Path:
    """What an interrupted run had finished: each completed seed's test comparison, and the
    best subset so far of the seed that was running."""
    partial = getattr(stopped, "partial", None)
    done = {
        "completed_seeds": [
            {
                "seed": r["seed"],
                "features": int(r["mask"].sum()),
                "val_accuracy": r["val_accuracy"],
                "rows": r["rows"],
                "selected_features": np.flatnonzero(r["mask"]).tolist(),
            }
            for r in runs
        ],
        "running_seed": len(runs) if len(runs) < args.seeds else None,
        "running_seed_best_so_far": None
        if partial is None
        else {
            "features": int(partial["mask"].sum()),
            "oob_accuracy": partial["oob_accuracy"],
            "generations": partial["generations"],
            "search_finished": bool(partial.get("finished", False)),
            "selected_features": np.flatnonzero(partial["mask"]).tolist(),
        },
    }
    path = args.models_dir / INTERRUPTED
    atomic_write_text(path, json.dumps(done, indent=1))
    return path


def kbest_curve(args, x_train, y_train, x_test, y_test) -> dict:
    """Test accuracy of SelectKBest at several sizes, one forest per seed (for the plot)."""
    curve = {}
    for i, k in enumerate(CURVE_K, 1):
        print(f"SelectKBest curve: {k} features ({i} of {len(CURVE_K)}, {args.seeds} forests)", flush=True)
        columns = kbest_mask(x_train, y_train, k)
        scores = []
        for seed in range(args.seeds):
            model = forest(GAConfig(), trees=args.final_trees, jobs=args.jobs, seed=seed).fit(
                x_train[:, columns], y_train
            )
            scores.append(float(np.mean(model.predict(x_test[:, columns]) == y_test)))
        curve[k] = mean_std(scores)
    return curve


def run(args) -> dict:
    cli.check_inputs(args.data)
    if args.scheduler:  # said now, not after minutes of features
        from ferkit.cluster import check_scheduler

        check_scheduler(args.scheduler)
    cli.import_keras_quietly("computing the Xception features")
    started = time.time()
    args.models_dir.mkdir(parents=True, exist_ok=True)
    data = load_dataset(args.data, cache_dir=args.cache_dir)
    train, val, test = data.train, data.val, data.test
    limited = []
    for name, split, limit in (
        ("train", train, args.train_limit),
        ("val", val, args.val_limit),
        ("test", test, args.test_limit),
    ):
        if limit and limit >= len(split):  # said, as train_cnn.py says it of --limit
            print(f"note: --{name}-limit {limit} is not below the {len(split)} faces of that split; all are used")
        elif limit:
            idx = stratified_subset(split.y, limit, seed=0, flag=f"{name}-limit")
            split = Split(split.x[idx], split.y[idx])
        limited.append(split)
    train, val, test = limited
    model = load_xception(args.weights, args.size)
    extract_started = time.time()
    x_train = cached_features(train.x, train.y, args.weights, args.size, args.cache_dir, model, "train features")
    x_val = cached_features(val.x, val.y, args.weights, args.size, args.cache_dir, model, "validation features")
    x_test = cached_features(test.x, test.y, args.weights, args.size, args.cache_dir, model, "test features")
    extract_seconds = time.time() - extract_started
    print(f"features: train {x_train.shape}, validation {x_val.shape}, test {x_test.shape} ({extract_seconds:.0f} s)")

    runs = []
    try:
        for seed in range(args.seeds):
            runs.append(one_seed(seed, args, x_train, train.y, x_val, val.y, x_test, test.y))
        curve = kbest_curve(args, x_train, train.y, x_test, test.y)
    except (Interrupted, KeyboardInterrupt) as stopped:  # Ctrl-C or SIGTERM, in the GA or between its steps
        if isinstance(stopped, Interrupted):
            text = str(stopped)
        elif len(runs) == args.seeds:
            text = "interrupted in the SelectKBest curve, after every seed"
        else:
            text = f"interrupted during seed {len(runs)}"
        saved = save_interrupted(args, runs, stopped)
        raise Interrupted(
            f"{text}; what was done is in {saved}. Run the same command again to go on: each seed's search goes on "
            f"from its last generation (saved in {args.models_dir / SEARCHES}), a finished one is scored again"
        ) from None

    table = {}
    for name in ("GA-selected", "all features", "SelectKBest (ANOVA F)"):
        scores = [r["rows"][name]["test_accuracy"] for r in runs]
        spread = mean_std(scores)
        table[name] = {
            "features": int(round(np.mean([r["rows"][name]["features"] for r in runs]))),
            "features_per_seed": [r["rows"][name]["features"] for r in runs],
            "test_accuracy": spread["mean"],
            "test_accuracy_std": spread["std"],
            "test_accuracy_per_seed": scores,
        }
    importance = mean_std([r["importance_top_k_accuracy"] for r in runs])
    overlaps = [jaccard(a["mask"], b["mask"]) for a, b in itertools.combinations(runs, 2)]
    chosen = max(runs, key=lambda r: r["val_accuracy"])  # the subset to ship, chosen on validation

    import joblib

    # The outputs below are written as one set, whole. A stop that comes meanwhile finds the run
    # complete: it is said, not turned into "interrupted" after every file was written.
    with interrupts_held(deliver=False) as stopped:
        with replacing(args.models_dir / MODEL_OUTPUTS[0], ".npy") as tmp:
            np.save(tmp, chosen["mask"])
        with replacing(args.models_dir / MODEL_OUTPUTS[1], ".joblib") as tmp:
            joblib.dump(chosen["forest"], tmp, compress=3)
        progress_plot = plot_ga_progress(runs[0]["ga"].log, args.plots_dir / PLOT_OUTPUTS[0])
        selection_plot = plot_ga_selection(
            table,
            curve,
            [(r["seed"], r["candidates"], r["rows"]["GA-selected"]) for r in runs],
            args.plots_dir / PLOT_OUTPUTS[1],
        )
        report = {
            "table": table,
            "seeds": args.seeds,
            "importance_top_k": {
                "note": "forest-importance ranking (the GA's own seed) at the GA's size, same forests",
                "test_accuracy": importance["mean"],
                "test_accuracy_std": importance["std"],
            },
            "kbest_curve": {str(k): v for k, v in curve.items()},
            "jaccard_between_seeds": {"pairs": overlaps, "mean": float(np.mean(overlaps)) if overlaps else None},
            "shipped_mask_seed": chosen["seed"],
            "selected_features": np.flatnonzero(chosen["mask"]).tolist(),
            "per_seed": [
                {
                    "seed": r["seed"],
                    "features": int(r["mask"].sum()),
                    "val_accuracy": r["val_accuracy"],
                    "candidates": r["candidates"],
                    "ga": {
                        "best_oob_accuracy": r["ga"].accuracy,
                        "front": [[int(m.sum()), acc] for m, acc in r["ga"].front],
                        "forests_fitted": r["ga"].evaluations,
                        "cache_hits": r["ga"].cache_hits,
                        "seconds": round(r["ga"].seconds, 1),
                        "log": r["ga"].log,
                    },
                }
                for r in runs
            ],
            "config": {k: v for k, v in dataclasses.asdict(ga_config(args, 0)).items() if k != "seed"},
            "final_trees": args.final_trees,
            "xception_size": args.size,
            "weights": args.weights if args.weights == "imagenet" else "local file",
            "data": data.source,
            "limits": {"train": args.train_limit, "validation": args.val_limit, "test": args.test_limit},
            "train_images": len(train),
            "validation_images": len(val),
            "test_images": len(test),
            "extraction_seconds": round(extract_seconds, 1),
            "total_seconds": round(time.time() - started, 1),
        }
        atomic_write_text(args.models_dir / MODEL_OUTPUTS[2], json.dumps(report, indent=1))
        stale = args.models_dir / INTERRUPTED
        if stale.exists():  # an earlier, interrupted run's (allowed to go by --overwrite or gone on from)
            stale.unlink()
        remove_search_states(args.models_dir, args.seeds)

    if stopped:
        print("note: the stop came while the outputs were written; they were finished first, and the run is complete")
    over = f"{args.seeds} seeds" if args.seeds > 1 else "1 seed, no spread"
    # The header's last column is as wide as it needs (one seed's is 50 characters, wider than the rows).
    print(f"\n{'method':<24}{'features':>9}  {'test accuracy (mean +- std over ' + over + ')':>46}")
    for name, row in table.items():
        print(f"{name:<24}{row['features']:>9}{row['test_accuracy']:>37.4f} +- {row['test_accuracy_std']:.4f}")
    k = table["GA-selected"]["features"]
    print(f"{'forest-importance top-k':<24}{k:>9}{importance['mean']:>37.4f} +- {importance['std']:.4f}")
    if overlaps:
        print(f"\nchosen subsets across seeds: mean Jaccard overlap {np.mean(overlaps):.2f}")
    print(f"total {report['total_seconds']:.0f} s (features {extract_seconds:.0f} s)")
    print(
        "saved "
        + ", ".join(str(args.models_dir / name) for name in MODEL_OUTPUTS)
        + f", {progress_plot}, {selection_plot}"
    )
    return report


def main(argv=None) -> dict:
    return cli.run_main(run, parse_args(argv))


if __name__ == "__main__":
    main()
