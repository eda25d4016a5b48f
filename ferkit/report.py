"""Results people read or look at: accuracy, per-class precision / recall / F1 and the confusion
matrix as plain JSON types, the printed report, and the plots (confusion matrix, training
curves, GA progress)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .atomic import replacing
from .faces import CLASS_NAMES


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    """Save a figure atomically (a reader never sees half a PNG) and close it."""
    path = Path(path)
    try:
        with replacing(path, path.suffix or ".png") as tmp:
            fig.savefig(tmp, dpi=120, format=(path.suffix or ".png").lstrip("."))
    finally:
        _pyplot().close(fig)
    return path


def classification_summary(y_true: np.ndarray, y_pred: np.ndarray, class_names=CLASS_NAMES) -> dict:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix, as plain JSON types.

    NumPy only (scikit-learn's definitions, zero where a class is never predicted or never
    present), so evaluate.py reports on the light runtime, which has no scikit-learn."""
    n = len(class_names)
    y_true, y_pred = np.asarray(y_true, np.int64), np.asarray(y_pred, np.int64)
    known = (y_true >= 0) & (y_true < n) & (y_pred >= 0) & (y_pred < n)  # others: in no row or column
    matrix = np.bincount(y_true[known] * n + y_pred[known], minlength=n * n).reshape(n, n)
    hits, support, predicted = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)

    def ratio(top, bottom):
        return np.divide(top, bottom, out=np.zeros(n), where=bottom > 0)

    precision, recall, f1 = ratio(hits, predicted), ratio(hits, support), ratio(2 * hits, support + predicted)
    # The macro average runs over the classes in the labels or the predictions (scikit-learn's
    # default): a dataset of three expressions is not marked down for the four it does not hold.
    seen = (support + predicted) > 0
    return {
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
        "macro_f1": float(np.mean(f1[seen])) if seen.any() else 0.0,
        "macro_f1_classes": [name for name, there in zip(class_names, seen) if there],
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(class_names, precision, recall, f1, support)
        },
        "confusion_matrix": matrix.tolist(),
    }


def format_report(summary: dict) -> str:
    lines = [f"{'class':>10} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}"]
    for name, row in summary["per_class"].items():
        lines.append(f"{name:>10} {row['precision']:9.3f} {row['recall']:7.3f} {row['f1']:6.3f} {row['support']:8d}")
    over = summary.get("macro_f1_classes", summary["per_class"])
    note = "" if len(over) == len(summary["per_class"]) else f" (over the {len(over)} classes seen: {', '.join(over)})"
    lines.append(f"{'accuracy':>10} {summary['accuracy']:24.4f}   macro F1 {summary['macro_f1']:.4f}{note}")
    return "\n".join(lines)


def plot_confusion(matrix, class_names, path: str | os.PathLike, title: str) -> Path:
    """Row-normalised confusion matrix with counts, saved as PNG."""
    plt = _pyplot()
    matrix = np.asarray(matrix)
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            ax.text(
                j,
                i,
                f"{rates[i, j]:.2f}\n({matrix[i, j]})",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if rates[i, j] > 0.5 else "black",
            )
    fig.colorbar(im, ax=ax, label="fraction of true class")
    fig.tight_layout()
    return _save(fig, path)


def plot_history(history: dict, key: str, path: str | os.PathLike, title: str) -> Path:
    """A training curve (train and validation) of one Keras history key, by epoch."""
    plt = _pyplot()
    epochs = np.arange(1, len(history[key]) + 1)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(epochs, history[key], "o-", label="train")
    if f"val_{key}" in history:
        ax.plot(epochs, history[f"val_{key}"], "s-", label="validation (PublicTest)")
    ax.set_xlabel("epoch")
    ax.set_ylabel(key)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    seconds = history.get("seconds", [])
    if len(seconds) == len(epochs) > 1:  # the same curve against the hours of training, on top
        hours = np.cumsum(seconds) / 3600
        top = ax.secondary_xaxis(
            "top", functions=(lambda e: np.interp(e, epochs, hours), lambda h: np.interp(h, hours, epochs))
        )
        top.set_xlabel("hours of training")
    fig.tight_layout()
    return _save(fig, path)


