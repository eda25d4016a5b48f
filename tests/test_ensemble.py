"""ensemble.py: one model file that averages several trained models."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import ensemble
from ferkit import networks
from ferkit.classify import predict_proba
from ferkit.faces import CLASS_NAMES
from ferkit.modelfile import load_model, save_model


def saved_models(tmp_path, archs=("vgg", "seed"), class_names=CLASS_NAMES):
    paths = []
    for i, arch in enumerate(archs):
        keras.utils.set_random_seed(i)
        paths.append(save_model(networks.build_model(arch=arch), tmp_path / f"m{i}.keras", class_names))
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


def test_models_of_different_classes_are_refused(training_dir, tmp_path, capsys):
    [first] = saved_models(tmp_path, archs=("vgg",))
    other = save_model(networks.build_model(arch="vgg"), tmp_path / "other.keras", ("a", "b", "c", "d", "e", "f", "g"))
    with pytest.raises(SystemExit) as refused:
        ensemble.main([str(first), str(other), "--data", str(training_dir)])
    assert refused.value.code == 2
    assert "label different classes" in capsys.readouterr().err
