"""Knowledge distillation (train_cnn.py --teacher): the soft targets, their cache and the run."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import TINY
from test_train import interrupt_after_epoch, run

import train_cnn
from ferkit import distill, training
from ferkit.classify import predict_proba
from ferkit.data import load_dataset
from ferkit.errors import CheckpointError, ModelFileError
from ferkit.faces import CLASS_NAMES
from ferkit.modelfile import load_model, save_model
from ferkit.networks import build_model


@pytest.fixture
def teachers(tmp_path):
    """Two small untrained networks with different weights, saved like trained models."""
    paths = []
    for seed in (1, 2):
        import keras

        keras.utils.set_random_seed(seed)
        paths.append(save_model(build_model(arch="wide", width=8), tmp_path / f"teacher{seed}.keras"))
    return paths


def test_teacher_targets_average_the_teachers_read_with_tta(teachers, tmp_path):
    faces = np.random.default_rng(0).integers(0, 256, (10, 48, 48), dtype=np.uint8)
    got = distill.teacher_probabilities(teachers, faces, CLASS_NAMES, "crops")
    each = [predict_proba(load_model(p)[0], faces, flip_tta=True, crops=True) for p in teachers]
    np.testing.assert_allclose(got, (each[0] + each[1]) / 2, rtol=1e-5, atol=1e-6)
    assert not np.allclose(got, distill.teacher_probabilities(teachers, faces, CLASS_NAMES, False))

    one_hot = np.eye(7, dtype=np.float32)[np.arange(10) % 7]
    blended = distill.blend_targets(one_hot, got, 0.25)
    np.testing.assert_allclose(blended.sum(1), 1, rtol=1e-5)
    np.testing.assert_allclose(blended, 0.75 * one_hot + 0.25 * got, rtol=1e-6)


def test_teacher_targets_are_cached_and_rebuilt_when_what_they_depend_on_changes(teachers, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    faces, labels = rng.integers(0, 256, (6, 48, 48), dtype=np.uint8), np.arange(6)
    cache = tmp_path / "teacher.npz"

    def cached(teacher_list, x, **kw):
        return distill.cached_teacher_probabilities(cache, teacher_list, x, labels, CLASS_NAMES, "flip", **kw)

    first = cached(teachers[:1], faces)
    calls = []
    original = distill.teacher_probabilities
    monkeypatch.setattr(distill, "teacher_probabilities", lambda *a: calls.append(a) or original(*a))
    np.testing.assert_array_equal(cached(teachers[:1], faces), first)
    assert calls == []  # read back, not recomputed

    other_faces = faces[::-1].copy()  # as many faces, other rows: not the same targets
    with pytest.raises(CheckpointError, match="changed since the checkpoint"):
        cached(teachers[:1], other_faces, resuming=True)
    rebuilt = cached(teachers[:1], other_faces)
    assert len(calls) == 1
    np.testing.assert_allclose(rebuilt, first[::-1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(cached(teachers[1:], other_faces), rebuilt)  # another teacher
    assert len(calls) == 2

    cache.write_bytes(cache.read_bytes()[:100])  # cut short (a full disk, a kill mid-copy)
    with pytest.warns(UserWarning, match="teacher targets: .* is damaged"):
        again = cached(teachers[1:], other_faces, resuming=True)
    assert len(calls) == 3 and (tmp_path / "teacher.npz.damaged").exists()
    np.testing.assert_allclose(again, original(teachers[1:], other_faces, CLASS_NAMES, "flip"), rtol=1e-6)


def test_a_teacher_with_other_classes_is_refused(teachers, tmp_path):
    path = save_model(build_model(num_classes=7, arch="vgg"), tmp_path / "other.keras", class_names=list("abcdefg"))
    faces = np.zeros((2, 48, 48), np.uint8)
    with pytest.raises(ModelFileError, match="labels 7 classes .* distil from models trained on this data's classes"):
        distill.teacher_probabilities([teachers[0], path], faces, CLASS_NAMES, "flip")


@pytest.mark.cost(62)
def test_distilled_run_learns_the_blended_targets_and_resumes_without_rereading(
    training_dir, tmp_path, teachers, monkeypatch, capsys
):
    seen = []
    original = training.EpochBatches.__init__

    def record(self, *args, **kwargs):
        seen.append(self)
        original(self, *args, **kwargs)

    monkeypatch.setattr(training.EpochBatches, "__init__", record)
    flags = ["--epochs", "2", *TINY, "--teacher", *map(str, teachers), "--distill", "0.4"]
    interrupt_after_epoch(monkeypatch, 0)
    with pytest.raises(SystemExit):
        run(training_dir, tmp_path, *flags)
    assert capsys.readouterr().out.count("reading 280 training faces") == 2

    data = load_dataset(training_dir, cache_dir=tmp_path / "cache", progress=False)
    soft = distill.teacher_probabilities(teachers, data.train.x, CLASS_NAMES, "crops")
    np.testing.assert_allclose(seen[0].y, 0.6 * np.eye(7)[data.train.y] + 0.4 * soft, rtol=1e-4, atol=1e-5)

    monkeypatch.undo()
    capsys.readouterr()
    metrics = run(training_dir, tmp_path, *flags)
    out = capsys.readouterr().out
    assert "resuming" in out and "reading" not in out  # the teachers' targets came from the checkpoint
    assert metrics["settings"]["teacher"] == [str(t.resolve()) for t in teachers]
    assert json.loads((tmp_path / "models" / "t_metrics.json").read_text())["settings"]["distill"] == 0.4

    interrupt_after_epoch(monkeypatch, 0)
    with pytest.raises(SystemExit):
        run(training_dir, tmp_path, "--name", "u", *flags)
    monkeypatch.undo()
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:  # the checkpoint was made with other targets
        run(training_dir, tmp_path, "--name", "u", *flags[:-1], "0.5")
    assert refused.value.code == 2
    assert "different settings (--distill 0.4 then, --distill 0.5 now)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--teacher", "nowhere.keras"], "--teacher nowhere.keras not found"),
        (["--teacher", "T", "--distill", "0"], "--distill must be in (0, 1]"),
        (["--teacher", "T", "--distill", "1.5"], "--distill must be in (0, 1]"),
        (["--distill", "0.3"], "--teacher must be given with --distill"),
        (["--teacher-tta", "none"], "--teacher must be given with --distill"),
    ],
)
def test_bad_distillation_settings_are_refused_before_training(flags, message, teachers, capsys):
    flags = [str(teachers[0]) if f == "T" else f for f in flags]
    with pytest.raises(SystemExit) as stopped:
        train_cnn.parse_args(["--name", "p", *flags])
    assert stopped.value.code == 2 and message in capsys.readouterr().err


def test_teachers_are_kept_as_resolved_paths(teachers, monkeypatch):
    monkeypatch.chdir(teachers[0].parent)
    config = train_cnn.parse_args(["--name", "p", "--teacher", teachers[0].name, "--teacher-tta", "none"])
    assert config.teacher == [teachers[0].resolve()] and config.teacher_tta is False