def plot_ga_progress(log: list, path: str | os.PathLike) -> Path:
    """Best and mean out-of-bag accuracy and the subset sizes of a GA run, by generation."""
    import matplotlib.ticker

    plt = _pyplot()
    gens = [r["generation"] for r in log]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    top.plot(gens, [r["best_accuracy"] for r in log], "o-", label="best on the front")
    top.plot(gens, [r["mean_accuracy"] for r in log], "s-", label="population mean")
    top.set_ylabel("out-of-bag accuracy (training features)")
    top.legend()
    top.grid(alpha=0.3)
    bottom.plot(gens, [r["best_features"] for r in log], "o-", label="features in the most accurate subset")
    bottom.plot(gens, [r["mean_features"] for r in log], "s-", label="mean features in population")
    bottom.set_xlabel("generation")
    bottom.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    bottom.set_ylabel("selected features")
    bottom.legend()
    bottom.grid(alpha=0.3)
    fig.suptitle("Genetic feature selection, seed 0")
    fig.tight_layout()
    return _save(fig, path)


def plot_ga_selection(table: dict, kbest_curve: dict, runs: list, path: str | os.PathLike) -> Path:
    """Test accuracy against the number of features: SelectKBest at several sizes and all features
    (mean and spread over seeds), each seed's front candidates, and the subsets chosen on validation.
    ``runs`` holds (seed, candidate rows, chosen row) per seed."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(11, 5))
    ks = sorted(kbest_curve)
    means = np.array([kbest_curve[k]["mean"] for k in ks])
    stds = np.array([kbest_curve[k]["std"] for k in ks])
    ax.errorbar(ks, means, yerr=stds, fmt="s-", color="tab:blue", capsize=3, label="SelectKBest (ANOVA F), mean +- sd")
    full = table["all features"]
    ax.axhline(full["test_accuracy"], color="tab:gray", ls="--", label=f"all {full['features']} features, mean")
    ax.axhspan(
        full["test_accuracy"] - full["test_accuracy_std"],
        full["test_accuracy"] + full["test_accuracy_std"],
        color="tab:gray",
        alpha=0.15,
    )
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"][1:]
    for (seed, candidates, chosen), colour in zip(runs, colours * 4):
        ax.scatter(
            [c["features"] for c in candidates],
            [c["test_accuracy"] for c in candidates],
            s=18,
            color=colour,
            alpha=0.6,
            label=f"GA candidates (best out-of-bag), seed {seed}",
        )
        ax.scatter(
            chosen["features"], chosen["test_accuracy"], s=160, marker="*", color=colour, edgecolor="black", zorder=5
        )
    ga = table["GA-selected"]
    ax.set_xscale("log", base=2)
    ax.set_xlabel("number of features (log scale)")
    ax.set_ylabel("test-split accuracy (random forest)")  # PrivateTest for FER2013; any data's own test split
    ax.set_title(
        f"GA subsets (stars: chosen on validation) {ga['test_accuracy']:.3f} +- {ga['test_accuracy_std']:.3f} "
        f"vs all features {full['test_accuracy']:.3f}",
        fontsize=10,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the axes: it hides no point
    fig.tight_layout()
    return _save(fig, path)


def plot_timeline(seconds, probabilities, class_names, path: str | os.PathLike, title: str) -> Path:
    """The seven probabilities of one tracked face over time, as stacked areas (seconds on x)."""
    from .draw import COLOURS

    plt = _pyplot()
    probabilities = np.asarray(probabilities)
    fig, ax = plt.subplots(figsize=(9, 3.6))
    colours = [tuple(c / 255 for c in COLOURS.get(name, (0, 200, 0))[::-1]) for name in class_names]
    ax.stackplot(seconds, probabilities.T, labels=class_names, colors=colours, alpha=0.9)
    ax.set_xlim(seconds[0], seconds[-1] if seconds[-1] > seconds[0] else seconds[0] + 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("seconds")
    ax.set_ylabel("probability")
    shares = np.bincount(probabilities.argmax(1), minlength=len(class_names)) / len(probabilities)
    main = class_names[int(shares.argmax())]
    ax.set_title(f"{title}: {len(probabilities)} frames, mostly {main} ({shares.max():.0%} of the time)")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_reliability(curves: dict, path: str | os.PathLike, title: str) -> Path:
    """Reliability diagrams side by side: per confidence bin, accuracy against mean confidence
    (bars; the diagonal is perfect calibration). ``curves`` maps a panel title to
    (rows of (confidence, accuracy, count), ECE)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(curves), figsize=(5 * len(curves), 4.6), sharey=True)
    axes = np.atleast_1d(axes)
    for ax, (name, (rows, ece)) in zip(axes, curves.items()):
        bins = len(rows)
        filled = [(i, c, a) for i, (c, a, n) in enumerate(rows) if n]  # empty bins are left blank
        centres = np.array([(i + 0.5) / bins for i, _, _ in filled])
        confidence = np.array([c for _, c, _ in filled])
        accuracy = np.array([a for _, _, a in filled])
        ax.bar(centres, accuracy, width=1 / bins, edgecolor="black", color="tab:blue", alpha=0.8, label="accuracy")
        ax.bar(
            centres,
            confidence - accuracy,
            bottom=accuracy,
            width=1 / bins,
            color="tab:red",
            alpha=0.3,
            edgecolor="tab:red",
            label="gap to confidence",
        )
        ax.plot([0, 1], [0, 1], "k--", lw=1)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("confidence (probability of the predicted class)")
        ax.set_title(f"{name}: ECE {ece:.3f}")
        ax.legend(loc="upper left", fontsize=8)
    axes[0].set_ylabel("accuracy")
    fig.suptitle(title)
    fig.tight_layout()
    return _save(fig, path)


