"""The genetic feature selection on synthetic features, its cache, determinism and errors,
and Xception extraction on a few real faces with the shared weights file."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FER2013, XCEPTION_WEIGHTS

from ferkit import features, ga, gacompare
from ferkit.data import load_dataset
from ferkit.errors import CheckpointError, FeatureError, FerWarning, Interrupted, ParameterError

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


def _same_search(a, b) -> None:
    np.testing.assert_array_equal(a.mask, b.mask)
    assert (a.accuracy, a.evaluations, a.cache_hits) == (b.accuracy, b.evaluations, b.cache_hits)
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in a.log] == [
        {k: v for k, v in r.items() if k != "seconds"} for r in b.log
    ]
    assert [(m.tolist(), acc) for m, acc in a.ranked] == [(m.tolist(), acc) for m, acc in b.ranked]


@pytest.mark.parametrize("stop_at", [2, 4])  # fitness calls: 1 is the first population, k generation k-1
def test_a_search_stopped_mid_run_goes_on_to_the_result_of_one_never_stopped(tmp_path, stop_at):
    x, y = synthetic_features(300, 20)
    settings = config(generations=5, patience=5)
    whole = ga.run_ga(x, y, settings, progress=False)
    calls = []

    def stopping_map(func, items):
        calls.append(1)
        if len(calls) == stop_at:
            raise KeyboardInterrupt  # as a Ctrl-C while forests are fitted
        return list(map(func, items))

    path = tmp_path / "ga" / "seed1.npz"
    with pytest.raises(Interrupted) as stopped:
        ga.run_ga(x, y, settings, progress=False, mapper=stopping_map, checkpoint=path)
    assert f"the same command goes on after generation {stop_at - 2}" in str(stopped.value)
    resumed = ga.run_ga(x, y, settings, progress=False, checkpoint=path)
    _same_search(resumed, whole)
    again = ga.run_ga(x, y, settings, progress=False, checkpoint=path, mapper=lambda *a: pytest.fail("refitted"))
    _same_search(again, whole)  # a finished search is read back, not run again


def test_a_saved_search_is_not_continued_with_other_settings_or_features_and_a_damaged_one_starts_over(tmp_path):
    x, y = synthetic_features(300, 20)
    path = tmp_path / "seed1.npz"
    first = ga.run_ga(x, y, config(generations=2), progress=False, checkpoint=path)
    ga.run_ga(x, y, config(generations=2, jobs=2), progress=False, checkpoint=path)  # where fitness runs: allowed
    with pytest.raises(CheckpointError, match=r"--generations 2 then, 3 now.*delete .* to start over"):
        ga.run_ga(x, y, config(generations=3), progress=False, checkpoint=path)
    with pytest.raises(CheckpointError, match=r"other features \(300x20 then, 299x20 now"):
        ga.run_ga(x[1:], y[1:], config(generations=2), progress=False, checkpoint=path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(FerWarning, match="could not be read"):
        again = ga.run_ga(x, y, config(generations=2), progress=False, checkpoint=path)
    _same_search(again, first)
    assert (tmp_path / "seed1.npz.damaged").exists()


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


# --------------------------------------------------------------------------- ga_select.py end to end


@pytest.fixture
def ga_script(tmp_path, monkeypatch):
    """ga_select.py on synthetic features in place of Xception's (no weights, seconds): returns
    (argv, models folder). The data folder exists but is never read."""
    import ga_select
    from ferkit.data import Dataset, Split

    data = tmp_path / "data"
    data.mkdir()
    splits = {}
    for name, n, seed in (("train", 240, 0), ("val", 90, 1), ("test", 90, 2)):
        x, y = synthetic_features(n, ga_select.XCEPTION_FEATURES, seed)
        splits[name] = (Split(np.zeros((n, 48, 48), np.uint8), y), x)
    dataset = Dataset(
        *(splits[s][0] for s in ("train", "val", "test")), str(data), "class_folders", "validation: drawn"
    )
    features_of = {id(split.y): x for split, x in splits.values()}
    monkeypatch.setattr(ga_select, "load_dataset", lambda *a, **k: dataset)
    monkeypatch.setattr(ga_select, "load_xception", lambda *a, **k: None)
    monkeypatch.setattr(ga_select, "cached_features", lambda x, y, *a: features_of[id(y)])
    models = tmp_path / "m"
    argv = ["--data", str(data), "--models-dir", str(models), "--plots-dir", str(tmp_path / "p"), "--train-limit", "0"]
    argv += ["--seeds", "2", "--population", "8", "--generations", "2", "--patience", "2", "--trees", "10"]
    argv += ["--final-trees", "10", "--candidates", "2", "--jobs", "1", "--max-features", "40", "--min-features", "2"]
    return argv, models


def test_every_long_step_of_the_selection_says_what_it_is_doing_and_the_report_says_what_ran(ga_script, capsys):
    import json

    import ga_select

    argv, models = ga_script
    ga_select.main(argv)
    out = capsys.readouterr().out
    for line in ("seed 1: scoring the search's 2 best subsets on validation", "seed 1: test forests on the chosen",
                 "SelectKBest curve: 1024 features (6 of 6, 2 forests)"):  # fmt: skip
        assert line in out, out
    report = json.loads((models / "ga_report.json").read_text())
    assert report["data"].endswith("data") and report["limits"] == {"train": 0, "validation": 0, "test": 0}
    assert "over 2 seeds" in out


@pytest.mark.parametrize("where", ["validation", "curve"])
def test_ctrl_c_after_a_finished_search_keeps_its_subset(ga_script, monkeypatch, capsys, where):
    # A search that had finished was thrown away by a Ctrl-C in the minutes of forests after it
    # (nothing saved), or in the SelectKBest curve after every seed (no file at all).
    import json

    import ga_select

    argv, models = ga_script
    if where == "validation":
        monkeypatch.setattr(ga_select, "choose_on_validation", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    else:
        monkeypatch.setattr(ga_select, "kbest_mask", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(SystemExit) as stopped:
        ga_select.main(argv)
    assert stopped.value.code == 130
    err = capsys.readouterr().err
    saved = json.loads((models / "ga_interrupted.json").read_text())
    if where == "validation":
        assert "after seed 0's search" in err and "Run the same command again to go on" in err
        assert saved["running_seed"] == 0 and saved["running_seed_best_so_far"]["search_finished"]
        assert saved["running_seed_best_so_far"]["selected_features"]
    else:
        assert "SelectKBest curve, after every seed" in err
        assert saved["running_seed"] is None and [s["seed"] for s in saved["completed_seeds"]] == [0, 1]

    # The same command goes on from the saved searches (not refused for the earlier run's file).
    assert ga_select.parse_args(argv).models_dir == models


def test_a_run_stopped_in_a_search_goes_on_with_the_same_command_to_the_report_of_one_never_stopped(
    ga_script, monkeypatch, capsys
):
    import json

    import ga_select
    from ferkit.ga import run_ga

    argv, models = ga_script
    assert argv[2] == "--models-dir" and argv[4] == "--plots-dir"
    whole = [*argv[:3], str(models.with_name("whole")), argv[4], str(models.with_name("whole_plots")), *argv[6:]]
    ga_select.main(whole)
    expected = json.loads((models.with_name("whole") / "ga_report.json").read_text())

    def stop_in_seed_1(x, y, config, **kwargs):
        calls = []

        def stopping_map(func, items):
            calls.append(1)
            if config.seed == 1 and len(calls) == 3:  # in generation 2's fitness (1: the first population)
                raise KeyboardInterrupt
            return list(map(func, items))

        return run_ga(x, y, config, mapper=stopping_map, **kwargs)

    monkeypatch.setattr(ga_select, "run_ga", stop_in_seed_1)
    with pytest.raises(SystemExit) as stopped:
        ga_select.main(argv)
    assert stopped.value.code == 130
    err = capsys.readouterr().err
    assert "the same command goes on after generation 1" in err and "Run the same command again to go on" in err
    assert sorted(p.name for p in (models / "checkpoints" / "ga").iterdir()) == ["seed0.npz", "seed1.npz"]

    monkeypatch.setattr(ga_select, "run_ga", run_ga)
    ga_select.main(argv)  # the same command, no --overwrite
    assert "going on from" in capsys.readouterr().out
    report = json.loads((models / "ga_report.json").read_text())
    assert report["table"] == expected["table"]
    assert not (models / "checkpoints").exists() and not (models / "ga_interrupted.json").exists()


def test_a_complete_run_with_overwrite_takes_away_an_earlier_interrupted_runs_file(ga_script):
    import ga_select

    argv, models = ga_script
    models.mkdir()
    (models / "ga_interrupted.json").write_text("{}")
    ga_select.main([*argv, "--overwrite"])
    assert (models / "ga_report.json").exists() and not (models / "ga_interrupted.json").exists()


def test_selection_settings_that_cannot_work_are_refused_before_any_work(tmp_path, capsys):
    import ga_select

    data = tmp_path / "data"
    (data / "happy").mkdir(parents=True)
    base = ["--data", str(data), "--models-dir", str(tmp_path / "m")]
    cases = [
        (["--plots-dir", str(data / "happy")], "whose folders the next run reads as classes"),  # read as faces
        (["--plots-dir", str(tmp_path / "p"), "--models-dir", str(data / "run.2")], "a new folder in"),  # a class
        (["--plots-dir", str(tmp_path / "p"), "--scheduler", "nonsense"], "is not a scheduler's address"),
        (["--plots-dir", str(tmp_path / "p"), "--val-limit", "-1"], "--val-limit must be at least 0"),
    ]
    for extra, message in cases:
        with pytest.raises(SystemExit) as refused:
            ga_select.parse_args([*base, *extra])
        assert refused.value.code == 2 and message in capsys.readouterr().err
    for good in ("tcp://10.0.0.5:8786", "scheduler:8786", "tcp://[::1]:8786"):
        assert ga_select.parse_args([*base, "--plots-dir", str(tmp_path / "p"), "--scheduler", good]).scheduler == good
    # The other scripts that draw plots refuse the same.
    import evaluate
    import train_cnn

    for parse, argv in (
        (train_cnn.parse_args, ["--data", str(data), "--plots-dir", str(data / "happy" / "plots")]),
        (train_cnn.parse_args, ["--data", str(data), "--models-dir", str(data / "models")]),
        (train_cnn.parse_args, ["--data", str(data), "--models-dir", str(data)]),  # data/checkpoints: a class
        (train_cnn.parse_args, ["--data", str(data), "--plots-dir", str(data / "plots.v1")]),  # a dotted folder
        (evaluate.parse_args, ["--data", str(data), "--confusion", str(data / "happy" / "c.png")]),
    ):
        with pytest.raises(SystemExit) as refused:
            parse(argv)
        assert refused.value.code == 2 and "whose folders the next run reads as classes" in capsys.readouterr().err
    # Beside the split folders of the Kaggle layout the loader never looks: accepted, as before.
    kaggle = tmp_path / "fer"
    for split in ("train", "test"):
        (kaggle / split / "happy").mkdir(parents=True)
    assert ga_select.parse_args(["--data", str(kaggle), "--models-dir", str(kaggle / "m"), "--plots-dir",
                                 str(kaggle / "plots")]).plots_dir == kaggle / "plots"  # fmt: skip
    with pytest.raises(SystemExit):
        ga_select.parse_args(["--data", str(kaggle), "--plots-dir", str(kaggle / "train" / "plots")])
    assert "whose pictures the next run reads as faces" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # a new class folder beside happy/
        train_cnn.parse_args(["--data", str(kaggle), "--models-dir", str(kaggle / "train" / "models")])
    assert "a new folder in" in capsys.readouterr().err
    # Models and checkpoints (no images) inside a class folder, and a hidden folder, are never read.
    for root, folder in (
        (data, data / "happy" / "models"),
        (data, data / ".models"),
        (kaggle, kaggle / "train" / "happy" / "m"),
    ):
        assert train_cnn.parse_args(["--data", str(root), "--models-dir", str(folder)]).models_dir == folder
    from ferkit.splits import stratified_subset

    with pytest.raises(ParameterError, match="train-limit"):
        stratified_subset(np.arange(7), 5, flag="train-limit")


def test_fitness_workers_leave_the_jobs_process_group():
    # A SIGTERM to the whole group (timeout, kill -- -PGID, a batch system) killed workers while one
    # held the pool's queue lock, and the main process then waited for that lock forever.
    import os

    x, y = synthetic_features(60)
    pool = ga._pool(config(jobs=2), x, y)
    try:
        groups = {pool.apply(os.getpgrp) for _ in range(4)}
    finally:
        pool.terminate()
        pool.join()
    assert os.getpgrp() not in groups


def test_features_constant_on_few_faces_give_one_warning_not_scikit_learns_flood():
    import warnings

    from ferkit.errors import FerWarning

    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 50)).astype(np.float32)
    x[:, :10] = 1.0  # the same on every face, as many Xception features are on 20 faces
    y = np.repeat(np.arange(4), 5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        mask = gacompare.kbest_mask(x, y, 8)
        ga.rank_features(x, y)  # ranked again (each seed, each SelectKBest size): said once only
        gacompare.kbest_mask(x, y, 4)
    assert [w.category for w in caught] == [FerWarning] and "10 of the 50 features" in str(caught[0].message)
    assert not mask[:10].any()  # ranked last
    other = rng.normal(size=(20, 50)).astype(np.float32)
    other[:, :10] = 1.0  # other data of the same shape and constant columns: said again
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gacompare.kbest_mask(other, y, 8)
    assert len(caught) == 1 and "10 of the 50 features" in str(caught[0].message)
    x[:, 10] = 2.0  # other data: said again
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gacompare.kbest_mask(x, y, 8)
    assert len(caught) == 1 and "11 of the 50 features" in str(caught[0].message)


def test_a_stop_while_the_last_outputs_are_written_finishes_them_and_the_run(ga_script, monkeypatch, capsys):
    import signal

    import ga_select

    argv, models = ga_script
    plot = ga_select.plot_ga_progress

    def plot_then_ctrl_c(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)
        return plot(*args, **kwargs)

    monkeypatch.setattr(ga_select, "plot_ga_progress", plot_then_ctrl_c)
    report = ga_select.main(argv)  # no SystemExit: complete
    assert (models / "ga_report.json").exists() and report["table"]
    assert "the run is complete" in capsys.readouterr().out
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_split_limit_above_the_split_size_is_said_and_all_faces_are_used(ga_script, capsys):
    import ga_select

    argv, _ = ga_script
    report = ga_select.main([*argv, "--val-limit", "1000", "--seeds", "1"])
    assert "note: --val-limit 1000 is not below the 90 faces of that split; all are used" in capsys.readouterr().out
    assert report["validation_images"] == 90
