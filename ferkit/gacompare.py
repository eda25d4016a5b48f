"""After the search: choosing one of the GA's best subsets on the validation split, and comparing
it on the test split with all features and with SelectKBest at the same size (``ga_select.py``'s
steps 2 and 3). The search itself is ``ferkit.ga``."""

from __future__ import annotations

import numpy as np

from .ga import GAConfig, anova_f, forest


def choose_on_validation(ranked, x_train, y_train, x_val, y_val, config: GAConfig, trees: int = 100):
    """Score the first ``config.candidates`` subsets of ``ranked`` ((mask, out-of-bag accuracy),
    best first) on the validation split (a ``trees``-tree forest fitted on the training features)
    and return (best mask, rows), rows holding features, out-of-bag and validation accuracy, and
    the forest."""
    ranked = ranked[: config.candidates]
    rows = []
    for mask, oob in ranked:
        model = forest(config, trees=trees, jobs=config.jobs).fit(x_train[:, mask], y_train)
        val = float(np.mean(model.predict(x_val[:, mask]) == y_val))
        rows.append(
            {"mask": mask, "features": int(mask.sum()), "oob_accuracy": oob, "val_accuracy": val, "model": model}
        )
    best = max(rows, key=lambda row: (row["val_accuracy"], -row["features"]))
    return best["mask"], rows


def kbest_mask(x: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    from sklearn.feature_selection import SelectKBest

    return SelectKBest(anova_f, k=k).fit(x, y).get_support()


def compare_on_test(
    x_train,
    y_train,
    x_test,
    y_test,
    mask: np.ndarray,
    config: GAConfig,
    trees: int,
    seed: int | None = None,
    ga_model=None,
):
    """Test accuracy of forests (``trees`` trees, ``seed``) on the GA mask, on all features and on
    SelectKBest (ANOVA F) at the same number of features. ``ga_model``: the GA mask's forest when
    it is already fitted with these settings (``choose_on_validation`` fits it), so not again."""
    k = int(mask.sum())
    rows, models = {}, {}
    for name, columns in (
        ("GA-selected", mask),
        ("all features", np.ones(x_train.shape[1], bool)),
        ("SelectKBest (ANOVA F)", kbest_mask(x_train, y_train, k)),
    ):
        if name == "GA-selected" and ga_model is not None:
            model = ga_model
        else:
            model = forest(config, trees=trees, jobs=config.jobs, seed=seed).fit(x_train[:, columns], y_train)
        accuracy = float(np.mean(model.predict(x_test[:, columns]) == y_test))
        rows[name] = {"features": int(columns.sum()), "test_accuracy": accuracy}
        models[name] = model
    return {"rows": rows, "ga_forest": models["GA-selected"]}


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    """Overlap of two feature subsets: shared features over features in either."""
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0
