"""Odd files, odd numbers and odd endings, one test per kind of trouble: each ends in one clear
line (or is handled), never in a traceback, a wrong result or a lost file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT, TINY, counts, write_images

import evaluate
import train_cnn
from ferkit import atomic, clips, video
from ferkit.data import load_dataset
from ferkit.errors import DatasetError, ParameterError
from ferkit.trainconfig import TrainConfig

PIXELS = " ".join(["7"] * 2304)


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error:") or ": error:" in line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def train(data, tmp_path, *extra):
    return train_cnn.main(
        ["--data", str(data), "--models-dir", str(tmp_path / "models"), "--plots-dir", str(tmp_path / "plots"),
         "--cache-dir", str(tmp_path / "cache"), "--batch-size", "32", *TINY, "--name", "t", *extra]
    )  # fmt: skip


def test_csv_files_as_spreadsheets_save_them_and_broken_rows(tmp_path):
    rows = "".join(f"{i % 7},{PIXELS},{('Training', 'PublicTest', 'PrivateTest')[i // 7]}\n" for i in range(21))
    bom = tmp_path / "bom.csv"  # "CSV UTF-8" of spreadsheet programs starts with a byte-order mark
    bom.write_bytes(b"\xef\xbb\xbfemotion,pixels,Usage\n" + rows.encode())
    assert len(load_dataset(bom, cache_dir=None, progress=False).train) > 0
    for name, body, why in (
        ("label_only.csv", b"emotion,pixels,Usage\n3\n", "line 2"),
        ("latin1.csv", b"emotion,pixels,Usage\n3,1 2 3\xe9\n", "not UTF-8"),
    ):
        (tmp_path / name).write_bytes(body)
        with pytest.raises(DatasetError, match=why):
            load_dataset(tmp_path / name, cache_dir=None, progress=False)


def test_a_class_folder_behind_a_broken_or_looping_link_is_refused(tmp_path):
    root = tmp_path / "faces"
    write_images(root, {**counts(3)})
    os.rename(root / "sad", tmp_path / "elsewhere")
    os.symlink(root / "sad", root / "sad")  # a link to itself: a loop
    with pytest.raises(DatasetError, match="leads nowhere"):
        load_dataset(root, cache_dir=None, progress=False)


@pytest.mark.parametrize(
    "argv",
    [
        ["--lr", "inf"],
        ["--min-lr", "inf"],
        ["--lr", "nan"],
        ["--label-smoothing", "nan"],
        ["--seed", "-1"],
        ["--seed", str(2**40)],
    ],
)
def test_numbers_that_are_not_finite_or_out_of_range_are_refused(argv, tmp_path, capsys):
    with pytest.raises(SystemExit) as refused:
        train_cnn.parse_args(["--models-dir", str(tmp_path), *argv])
    assert refused.value.code == 2
    assert argv[0] in capsys.readouterr().err.strip().splitlines()[-1]


def test_scripts_refuse_nan_and_infinity_in_every_float_flag(tmp_path):
    import realtime

    for flag in ("--scale-factor", "--score-threshold", "--detect-scale", "--fps"):
        for value in ("nan", "inf", "-inf"):
            with pytest.raises(SystemExit):
                realtime.parse_args(["--no-display", flag, value])
    with pytest.raises(ParameterError, match="finite"):
        TrainConfig(lr=float("inf")).validate()


def test_a_loss_that_becomes_nan_stops_the_run_and_saves_no_model(training_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        train(training_dir, tmp_path, "--epochs", "2", "--lr", "1e30")
    assert stopped.value.code == 2
    assert "lower --lr" in one_error_line(capsys.readouterr().err)
    assert not (tmp_path / "models" / "t.keras").exists()


def test_init_from_a_model_of_other_classes_is_one_error(training_dir, tmp_path, capsys):
    import keras

    from ferkit.modelfile import save_model
    from ferkit.networks import build_model

    keras.utils.set_random_seed(0)
    five = save_model(
        build_model(num_classes=5, arch="wide", width=8), tmp_path / "five.keras", ("a", "b", "c", "d", "e")
    )
    with pytest.raises(SystemExit) as refused:
        train(training_dir, tmp_path, "--epochs", "1", "--init-from", str(five))
    assert refused.value.code == 2
    assert "5 classes" in one_error_line(capsys.readouterr().err)


def test_two_outputs_with_one_path_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        evaluate.parse_args(["--confusion", str(tmp_path / "a.png"), "--reliability", str(tmp_path / "a.png")])
    assert "both name" in capsys.readouterr().err


def test_a_bit_flipped_in_the_stream_face_file_is_caught_and_rebuilt(kaggle_dir, tmp_path):
    cache = tmp_path / "cache"
    first = load_dataset(kaggle_dir, cache_dir=cache, progress=False, stream=True)
    clean = np.asarray(first.train.x)
    faces_file = next(cache.glob("*.faces.npy"))
    with open(faces_file, "r+b") as f:
        f.seek(-100, os.SEEK_END)
        byte = f.read(1)
        f.seek(-100, os.SEEK_END)
        f.write(bytes([byte[0] ^ 0x10]))
    with pytest.warns(UserWarning, match="damaged"):
        again = load_dataset(kaggle_dir, cache_dir=cache, progress=False, stream=True)
    np.testing.assert_array_equal(np.asarray(again.train.x), clean)


def test_files_left_by_killed_writers_are_swept_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    (tmp_path / f".clip.partial-{dead_pid}.mp4").write_bytes(b"x")
    (tmp_path / f".log.csv.tmp-{dead_pid}-abc.tmp").write_bytes(b"x")
    live = tmp_path / f".clip.partial-{os.getppid()}.mp4"
    live.write_bytes(b"x")
    atomic.partial_name(tmp_path / "clip.mp4")
    atomic.atomic_write_text(tmp_path / "log.csv", "a,b\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, "log.csv"])


def test_images_of_several_sizes_all_reach_the_video(tmp_path):
    folder = tmp_path / "stills"
    folder.mkdir()
    for i, size in enumerate([(640, 480), (320, 240), (500, 700), (641, 481)]):
        cv2.imwrite(str(folder / f"{i}.png"), next(clips.demo_frames(1, size=size)))
    frames, fps, _, _ = video.open_source(str(folder))
    out = video.AnnotatedOutput(tmp_path / "all.avi", fps or 2)
    for frame in frames:
        out.write(frame)
    out.close()
    assert out.count == 4
    assert int(cv2.VideoCapture(str(tmp_path / "all.avi")).get(cv2.CAP_PROP_FRAME_COUNT)) == 4


def test_a_preset_warm_up_is_fitted_to_a_short_run(tmp_path, capsys):
    config = train_cnn.parse_args(["--preset", "strong", "--limit", "1000", "--epochs", "2", "--models-dir",
                                   str(tmp_path)])  # fmt: skip
    assert config.warmup_epochs == 0 and "shortened" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        train_cnn.parse_args(["--preset", "fast", "--mixup", "2", "--models-dir", str(tmp_path)])
    assert "--mixup" in capsys.readouterr().err


def test_ctrl_c_while_the_framework_imports_is_a_clean_exit(training_dir, tmp_path):
    run = subprocess.Popen(
        [sys.executable, "train_cnn.py", "--data", str(training_dir), "--models-dir", str(tmp_path / "m"),
         "--cache-dir", str(tmp_path / "c"), "--epochs", "1", *TINY],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    maps = Path(f"/proc/{run.pid}/maps")
    deadline = time.time() + 60
    while time.time() < deadline and "tensorflow" not in maps.read_text():  # TensorFlow is being loaded
        time.sleep(0.02)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130
    assert "interrupted" in one_error_line(err)


def test_ga_workers_end_with_a_killed_main_process_without_tracebacks(tmp_path):
    script = (
        "import numpy as np\n"
        "from ferkit import cli, ga\n"
        "rng = np.random.default_rng(0); y = rng.integers(0, 3, 2000)\n"
        "x = rng.normal(size=(2000, 200)).astype(np.float32); x[:, :5] += y[:, None]\n"
        "config = ga.GAConfig(population=30, generations=500, patience=500, jobs=2, trees=32, max_features=50)\n"
        "cli.run_main(ga.run_ga, x, y, config)\n"
    )
    err_file = tmp_path / "err.txt"
    with open(err_file, "w") as err:
        run = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, stdout=subprocess.PIPE, stderr=err,
                               text=True)  # fmt: skip
        assert run.stdout.readline().startswith("generation")
        workers = subprocess.run(["pgrep", "-P", str(run.pid)], capture_output=True, text=True).stdout.split()
        assert workers
        run.send_signal(signal.SIGKILL)
        run.wait()
        deadline = time.time() + 15
        while time.time() < deadline and any(os.path.exists(f"/proc/{pid}") for pid in workers):
            time.sleep(0.2)
        for pid in workers:  # reaped by init, or at least no longer running
            stat = Path(f"/proc/{pid}/stat")
            status = stat.read_text().split()[2] if stat.exists() else "gone"
            assert status in ("gone", "Z"), pid
    time.sleep(1)
    assert "Traceback" not in err_file.read_text()


def test_garbage_left_before_the_ga_forks_its_workers_is_collected_in_the_main_process(tmp_path):
    """A forked worker that collects the parent's garbage may run a destructor that waits for a
    thread the fork did not copy (a TensorFlow iterator's: a GA run hung that way after training in
    the same process). Such garbage must be finalised in the main process, before the fork."""
    script = (
        "import gc, os, sys\n"
        "import numpy as np\n"
        "from ferkit import ga\n"
        "class Finalised:\n"
        "    def __del__(self):\n"
        "        with open(sys.argv[1], 'a') as f: f.write(f'{os.getpid()}\\n')\n"
        "gc.disable()  # keep the cycle uncollected until something collects it on purpose\n"
        "cycle = [Finalised()]; cycle.append(cycle); del cycle\n"
        "rng = np.random.default_rng(0); y = rng.integers(0, 2, 200); x = rng.normal(size=(200, 20))\n"
        "config = ga.GAConfig(population=4, generations=1, jobs=2, trees=4, max_features=5)\n"
        "pool = ga._pool(config, x, y)\n"
        "print(pool.map(abs, [1, 2]), os.getpid(), flush=True)\n"
        "pool.terminate()\n"
    )
    record = tmp_path / "finalised.txt"
    done = subprocess.run([sys.executable, "-c", script, str(record)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    main_pid = done.stdout.split()[-1]
    assert record.read_text().split() == [main_pid]
