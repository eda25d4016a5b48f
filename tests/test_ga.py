"""The genetic feature selection on synthetic features, its cache, determinism and errors,
and Xception extraction on a few real faces with the shared weights file."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FER2013, XCEPTION_WEIGHTS

from ferkit import features, ga, gacompare
from ferkit.data import load_dataset
from ferkit.errors import FeatureError, ParameterError

INFORMATIVE = [3, 11, 17, 29, 34]


def synthetic_features(n: int = 500, n_features: int = 40, seed: int = 0):
    """Five weakly informative columns (label + noise); the rest is pure noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = rng.normal(size=(n, n_features)).astype(np.float32)
    x[:, [c for c in INFORMATIVE if c < n_features]] += y[:, None] * 1.2
    return x, y


def config(**overrides) -> ga.GAConfig:
    settings = dict(
        population=20,
        generations=15,
        min_features=2,
        max_features=12,
        trees=25,
        max_samples=0.5,
        fitness_samples=0,
        patience=15,
        jobs=1,
        seed=1,
    )
    return ga.GAConfig(**{**settings, **overrides})


def test_ga_finds_the_informative_columns():
    x, y = synthetic_features()
    result = ga.run_ga(x, y, config(), progress=False)
    chosen = set(np.flatnonzero(result.mask))
    assert len(chosen & set(INFORMATIVE)) >= 4, chosen
    assert 2 <= len(chosen) <= 12
    assert result.log[-1]["best_accuracy"] > result.log[0]["best_accuracy"]
    assert result.accuracy == result.ranked[0][1] == max(acc for _, acc in result.ranked)


def test_rankings_seed_the_first_population_with_top_features():
    x, y = synthetic_features()
    rankings = ga.rank_features(x, y, seed=0)
    for order in rankings.values():
        assert set(order[:5]) == set(INFORMATIVE)
    masks = ga.initial_masks(x.shape[1], config(init_ranked=0.5), rankings)
    assert len(masks) == 20
    ranked = masks[:10]
    assert all(set(INFORMATIVE) & set(np.flatnonzero(m)) for m in ranked)
    assert all(2 <= m.sum() <= 12 for m in masks)


def test_mutation_swaps_or_resizes_and_repair_keeps_the_size_in_range():
    import random

    random.seed(0)
    cfg = config()
    for _ in range(200):
        individual = [0] * 40
        for i in random.sample(range(40), 8):
            individual[i] = 1
        (mutated,) = ga.mutate_subset(individual, cfg)
        ga.repair(mutated, cfg)
        assert 2 <= sum(mutated) <= 12
    too_big = [1] * 40
    ga.repair(too_big, cfg)
    assert sum(too_big) == 12


def test_front_keeps_only_subsets_no_smaller_one_beats():
    masks = [np.eye(1, 10, 0, dtype=bool)[0] | (np.arange(10) < k) for k in (1, 2, 3, 4)]
    front = ga.pareto_front(list(zip(masks, [0.5, 0.4, 0.6, 0.6])))
    assert [(int(m.sum()), acc) for m, acc in front] == [(1, 0.5), (3, 0.6)]
    assert gacompare.jaccard(masks[1], masks[3]) == 0.5


def test_identical_masks_are_not_refitted(monkeypatch):
    x, y = synthetic_features(200, 12)
    fits = []
    original = ga.mask_accuracy
    monkeypatch.setattr(ga, "mask_accuracy", lambda key: fits.append(key) or original(key))
    result = ga.run_ga(x, y, config(population=12, generations=6, max_features=4), progress=False)
    assert len(fits) == len(set(fits)) == result.evaluations
    assert result.cache_hits > 0


def test_same_seed_same_result_also_in_parallel():
    x, y = synthetic_features(300, 20)
    first = ga.run_ga(x, y, config(generations=4), progress=False)
    second = ga.run_ga(x, y, config(generations=4, jobs=2), progress=False)
    np.testing.assert_array_equal(first.mask, second.mask)
    assert first.fitness == second.fitness


def test_stops_early_without_improvement():
    x, y = synthetic_features(240, 10)
    result = ga.run_ga(x, y, config(generations=30, patience=2, max_features=5), progress=False)
    assert len(result.log) < 31


