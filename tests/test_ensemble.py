"""ensemble.py: one model file that averages several trained models."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import ensemble
from ferkit import networks, weightavg
from ferkit.classify import predict_proba
from ferkit.faces import CLASS_NAMES
from ferkit.modelfile import load_model, save_model


def saved_models(tmp_path, archs=("vgg", "seed"), class_names=CLASS_NAMES, augment=False):
    paths = []
    for i, arch in enumerate(archs):
        keras.utils.set_random_seed(i)
        model = networks.build_model(arch=arch, augment=augment)
        paths.append(save_model(model, tmp_path / f"m{i}.keras", class_names))
    return paths


def test_saved_average_predicts_the_mean_of_its_members(training_dir, tmp_path, capsys):
    paths = saved_models(tmp_path)
    out = tmp_path / "avg.keras"
    accuracy = ensemble.main(
        [
            *map(str, paths),
            "--data",
            str(training_dir),
            "--out",
            str(out),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--tta",
            "crops",
        ]
    )
    assert set(accuracy) == {str(paths[0]), str(paths[1]), "average"}
    assert "validation accuracy (42 faces, validation: the dataset's own validation split, 12-view crop TTA)" in (
        capsys.readouterr().out
    )

    averaged, names = load_model(out)
    keras.models.load_model(out, safe_mode=True)
    assert names == CLASS_NAMES
    faces = np.random.default_rng(0).integers(0, 256, (6, 48, 48), dtype=np.uint8)
    members = [predict_proba(load_model(p)[0], faces) for p in paths]
    np.testing.assert_allclose(predict_proba(averaged, faces), np.mean(members, axis=0), rtol=1e-4, atol=1e-6)

    # The same command again would replace that file (or, as in the old --help example, the shipped
    # model): refused before any work unless --overwrite; without --out the run says nothing is kept.
    saved = out.read_bytes()
    with pytest.raises(SystemExit) as refused:
        ensemble.main([*map(str, paths), "--data", str(training_dir), "--out", str(out)])
    assert refused.value.code == 2 and "--overwrite" in capsys.readouterr().err and out.read_bytes() == saved
    assert ensemble.parse_args([*map(str, paths), "--out", str(out), "--overwrite"]).overwrite
    ensemble.main([*map(str, paths), "--data", str(training_dir), "--cache-dir", str(tmp_path / "cache")])
    assert "not saved: give --out FILE.keras to keep the average" in capsys.readouterr().out


def test_models_of_different_classes_are_refused(training_dir, tmp_path, capsys):
    [first] = saved_models(tmp_path, archs=("vgg",))
    other = save_model(networks.build_model(arch="vgg"), tmp_path / "other.keras", ("a", "b", "c", "d", "e", "f", "g"))
    with pytest.raises(SystemExit) as refused:
        ensemble.main([str(first), str(other), "--data", str(training_dir)])
    assert refused.value.code == 2
    assert "label different classes" in capsys.readouterr().err


def ensemble_args(paths, training_dir, tmp_path, *extra):
    return [*map(str, paths), "--data", str(training_dir), "--cache-dir", str(tmp_path / "cache"), *extra]


def test_remeasured_batchnorm_holds_the_average_statistics_of_its_input():
    keras.utils.set_random_seed(3)
    face = keras.Input((48, 48, 1))
    hidden = keras.layers.Dense(5, name="hidden")(keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(face)))
    normed = keras.layers.BatchNormalization(momentum=0.9, name="bn")(hidden)
    model = keras.Model(face, keras.layers.Dense(7, activation="softmax")(normed))
    faces = np.random.default_rng(1).integers(0, 256, (4 * 64 + 10, 48, 48), dtype=np.uint8)

    seen = []
    batches = weightavg.remeasure_batchnorm(model, faces, batch_size=64, progress=lambda k, n: seen.append((k, n)))

    # Four equal batches; the short fifth one is left out so that every batch weighs the same.
    assert batches == 4 and seen == [(1, 4), (2, 4), (3, 4), (4, 4)]
    outputs = keras.Model(face, hidden).predict(faces[: 4 * 64].astype("float32")[..., None], verbose=0)
    per_batch = outputs.reshape(4, 64, 5)
    bn = model.get_layer("bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), per_batch.mean(axis=1).mean(axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), per_batch.var(axis=1).mean(axis=0), rtol=1e-4, atol=1e-5)
    assert bn.momentum == 0.9  # put back for later training


def test_a_weight_average_is_the_same_model_every_time():
    # The statistics are measured in training mode, through the augmentation and dropout: unseeded,
    # the same members gave another average (and another validation accuracy) on every run.
    from ferkit import networks

    member = networks.build_model(arch="wide", width=8, augment="strong")
    faces = np.random.default_rng(2).integers(0, 256, (96, 48, 48), dtype=np.uint8)
    first, _ = weightavg.averaged_model(member, member.get_weights(), faces)
    keras.utils.set_random_seed(99)  # whatever the caller's random state
    second, _ = weightavg.averaged_model(member, member.get_weights(), faces)
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_averaged_weights_are_the_mean_of_the_checkpoints_in_one_model(training_dir, tmp_path, capsys):
    paths = saved_models(tmp_path, archs=("vgg", "vgg", "vgg"), augment="light")  # as checkpoints are
    out = tmp_path / "swa.keras"
    scores = ensemble.main(ensemble_args(paths, training_dir, tmp_path, "--average", "weights", "--out", str(out)))

    assert set(scores) == {*map(str, paths), "average"}
    assert "averaged the weights of 3 models; BatchNorm statistics over 1 training batches" in capsys.readouterr().out
    averaged, names = load_model(out)
    assert names == CLASS_NAMES
    members = [load_model(p)[0] for p in paths]
    assert not any(layer.name.startswith("aug_") for layer in averaged.layers)  # shipped without them
    assert len(averaged.layers) == len(members[0].layers) - 4  # one network (less 4 augmentation layers)
    for layer in ("conv1_1", "conv4_2", "dense1"):
        expected = np.mean([m.get_layer(layer).kernel.numpy() for m in members], axis=0)
        np.testing.assert_allclose(averaged.get_layer(layer).kernel.numpy(), expected, rtol=1e-6, atol=1e-7)
    # BatchNorm statistics are measured on the training faces, not averaged: fresh members all
    # hold the initial (0, 1), the averaged network holds its real statistics.
    bn = averaged.get_layer("conv1_1_bn")
    assert not np.allclose(bn.moving_mean.numpy(), 0) and np.all(bn.moving_variance.numpy() > 0)
    faces = np.random.default_rng(0).integers(0, 256, (4, 48, 48), dtype=np.uint8)
    np.testing.assert_allclose(predict_proba(averaged, faces).sum(axis=1), 1, rtol=1e-5)


def test_weights_of_different_networks_are_refused(training_dir, tmp_path, capsys):
    paths = saved_models(tmp_path, archs=("vgg", "seed"))
    with pytest.raises(SystemExit) as refused:
        ensemble.main(ensemble_args(paths, training_dir, tmp_path, "--average", "weights"))
    assert refused.value.code == 2
    err = capsys.readouterr().err
    assert "model 2 is not the same network as model 1" in err and "Traceback" not in err


def test_calibrated_checkpoints_are_refused_for_weight_averaging(training_dir, tmp_path, capsys):
    [first, second] = saved_models(tmp_path, archs=("vgg", "vgg"))
    calibrated = save_model(load_model(second)[0], tmp_path / "cal.keras", calibration={"temperature": 0.8})
    with pytest.raises(SystemExit) as refused:
        ensemble.main(ensemble_args([first, calibrated], training_dir, tmp_path, "--average", "weights"))
    assert refused.value.code == 2
    assert "cal.keras is calibrated" in capsys.readouterr().err


def test_an_average_of_models_trained_on_different_data_says_it_records_none(training_dir, tmp_path, capsys):
    from ferkit.modelfile import read_training

    mine, other = {"data": "mine", "trained_on": 40}, {"data": "other", "trained_on": 210}
    paths = []
    for i, record in enumerate((mine, other, mine)):
        keras.utils.set_random_seed(i)
        model = networks.build_model(arch="vgg")
        paths.append(save_model(model, tmp_path / f"r{i}.keras", training=record))
    common = ["--data", str(training_dir), "--cache-dir", str(tmp_path / "cache")]
    ensemble.main([str(paths[0]), str(paths[2]), *common, "--out", str(tmp_path / "same.keras")])
    assert "record different training data" not in capsys.readouterr().out
    assert read_training(tmp_path / "same.keras") == mine  # one record, kept
    ensemble.main([str(paths[0]), str(paths[1]), *common, "--out", str(tmp_path / "mixed.keras")])
    said = capsys.readouterr().out
    assert "note: the members differ in the data, the faces trained on (--limit), so the average records no" in said
    assert read_training(tmp_path / "mixed.keras") is None
    # Only where they started from differs (a model and its --init-from continuation): the same
    # held-out faces, so the average keeps the record, with each member's.
    continued = {**mine, "init_from": mine}
    paths.append(save_model(networks.build_model(arch="vgg"), tmp_path / "r3.keras", training=continued))
    ensemble.main([str(paths[0]), str(paths[3]), *common, "--out", str(tmp_path / "continued.keras")])
    said = capsys.readouterr().out
    assert "differ in the model each started from (--init-from) but held out the same faces" in said
    kept = read_training(tmp_path / "continued.keras")
    assert kept == {"data": "mine", "trained_on": 40, "members": [mine, continued]}
