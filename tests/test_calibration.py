"""Calibrated confidence: ECE, a temperature fitted on validation, folded into the model file."""

from __future__ import annotations

import numpy as np
import pytest

import evaluate
from ferkit.calibration import expected_calibration_error, fit_temperature, fold_temperature, with_temperature
from ferkit.modelfile import load_model, read_calibration, save_model


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def sampled(n=20000, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 1.5, (n, 7))
    truth = softmax(logits)
    y = np.array([rng.choice(7, p=p) for p in truth])
    return logits, truth, y


def test_ece_is_small_for_honest_probabilities_and_large_for_overconfident_ones():
    logits, truth, y = sampled()
    assert expected_calibration_error(truth, y) < 0.02
    assert expected_calibration_error(softmax(3 * logits), y) > 0.1


def test_fitted_temperature_undoes_overconfidence():
    logits, _, y = sampled()
    overconfident = softmax(2 * logits)
    temperature = fit_temperature(overconfident, y)
    assert temperature == pytest.approx(2.0, rel=0.1)
    fixed = with_temperature(overconfident, temperature)
    assert expected_calibration_error(fixed, y) < 0.02
    np.testing.assert_array_equal(fixed.argmax(1), overconfident.argmax(1))


def test_probabilities_unrelated_to_the_labels_drive_the_temperature_to_the_end_of_its_range():
    rng = np.random.default_rng(1)
    confident = np.full((400, 7), 0.01)
    confident[np.arange(400), rng.integers(0, 7, 400)] = 0.94  # sure of itself, right by chance
    assert fit_temperature(confident, rng.integers(0, 7, 400)) == pytest.approx(20, rel=1e-3)


def test_temperature_folded_into_the_model_matches_and_is_saved(tmp_path):
    import keras

    from ferkit.networks import build_model

    keras.utils.set_random_seed(0)
    model = build_model(arch="vgg")
    faces = np.random.default_rng(1).uniform(0, 255, (16, 48, 48, 1)).astype(np.float32)
    before = np.asarray(model(faces))
    fold_temperature(model, 2.5)
    np.testing.assert_allclose(np.asarray(model(faces)), with_temperature(before, 2.5), rtol=1e-4, atol=1e-6)
    path = save_model(model, tmp_path / "cal.keras", calibration={"temperature": 2.5, "fitted_on": "PublicTest"})
    assert read_calibration(path)["temperature"] == 2.5
    reloaded, _ = load_model(path)
    np.testing.assert_allclose(np.asarray(reloaded(faces)), np.asarray(model(faces)), rtol=1e-5, atol=1e-6)


def test_evaluate_calibrates_on_validation_and_keeps_the_labels(training_dir, tmp_path, capsys):
    import keras

    from ferkit.networks import build_model

    keras.utils.set_random_seed(0)
    original = save_model(build_model(arch="vgg"), tmp_path / "m.keras")
    common = ["--data", str(training_dir), "--cache-dir", str(tmp_path / "cache")]
    report = evaluate.main(
        [
            "--model",
            str(original),
            *common,
            "--calibrate",
            str(tmp_path / "cal.keras"),
            "--reliability",
            str(tmp_path / "rel.png"),
        ]
    )
    assert report["calibration"]["temperature"] > 0 and 0 <= report["ece"] <= 1
    assert (tmp_path / "rel.png").stat().st_size > 10_000
    assert f"saved {tmp_path / 'rel.png'}" in capsys.readouterr().out
    again = evaluate.main(["--model", str(tmp_path / "cal.keras"), *common])
    assert again["accuracy"] == report["accuracy"]  # a temperature never changes the most probable class
    assert again["ece"] == pytest.approx(report["calibration"]["ece_after_on_test"], abs=1e-6)
    capsys.readouterr()

    # The same command again would replace the calibrated model and the plot: refused, nothing touched.
    written = {p: p.stat().st_mtime_ns for p in (tmp_path / "cal.keras", tmp_path / "rel.png")}
    argv = ["--model", str(original), *common, "--calibrate", str(tmp_path / "cal.keras"),
            "--reliability", str(tmp_path / "rel.png")]  # fmt: skip
    with pytest.raises(SystemExit) as refused:
        evaluate.main(argv)
    assert refused.value.code == 2 and "--overwrite" in capsys.readouterr().err
    assert {p: p.stat().st_mtime_ns for p in written} == written
    evaluate.main([*argv, "--overwrite"])
    assert all(p.stat().st_mtime_ns != t for p, t in written.items())


