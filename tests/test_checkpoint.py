"""The checkpoint folder: a run only ever removes the files it wrote, refuses a folder of other
files, and a second run on the same folder is refused at its start."""

from __future__ import annotations

import json

import pytest
from conftest import TINY
from test_train import run as train_run

from ferkit.checkpoint import MARKER, CheckpointFolder
from ferkit.errors import CheckpointError


def run(data, tmp_path, *extra):
    return train_run(data, tmp_path, *TINY, "--epochs", "1", *extra)


def test_a_folder_of_other_files_is_refused_and_left_as_it_was(training_dir, tmp_path, capsys):
    # The models folder, the dataset, a folder of photos: none of them is a checkpoint folder.
    for folder in (training_dir, training_dir / "train" / "happy"):
        before = sorted(p.relative_to(folder) for p in folder.rglob("*"))
        with pytest.raises(SystemExit) as refused:
            run(training_dir, tmp_path, "--checkpoint-dir", str(folder))
        assert refused.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]  # argparse's usage, then one line
        assert "not a training checkpoint" in err and "--checkpoint-dir" in err
        assert sorted(p.relative_to(folder) for p in folder.rglob("*")) == before


def test_checkpoint_dir_that_is_the_models_folder_is_refused(training_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as refused:
        run(training_dir, tmp_path, "--checkpoint-dir", str(tmp_path / "models"))
    assert refused.value.code == 2
    assert "also the --models-dir" in capsys.readouterr().err


def test_a_finished_run_removes_only_its_own_files(training_dir, tmp_path):
    given = tmp_path / "mine"
    given.mkdir()  # an empty folder of the user's: used, then left in place, empty
    run(training_dir, tmp_path, "--checkpoint-dir", str(given))
    assert given.is_dir() and list(given.iterdir()) == []
    assert (tmp_path / "models" / "t.keras").exists()

    made = tmp_path / "made" / "here"  # folders the run made: removed with its files
    run(training_dir, tmp_path, "--checkpoint-dir", str(made), "--overwrite")
    assert not (tmp_path / "made").exists()


def test_cleanup_keeps_files_put_beside_the_checkpoint(tmp_path):
    folder = CheckpointFolder(tmp_path / "ck")
    folder.open()
    for name in ("state.json", "best.keras", "epoch0003.keras", "tmpab12.keras"):
        (folder.path / name).write_text("x")
    (folder.path / "notes.txt").write_text("the user's")
    folder.clear()  # --fresh
    assert sorted(p.name for p in folder.path.iterdir()) == sorted([".lock", MARKER, "notes.txt"])
    folder.remove()
    assert [p.name for p in folder.path.iterdir()] == ["notes.txt"]  # made by the run, but not empty: kept


def test_the_folders_a_run_made_above_its_checkpoints_go_when_empty_and_stay_otherwise(tmp_path):
    models = tmp_path / "models"
    models.mkdir()  # the user's (or an earlier run's)
    first = CheckpointFolder(models / "checkpoints" / "a")  # the default place: checkpoints/ made too
    first.open()
    first.remove()
    assert list(models.iterdir()) == []  # no empty checkpoints/ left behind

    first, second = CheckpointFolder(models / "checkpoints" / "a"), CheckpointFolder(models / "checkpoints" / "b")
    first.open()
    second.open()  # another run beside it
    first.remove()
    assert [p.name for p in (models / "checkpoints").iterdir()] == ["b"]
    (second.path / "notes.txt").write_text("the user's")
    second.remove()
    assert (second.path / "notes.txt").exists()


def test_a_second_run_on_the_same_folder_is_refused_at_its_start(training_dir, tmp_path, capsys):
    first = CheckpointFolder(tmp_path / "models" / "checkpoints" / "t")
    first.open()  # a run in progress (the lock is per open file, so this process counts as another run)
    try:
        with pytest.raises(SystemExit) as refused:
            run(training_dir, tmp_path)
        assert refused.value.code == 2
        err = capsys.readouterr().err
        assert "another training run" in err and "--checkpoint-dir" in err
        assert not (tmp_path / "models" / "t.keras").exists()
    finally:
        first.release()
    run(training_dir, tmp_path)  # free again: the run goes ahead
    assert (tmp_path / "models" / "t.keras").exists()


def test_a_folder_left_by_an_older_version_is_adopted(tmp_path):
    old = tmp_path / "ck"
    old.mkdir()
    (old / "state.json").write_text(json.dumps({"epoch": 1}))
    folder = CheckpointFolder(old)
    folder.open()  # a checkpoint without the mark: it is ours
    assert (old / MARKER).exists()
    folder.release()
    with pytest.raises(CheckpointError, match="is a file"):
        (tmp_path / "f").write_text("")
        CheckpointFolder(tmp_path / "f").open()


def test_a_refused_resume_names_each_changed_setting_as_it_is_typed():
    from ferkit.checkpoint import _differences

    then = {"settings": {"augment": "strong", "class_weights": False, "limit": None, "lr": 0.02}}
    now = {"augment": False, "class_weights": True, "limit": 500, "lr": 0.01}
    assert _differences(["augment", "class_weights", "limit", "lr"], then, now) == (
        "--augment strong then, --augment none now; no --class-weights then, --class-weights now; "
        "no --limit then, --limit 500 now; --lr 0.02 then, --lr 0.01 now"
    )