def plot_time_to_accuracy(runs: dict, target: float, path: str | os.PathLike, title: str) -> Path:
    """Validation accuracy against wall-clock minutes, one line per run (``runs[label] =
    (minutes, accuracies, test_accuracy or None, total_minutes)``), the target as a dashed line
    and each run's one test figure as a star at the minute the whole run ended."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, (minutes, accuracies, test_accuracy, total_minutes) in runs.items():
        (line,) = ax.plot(minutes, accuracies, marker=".", label=f"{label}: validation (PublicTest)")
        if test_accuracy is not None:
            ax.plot([total_minutes], [test_accuracy], "*", ms=13, color=line.get_color(), label=f"{label}: PrivateTest")
    ax.axhline(target, ls="--", color="grey", lw=1, label=f"target {target:.2f}")
    ax.set_xlabel("wall-clock minutes from start (data decoding included)")
    ax.set_ylabel("accuracy")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    return _save(fig, path)


def plot_runs(runs: dict, lines: dict, path: str | os.PathLike, title: str, by: str = "hours") -> Path:
    """Validation accuracy of several training runs on one chart, one line per run
    (``runs[label] = history`` with ``val_accuracy`` and, for ``by="hours"``, ``seconds`` per epoch),
    against the hours of training (runs of different speeds compare fairly) or the epoch; ``lines``
    (label -> accuracy) drawn across as references, e.g. the shipped model's figure."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.2))
    for label, history in runs.items():
        accuracy = history["val_accuracy"]
        x = np.cumsum(history["seconds"]) / 3600 if by == "hours" else np.arange(1, len(accuracy) + 1)
        ax.plot(x, accuracy, lw=1.4, label=label)
    styles = iter(["--", ":", "-."] * len(lines))
    for label, value in lines.items():
        ax.axhline(value, color="k", ls=next(styles), lw=1, label=f"{label} ({value:.4f})")
    highest = max([max(h["val_accuracy"]) for h in runs.values()] + list(lines.values()))
    ax.set_ylim(top=min(1.0, highest + 0.02))  # room above the reference lines
    ax.set_xlabel("hours of training" if by == "hours" else "epoch")
    ax.set_ylabel("validation (PublicTest) accuracy, one pass")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)