@pytest.mark.cost(52)
def test_the_ece_promised_after_calibrating_with_tta_or_an_ensemble_is_what_the_saved_file_gives(
    training_dir, tmp_path, capsys
):
    # The temperature is folded into each member's softmax and acts on each TTA view; it was fitted
    # on their average, so the printed "ECE before -> after" was not the saved file's.
    import keras

    from ferkit.ensemble import average_models
    from ferkit.networks import build_model

    members = []
    for seed in (0, 1):
        keras.utils.set_random_seed(seed)
        member = build_model(arch="vgg")
        last = member.layers[-1]
        kernel, bias = last.get_weights()
        last.set_weights([kernel * 40, bias])  # sure of itself, as trained models are
        members.append(member)
    single = save_model(members[0], tmp_path / "one.keras")
    both = save_model(average_models(members), tmp_path / "both.keras")
    common = ["--data", str(training_dir), "--cache-dir", str(tmp_path / "cache"), "--tta", "crops"]
    for model in (single, both):
        out = tmp_path / f"cal_{model.name}"
        report = evaluate.main(["--model", str(model), *common, "--calibrate", str(out)])
        assert report["calibration"]["ece_after_on_test"] < report["ece"]
        again = evaluate.main(["--model", str(out), *common])
        assert again["ece"] == pytest.approx(report["calibration"]["ece_after_on_test"], abs=2e-4), model.name
        assert again["accuracy"] == report["accuracy"]

    # Calibrated again: the record holds the model's temperature in all (both fits), not the last.
    first = read_calibration(tmp_path / "cal_one.keras")["temperature"]
    capsys.readouterr()
    report = evaluate.main(
        ["--model", str(tmp_path / "cal_one.keras"), *common, "--calibrate", str(tmp_path / "twice.keras")]
    )
    record = read_calibration(tmp_path / "twice.keras")
    assert record["temperature_before"] == pytest.approx(first)
    assert record["temperature"] == pytest.approx(first * record["temperature_this_fit"])
    assert f"on top of the {first:.3f} inside" in capsys.readouterr().out


def test_a_temperature_at_either_end_of_its_range_is_warned_of_with_what_it_means(
    training_dir, tmp_path, monkeypatch, capsys
):
    from ferkit.networks import build_model

    model = save_model(build_model(arch="wide", width=8), tmp_path / "m.keras")
    argv = ["--model", str(model), "--data", str(training_dir), "--cache-dir", str(tmp_path / "cache")]
    argv += ["--calibrate", str(tmp_path / "cal.keras"), "--overwrite"]
    for fitted, meaning in ((20.0, "say next to nothing"), (0.05, "far less sure of itself"), (1.3, None)):
        monkeypatch.setattr(evaluate, "fit_temperature", lambda proba, y, t=fitted: t)
        evaluate.main(argv)
        err = capsys.readouterr().err
        assert ("at the end of the range searched (0.05-20)" in err) == (meaning is not None)
        assert meaning is None or meaning in err


def test_plots_without_matplotlib_are_refused_before_any_work(monkeypatch, tmp_path, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as on the light runtime: not importable
    with pytest.raises(SystemExit) as refused:
        evaluate.main(["--model", "models/fer_cnn.onnx", "--data", str(tmp_path / "nowhere"),
                       "--confusion", str(tmp_path / "c.png")])  # fmt: skip
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert "--confusion draws with matplotlib" in err and "pip install matplotlib" in err


def test_the_report_gives_scikit_learns_figures_without_it():
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

    from ferkit.report import classification_summary, format_report

    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 7, 500), rng.integers(0, 7, 500)
    y_pred[y_pred == 3] = 4  # a class never predicted (precision 0/0)
    y_true[y_true == 5] = 6  # a class never present (recall 0/0)
    summary = classification_summary(y_true, y_pred)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=range(7), zero_division=0)
    rows = list(summary["per_class"].values())
    np.testing.assert_allclose([[row[k] for k in ("precision", "recall", "f1", "support")] for row in rows],
                               np.stack([p, r, f, s], 1), rtol=1e-12)  # fmt: skip
    assert summary["confusion_matrix"] == confusion_matrix(y_true, y_pred, labels=range(7)).tolist()
    assert summary["macro_f1"] == pytest.approx(f.mean()) and summary["accuracy"] == np.mean(y_true == y_pred)

    # Three expressions in the labels, and one more in the predictions (a class the data lacks,
    # predicted all the same): the macro F1 averages over those four, as scikit-learn's does, and
    # the printed report says so.
    y_true, y_pred = rng.choice([0, 3, 6], 300), rng.choice([0, 3, 6, 5], 300)
    summary = classification_summary(y_true, y_pred)
    assert summary["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro", zero_division=0))
    assert summary["macro_f1_classes"] == ["angry", "happy", "sad", "surprise"]
    assert "(over the 4 classes seen: angry, happy, sad, surprise)" in format_report(summary)