def test_choice_is_made_on_validation():
    x, y = synthetic_features(600)
    good = np.isin(np.arange(40), INFORMATIVE)
    noise = np.zeros(40, bool)
    noise[[0, 1, 2, 4, 5]] = True
    mask, rows = gacompare.choose_on_validation(
        [(noise, 0.9), (good, 0.5)], x[:400], y[:400], x[400:], y[400:], config(candidates=2), trees=30
    )
    np.testing.assert_array_equal(mask, good)  # a poor out-of-bag score does not hide the better subset
    assert [row["features"] for row in rows] == [5, 5] and rows[1]["val_accuracy"] > rows[0]["val_accuracy"]


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"population": 2}, "population"),
        ({"generations": 0}, "generations"),
        ({"mutation": 1.5}, "probability"),
        ({"elite": 40}, "elite"),
        ({"max_features": 2}, "max_features"),
    ],
)
def test_nonsense_settings_are_refused(overrides, message):
    with pytest.raises(ParameterError, match=message):
        config(**overrides).validate(50)


def test_comparison_table_has_the_three_methods():
    x, y = synthetic_features(400, 40)
    mask = np.zeros(40, bool)
    mask[INFORMATIVE] = True
    table = gacompare.compare_on_test(x[:300], y[:300], x[300:], y[300:], mask, config(), trees=30)["rows"]
    assert [row["features"] for row in table.values()] == [5, 40, 5]
    assert table["GA-selected"]["test_accuracy"] > 0.6


def test_missing_weights_file_says_how_to_pass_one(tmp_path):
    with pytest.raises(FeatureError, match="path of an Xception no-top weights file"):
        features.load_xception(str(tmp_path / "none.h5"), 71)
    with pytest.raises(ParameterError, match="at least 71"):
        features.load_xception(str(tmp_path / "none.h5"), 48)


def test_mismatched_or_damaged_feature_cache_is_set_aside_and_rebuilt(tmp_path):
    faces = np.zeros((3, 48, 48), np.uint8)
    weights = tmp_path / "w.h5"
    weights.write_bytes(b"x")
    calls = []
    model = type(
        "M",
        (),
        {"output_shape": (None, 4), "predict_on_batch": lambda self, b: calls.append(len(b)) or np.ones((len(b), 4))},
    )()
    first = features.cached_features(faces, np.arange(3), str(weights), 71, tmp_path, model)
    again = features.cached_features(faces, np.arange(3), str(weights), 71, tmp_path, model)
    assert calls == [3] and first.shape == again.shape == (3, 4)
    with pytest.warns(UserWarning, match="is damaged; moved to"):
        features.cached_features(faces, np.array([2, 1, 0]), str(weights), 71, tmp_path, model)
    assert calls == [3, 3]
    (cache_file,) = tmp_path.glob("xception-*.npz")
    cache_file.write_bytes(cache_file.read_bytes()[:100])  # truncated: a BadZipFile inside numpy
    with pytest.warns(UserWarning, match=f"{cache_file.name} is damaged"):
        rebuilt = features.cached_features(faces, np.arange(3), str(weights), 71, tmp_path, model)
    assert calls == [3, 3, 3] and rebuilt.shape == (3, 4)
    assert (tmp_path / f"{cache_file.name}.damaged").exists()
    assert features.cached_features(faces, np.arange(3), str(weights), 71, tmp_path, model).shape == (3, 4)
    assert calls == [3, 3, 3]  # the rebuilt cache is used again


@pytest.mark.slow
@pytest.mark.skipif(not (XCEPTION_WEIGHTS.exists() and FER2013.exists()), reason="shared weights or FER2013 absent")
def test_xception_features_of_real_faces_are_cached(tmp_path):
    data = load_dataset(FER2013, progress=False)
    faces, labels = data.test.x[:6], data.test.y[:6]
    found = features.cached_features(faces, labels, str(XCEPTION_WEIGHTS), 71, tmp_path)
    assert found.shape == (6, 2048) and np.isfinite(found).all() and found.std() > 0
    assert len(list(tmp_path.glob("xception-*.npz"))) == 1
    again = features.cached_features(faces, labels, str(XCEPTION_WEIGHTS), 71, tmp_path, model=object())
    np.testing.assert_array_equal(found, again)  # from the cache: the dummy model is never called
