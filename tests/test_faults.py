"""Faults driven the way a user causes them: real signals to running scripts, damaged and
unwritable files, outputs named like inputs, out-of-range settings and foreign models. Each test
checks the message, the exit code, and that inputs and finished outputs are intact."""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings

import cv2
import numpy as np
import pytest
from conftest import ROOT, TINY

import ensemble
import evaluate
import export as export_script
import ga_select
import realtime
import train_cnn
from ferkit import clips, video
from ferkit.data import load_dataset
from ferkit.modelfile import load_model, save_model
from ferkit.networks import build_model
from ferkit.paths import DEFAULT_MODEL_PATH, KERAS_MODEL_PATH

PYTHON = sys.executable


def digest(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def usage_error(err: str) -> str:
    """The one line a refused command line prints: what is wrong, without argparse's usage block
    above it (20 lines for train_cnn.py) that buried it."""
    lines = [line for line in err.strip().splitlines() if ": error: " in line]
    assert len(lines) == 1 and "Traceback" not in err and "usage:" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    import keras

    keras.utils.set_random_seed(0)
    return save_model(build_model(arch="vgg"), tmp_path_factory.mktemp("m") / "m.keras")


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """A clip long enough to be interrupted while it plays (small frames: quick to write)."""
    return video.write_video(clips.demo_frames(1500, size=(320, 240)), tmp_path_factory.mktemp("v") / "long.avi")


def default_signals() -> None:
    """In the child: the default disposition of SIGINT and SIGTERM, whatever the test runner's
    shell gave us (``cmd &`` in a script, and some CI runners start with SIGINT ignored,
    and a child inherits that)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start(*args, cwd=ROOT, backend=None):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **({"KERAS_BACKEND": backend} if backend else {})}
    return subprocess.Popen(
        [PYTHON, *map(str, args)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=default_signals,
    )


def wait_for(condition, timeout: float = 90.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out waiting"
        time.sleep(0.1)


# --------------------------------------------------------------------------- outputs over inputs


def test_output_named_like_the_source_is_refused_and_the_source_kept(model_path, long_clip, capsys):
    before = digest(long_clip)
    with pytest.raises(SystemExit) as stopped:
        realtime.main(
            ["--source", str(long_clip), "--no-display", "--output", str(long_clip), "--model", str(model_path)]
        )
    assert stopped.value.code == 2
    assert "would destroy the input" in capsys.readouterr().err
    assert digest(long_clip) == before


def test_a_json_log_is_refused_before_any_work_with_the_name_to_use(model_path, tmp_path, capsys):
    # The rows are JSON lines; a .json name promised a document that json.load could not read.
    import analyze

    for run, argv in (
        (realtime.main, ["--source", "demo", "--no-display", "--max-frames", "3"]),
        (analyze.main, [str(ROOT / "models" / "grace_hopper.jpg"), "--quiet"]),
    ):
        with pytest.raises(SystemExit) as stopped:
            run([*argv, "--model", str(model_path), "--log", str(tmp_path / "faces.json")])
        line = usage_error(capsys.readouterr().err)
        assert stopped.value.code == 2 and "JSON lines" in line and "name it faces.jsonl" in line
    assert list(tmp_path.iterdir()) == []
    # The writers behind them, used from Python, refuse such a name too (they wrote CSV into it).
    from ferkit.analyze import ResultTable
    from ferkit.errors import SourceError
    from ferkit.facelog import FaceLog

    for writer in (FaceLog, ResultTable):
        with pytest.raises(SourceError, match="must be named .csv or .jsonl or .ndjson"):
            writer(str(tmp_path / "faces.json"), ["happy"])
    assert list(tmp_path.iterdir()) == []


def test_a_log_that_links_to_the_video_output_is_refused(model_path, tmp_path, capsys):
    # The suffixes keep --output and --log apart by name; a link is how one path can be both.
    (tmp_path / "log.csv").symlink_to(tmp_path / "out.avi")
    with pytest.raises(SystemExit) as stopped:
        realtime.main(
            [
                "--source",
                "demo",
                "--no-display",
                "--model",
                str(model_path),
                "--output",
                str(tmp_path / "out.avi"),
                "--log",
                str(tmp_path / "log.csv"),
            ]
        )
    assert stopped.value.code == 2
    assert "--output and --log both name" in usage_error(capsys.readouterr().err)
    assert not (tmp_path / "out.avi").exists()


def test_annotated_copies_over_a_source_photo_are_refused_and_the_photos_kept(model_path, tmp_path, capsys):
    import analyze

    photos = tmp_path / "photos"
    photos.mkdir()
    for i, frame in enumerate(clips.demo_frames(2)):
        cv2.imwrite(str(photos / f"p{i}.jpg"), frame)
    before = {p.name: digest(p) for p in photos.iterdir()}
    # Copies are named after their sources: the photo's own folder would take p0.jpg's copy.
    for argv, named, error_line in (
        ([str(photos / "p0.jpg"), "--annotate", str(photos)], "over the source image", one_error_line),
        ([str(photos), "--annotate", str(photos)], "is also the source", usage_error),
    ):
        with pytest.raises(SystemExit) as stopped:
            analyze.main([*argv, "--model", str(model_path), "--quiet"])
        assert stopped.value.code == 2 and named in error_line(capsys.readouterr().err)
    # realtime.py writes NAME, NAME_1, ... for a folder of images: not among the sources.
    with pytest.raises(SystemExit) as stopped:
        realtime.main(["--source", str(photos), "--no-display", "--output", str(photos / "p0.jpg")])
    assert stopped.value.code == 2 and "inside the --source folder" in usage_error(capsys.readouterr().err)
    assert {p.name: digest(p) for p in photos.iterdir()} == before


def test_a_run_that_fails_before_its_first_image_leaves_no_table_and_no_mark(model_path, tmp_path, monkeypatch):
    import analyze
    from ferkit.recognizer import Recognizer

    def broken(self, frames):
        raise RuntimeError("the model failed")

    monkeypatch.setattr(Recognizer, "batch", broken)
    photo = ROOT / "models" / "grace_hopper.jpg"
    argv = [str(photo), "--model", str(model_path), "--quiet", "--log", str(tmp_path / "t.csv")]
    with pytest.raises(RuntimeError):
        analyze.main([*argv, "--annotate", str(tmp_path / "copies")])
    assert list(tmp_path.iterdir()) == []  # so the same command can run again once the cause is fixed


def test_files_that_are_no_images_are_one_error_not_an_empty_table(model_path, tmp_path, capsys):
    import analyze

    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    with pytest.raises(SystemExit) as stopped:
        analyze.main([str(notes), "--model", str(model_path), "--quiet", "--log", "-"])
    printed = capsys.readouterr()
    assert stopped.value.code == 2 and "could be read" in one_error_line(printed.err)
    assert printed.out == ""  # not even the CSV header: a table with no image read is no table
    (tmp_path / "clip.mp4").write_bytes(b"\0" * 100)
    with pytest.raises(SystemExit) as stopped:  # a video is pointed to the script that reads videos
        analyze.main([str(tmp_path / "clip.mp4"), "--model", str(model_path), "--quiet"])
    assert "is a video; this command reads photos: python realtime.py --source" in one_error_line(
        capsys.readouterr().err
    )
    # Among photos (a shell's DCIM/*), a clip is left out with a note and the photos are read.
    photo = ROOT / "models" / "grace_hopper.jpg"
    summary = analyze.main([str(tmp_path / "clip.mp4"), str(photo), "--model", str(model_path), "--quiet"])
    assert summary["images"] == 1 and "note: left out 1 video(s)" in capsys.readouterr().err
    (tmp_path / "clip.mp4").unlink()
    for _ in range(2):  # and no file is left behind, so the same command can run again
        with pytest.raises(SystemExit) as stopped:
            analyze.main([str(notes), "--model", str(model_path), "--quiet", "--log", str(tmp_path / "t.csv")])
        assert stopped.value.code == 2 and "could be read" in one_error_line(capsys.readouterr().err)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(SystemExit):
        realtime.main(["--source", str(tmp_path / "empty.jpg"), "--no-display", "--model", str(model_path)])
    err = capsys.readouterr().err  # said once: an error, not a warning about the same file above it
    assert f"{tmp_path / 'empty.jpg'} is empty (0 bytes); copy or download it again" in one_error_line(err)
    assert "warning:" not in err


def test_the_light_runtime_names_what_it_lacks_before_any_work(model_path, tmp_path, monkeypatch, capsys):
    """Without matplotlib (--report) or Keras (a .keras model): one error naming the install."""
    import builtins
    import importlib.util

    from ferkit.errors import ModelFileError
    from ferkit.modelfile import load_model

    real_import, real_find_spec = builtins.__import__, importlib.util.find_spec

    def no_keras(name, *args, **kwargs):
        if name.split(".")[0] == "keras":
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_keras)
    with pytest.raises(ModelFileError, match="needs Keras and TensorFlow .* export.py"):
        load_model(model_path)
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real_find_spec(name, *a)
    )
    with pytest.raises(SystemExit) as stopped:
        realtime.main(["--source", "demo", "--no-display", "--report", str(tmp_path / "report")])
    assert stopped.value.code == 2 and "pip install matplotlib" in usage_error(capsys.readouterr().err)
    assert not (tmp_path / "report").exists()
    monkeypatch.undo()
    monkeypatch.chdir(ROOT)
    with pytest.raises(ModelFileError, match="not found; .*the shipped model is models/fer_cnn.onnx"):
        load_model(tmp_path / "fer.onnx")  # as typed from the checkout
    monkeypatch.chdir(tmp_path)  # from elsewhere, a path that leads there
    with pytest.raises(ModelFileError, match=f"the shipped model is {re.escape(str(DEFAULT_MODEL_PATH))}"):
        load_model(tmp_path / "fer.onnx")
    # The scripts that read .keras files alone say so, and name the shipped .keras file.
    for script, argv in ((export_script, ["nope.keras"]), (ensemble, ["a.keras", "b.keras"])):
        with pytest.raises(SystemExit) as stopped:
            script.main(argv)
        line = one_error_line(capsys.readouterr().err)
        assert stopped.value.code == 2 and "give the path of a saved .keras model" in line
        assert f"the shipped model is {KERAS_MODEL_PATH}" in line


def test_ensemble_out_naming_a_member_is_refused(model_path, tmp_path, capsys):
    other = save_model(build_model(arch="vgg"), tmp_path / "b.keras")
    before = digest(model_path)
    with pytest.raises(SystemExit) as stopped:
        ensemble.main([str(model_path), str(other), "--out", str(model_path)])
    assert stopped.value.code == 2 and "is also the 1st model to average" in capsys.readouterr().err
    assert digest(model_path) == before


def test_a_genetic_search_does_not_replace_earlier_results_unless_asked(tmp_path, capsys):
    # The default folders hold the shipped report and plots; a short trial run replaced them.
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "ga_report.json").write_text("{}")
    argv = ["--models-dir", str(tmp_path / "m"), "--plots-dir", str(tmp_path / "p")]
    started = time.time()
    with pytest.raises(SystemExit) as stopped:
        ga_select.main(argv)
    err = capsys.readouterr().err
    assert stopped.value.code == 2 and time.time() - started < 5
    assert "ga_report.json exists" in err and "--overwrite" in err
    assert ga_select.parse_args([*argv, "--overwrite"]).overwrite
    assert (tmp_path / "m" / "ga_report.json").read_text() == "{}"


# --------------------------------------------------------------------------- interruptions


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_a_video_run_leaves_a_playable_video_and_the_full_log(model_path, long_clip, tmp_path, sig):
    out, log = tmp_path / "out.mp4", tmp_path / "faces.csv"
    run = start(
        "realtime.py",
        "--source",
        long_clip,
        "--no-display",
        "--output",
        out,
        "--log",
        log,
        "--model",
        model_path,
        "--quiet",
    )
    partial_log = lambda: [p for p in tmp_path.glob(".faces.partial-*.csv")]  # noqa: E731
    wait_for(lambda: partial_log() and len(partial_log()[0].read_text().splitlines()) > 20)
    run.send_signal(sig)
    _, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    said = re.search(r"interrupted after (\d+) frames", one_error_line(err))
    capture = cv2.VideoCapture(str(out))
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    ok, _ = capture.read()
    assert ok and 20 <= frames < 1500  # finalised: readable, with the frames up to the signal
    rows = log.read_text().splitlines()
    assert len(rows) > 20 and rows[-1].count(",") == rows[0].count(",")  # nothing cut off
    # The video, the log and the message agree on where it stopped (the log was once a frame ahead
    # of the video when the signal came between the two writes).
    assert said and int(said.group(1)) == frames == int(rows[-1].split(",")[0]) + 1
    assert not list(tmp_path.glob(".*partial*"))


def test_a_signal_inside_held_writes_stops_the_work_after_them(python_ctrl_c):
    from ferkit.interrupts import interrupts_held

    done = []
    with pytest.raises(KeyboardInterrupt), interrupts_held():
        signal.raise_signal(signal.SIGINT)
        done.append("the writes after the signal")
    assert done == ["the writes after the signal"]
    with pytest.raises(KeyboardInterrupt), interrupts_held():  # a second one acts at once
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
        done.append("not reached")
    assert done == ["the writes after the signal"]
    with pytest.raises(OSError, match="disk full"), interrupts_held():  # the real error, not 'interrupted'
        signal.raise_signal(signal.SIGINT)
        raise OSError("disk full")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    with interrupts_held():
        signal.raise_signal(signal.SIGINT)  # ignored before the block: still ignored after it
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_ctrl_c_while_keras_and_a_model_load_is_not_lost_in_a_garbage_collection_hook(model_path):
    # JAX (which Keras imports where it is installed) hooks Python's garbage collector; a Ctrl-C
    # that arrived while that hook ran was lost: the script went on to the end, exit code 0, its
    # outputs replaced. Here a hook of our own raises the signal inside a collection, during the
    # import of Keras and then during the model's load.
    script = (
        "import gc, signal, sys\n"
        "from ferkit import cli\n"
        "from ferkit.modelfile import load_model\n"
        "phase = sys.argv[1]\n"
        "armed = []\n"
        "def hook(step, info):\n"
        "    if armed == [True]:\n"
        "        armed.append('fired'); signal.raise_signal(signal.SIGINT)\n"
        "gc.callbacks.append(hook)\n"
        "def work():\n"
        "    if phase == 'import': armed.append(True)\n"
        "    cli.import_keras_quietly('this test')\n"
        "    if phase == 'load': armed.append(True)\n"
        "    load_model(sys.argv[2]); gc.collect()\n"
        "    print('finished', armed)\n"
        "cli.run_main(work)\n"
    )
    for phase in ("import", "load"):
        run = subprocess.run(
            [sys.executable, "-c", script, phase, str(model_path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 130 and "finished" not in run.stdout, (phase, run.stdout, run.stderr[-2000:])
        assert one_error_line(run.stderr) == "error: interrupted"


@pytest.mark.cost(42)
def test_ctrl_c_stops_the_ga_worker_pool_promptly(tmp_path):
    script = (
        "import numpy as np\n"
        "from ferkit import cli, ga\n"
        "rng = np.random.default_rng(0); y = rng.integers(0, 3, 3000)\n"
        "x = rng.normal(size=(3000, 300)).astype(np.float32); x[:, :5] += y[:, None]\n"
        "config = ga.GAConfig(population=40, generations=500, patience=500, jobs=2, trees=64, max_samples=0.9,"
        " max_features=100)\n"
        "cli.run_main(ga.run_ga, x, y, config)\n"
    )
    run = start("-c", script)
    wait_for(lambda: run.stdout.readline().startswith("generation"))
    run.send_signal(signal.SIGINT)
    stopped = time.time()
    _, err = run.communicate(timeout=30)
    assert time.time() - stopped < 15
    assert run.returncode == 130
    assert "interrupted in generation" in one_error_line(err)


def _train_args(data, out):
    return [
        "train_cnn.py",
        "--data",
        data,
        "--models-dir",
        out,
        "--plots-dir",
        out,
        "--cache-dir",
        out / "cache",
        "--batch-size",
        "32",
        *TINY,
        "--augment",
        "--epochs",
        "4",
        "--name",
        "t",
    ]


@pytest.mark.cost(105)
@pytest.mark.parametrize("backend", ["tensorflow", "torch"])
def test_training_killed_and_resumed_matches_the_uninterrupted_run(backend, training_dir, tmp_path):
    """On TensorFlow (the default) and on PyTorch, the backend that trains the wide network fastest
    on CPUs without bf16 (benchmarks/backend_speed.py; issue 20's long run trains on it)."""
    pytest.importorskip(backend)
    # The timeouts only stop a hung run: on a 2-core AVX2-only machine beside a long training, a
    # niced run of this test passed 300 s in one part (the whole test takes 288 s at full priority).
    whole = start(*_train_args(training_dir, tmp_path / "whole"), backend=backend)
    assert whole.wait(timeout=900) == 0, whole.stderr.read()
    expected = json.loads((tmp_path / "whole" / "t_metrics.json").read_text())["history"]

    killed_dir = tmp_path / "killed"
    state = killed_dir / "checkpoints" / "t" / "state.json"
    killed = start(*_train_args(training_dir, killed_dir), backend=backend)
    wait_for(lambda: state.exists() and json.loads(state.read_text())["epoch"] >= 2, timeout=900)
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=30)
    resumed = start(*_train_args(training_dir, killed_dir), backend=backend)
    out, err = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, err
    assert "resuming" in out
    history = json.loads((killed_dir / "t_metrics.json").read_text())["history"]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        np.testing.assert_allclose(history[key], expected[key], rtol=1e-4, atol=1e-5, err_msg=key)


# --------------------------------------------------------------------------- damaged and unwritable places


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_damaged_image_cache_is_named_set_aside_and_rebuilt(kaggle_dir, cache_dir, damage):
    first = load_dataset(kaggle_dir, cache_dir=cache_dir, progress=False)
    (cache_file,) = cache_dir.glob("fer-*.npz")
    data = bytearray(cache_file.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    cache_file.write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = load_dataset(kaggle_dir, cache_dir=cache_dir, progress=False)
    np.testing.assert_array_equal(again.train.x, first.train.x)
    assert any(cache_file.name in str(w.message) and "damaged" in str(w.message) for w in caught)  # zip's CRC
    assert (cache_dir / f"{cache_file.name}.damaged").exists()


def test_unwritable_cache_means_running_without_one(kaggle_dir, tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder would go")
    with pytest.warns(UserWarning, match="going on without it"):
        data = load_dataset(kaggle_dir, cache_dir=blocker / "cache", progress=False)
    assert len(data.train) == 84


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["train_cnn.py", "--models-dir", "{file}"], "--models-dir"),
        (["train_cnn.py", "--plots-dir", "{file}/sub"], "--plots-dir"),
        (["realtime.py", "--source", "demo", "--no-display", "--output", "{dir}/out.xyz"], "--output"),
        (["realtime.py", "--source", "demo", "--no-display", "--output", "{file}/out.mp4"], "--output"),
        (["realtime.py", "--source", "demo", "--no-display", "--log", "{dir}"], "--log"),
        (["realtime.py", "--source", "demo", "--no-display", "--report", "{file}"], "--report"),
        (["evaluate.py", "--json", "{file}/r.json"], "--json"),
        (["ga_select.py", "--plots-dir", "{file}"], "--plots-dir"),
        (["train_cnn.py", "--cache-dir", "{file}"], "--cache-dir"),
        (["evaluate.py", "--cache-dir", "{file}"], "--cache-dir"),
    ],
)
def test_output_places_that_cannot_be_written_fail_before_any_work(tmp_path, capsys, argv, flag):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    argv = [a.format(file=blocker, dir=tmp_path) for a in argv]
    main = {
        "train_cnn.py": train_cnn.main,
        "realtime.py": realtime.main,
        "evaluate.py": evaluate.main,
        "ga_select.py": ga_select.main,
    }[argv[0]]
    started = time.time()
    with pytest.raises(SystemExit) as stopped:
        main(argv[1:])
    assert stopped.value.code == 2 and time.time() - started < 5
    assert flag in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_models_folder_fails_before_training(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    with pytest.raises(SystemExit):
        train_cnn.main(["--models-dir", str(folder)])
    assert "not writable" in capsys.readouterr().err


# --------------------------------------------------------------------------- settings and models


@pytest.mark.parametrize(
    "main, argv, flag",
    [
        (train_cnn.main, ["--epochs", "0"], "--epochs"),
        (train_cnn.main, ["--batch-size", "-4"], "--batch-size"),
        (train_cnn.main, ["--lr", "0"], "--lr"),
        (train_cnn.main, ["--label-smoothing", "1"], "--label-smoothing"),
        (train_cnn.main, ["--val-fraction", "1.5"], "--val-fraction"),
        (train_cnn.main, ["--limit", "3"], "--limit"),
        (train_cnn.main, ["--name", "a/b"], "--name"),
        (train_cnn.main, ["--name", "mine.keras"], "--name mine writes mine.keras"),
        (train_cnn.main, ["--preset", "wide", "--plateau-on", "accuracy"], "add --schedule plateau"),
        (train_cnn.main, ["--width", "32"], "this run's --arch is seed: add --arch wide"),
        (train_cnn.main, ["--preset", "fast", "--width", "32"], "--arch is vgg (--preset fast sets it)"),
        (train_cnn.main, ["--cpu-devices", "2"], "add --distribute"),
        (train_cnn.main, ["--width=32"], "add --arch wide"),  # the --flag=VALUE spelling counts as given too
        (train_cnn.main, ["--arch=seed", "--preset", "wide", "--width", "32"], "--arch is seed: add --arch wide"),
        (train_cnn.main, ["--width", "4"], "--width must be between 8 and 128"),  # the value first, then the pairing
        (realtime.main, ["--smooth", "0"], "--smooth"),
        (realtime.main, ["--detect-scale", "2"], "--detect-scale"),
        (realtime.main, ["--max-frames", "-1"], "--max-frames"),
        (realtime.main, ["--score-threshold", "1.5"], "--score-threshold"),
        (realtime.main, ["--min-face", "0"], "--min-face"),
        (ga_select.main, ["--population", "2"], "--population"),
        (ga_select.main, ["--mutation", "2"], "--mutation"),
        (ga_select.main, ["--seeds", "0"], "--seeds"),
        (ga_select.main, ["--size", "50"], "--size"),
        (ga_select.main, ["--max-features", "8"], "--max-features"),
        (ga_select.main, ["--train-limit", "-1"], "--train-limit"),
    ],
)
def test_out_of_range_settings_are_refused_at_parse_time(capsys, main, argv, flag):
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2
    assert flag in capsys.readouterr().err.splitlines()[-1]


def test_misspelt_flags_and_replacing_an_existing_model_are_refused(training_dir, model_path, capsys):
    with pytest.raises(SystemExit) as stopped:
        train_cnn.main(["--data", str(training_dir), "--epoch", "3"])  # argparse would have taken it as --epochs
    assert stopped.value.code == 2 and "unrecognized arguments: --epoch" in capsys.readouterr().err
    before = digest(model_path)
    with pytest.raises(SystemExit) as stopped:
        train_cnn.main(["--data", str(training_dir), "--models-dir", str(model_path.parent), "--name", "m"])
    assert stopped.value.code == 2 and "--overwrite" in capsys.readouterr().err
    assert digest(model_path) == before


def test_models_of_another_shape_or_class_count_get_one_clear_message(tmp_path, kaggle_dir, capsys):
    import keras

    wide = keras.Sequential([keras.Input((64, 64, 1)), keras.layers.Flatten(), keras.layers.Dense(7, "softmax")])
    five = keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Flatten(), keras.layers.Dense(5, "softmax")])
    wide_path = save_model(wide, tmp_path / "wide.keras")
    five_path = save_model(five, tmp_path / "five.keras", ("a", "b", "c", "d", "e"))
    for main, argv, message in (
        (realtime.main, ["--source", "demo", "--no-display", "--model", str(wide_path)], "takes inputs of shape"),
        (
            realtime.main,
            ["--source", "demo", "--no-display", "--detector", "haar", "--cascade", str(wide_path)],
            "cannot load Haar cascade",
        ),
        (
            evaluate.main,
            ["--model", str(five_path), "--data", str(kaggle_dir), "--cache-dir", str(tmp_path)],
            "labels 5",
        ),
    ):
        with pytest.raises(SystemExit) as stopped:
            main(argv)
        assert stopped.value.code == 2
        assert message in one_error_line(capsys.readouterr().err)


def test_folder_with_an_unreadable_and_a_16_bit_image_runs_the_rest(model_path, tmp_path, capsys):
    frame = next(clips.demo_frames(1))
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(tmp_path / "a.png"), frame)
    cv2.imwrite(str(tmp_path / "b16.png"), frame.astype(np.uint16) * 257)
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(np.dstack([grey, np.full_like(grey, 255)]), "LA").save(tmp_path / "d_grey_alpha.png")
    cv2.imwrite(str(tmp_path / "e_bgra.png"), cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(tmp_path / "f_hdr.tiff"), frame.astype(np.float32) * 4)  # floats up to 1020
    (tmp_path / "c.jpg").write_bytes(b"not an image")
    out = tmp_path / "out" / "annotated.jpg"
    summary = realtime.main(
        ["--source", str(tmp_path), "--no-display", "--model", str(model_path), "--output", str(out)]
    )
    # The 16-bit, grey + alpha and BGRA files are read as the 8-bit one is.
    assert summary["frames"] == 4 and summary["faces"] == 4
    err = capsys.readouterr().err
    assert "skipped an image:" in err and "c.jpg is not an image" in err and err.count("c.jpg") == 1
    assert "f_hdr.tiff: float pixels range over [0, 1020]" in err  # the reason, not a silent clip
    assert out.exists() and (out.parent / "annotated_3.jpg").exists()


def test_a_missing_image_in_the_python_api_is_one_clear_error(model_path):
    import ferkit

    recognizer = ferkit.Recognizer(model_path)
    with pytest.raises(ferkit.SourceError, match="cv2.imread returns None"):
        recognizer(cv2.imread("no/such/photo.jpg"))


def test_a_foreign_weights_file_is_named_in_one_short_line(model_path, tmp_path, capsys):
    import keras

    from ferkit.errors import FeatureError
    from ferkit.features import load_xception

    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    other.save_weights(tmp_path / "other.weights.h5")
    with pytest.raises(FeatureError, match="is not an Xception no-top weights file") as refused:
        load_xception(str(tmp_path / "other.weights.h5"), 71)
    assert len(str(refused.value)) < 400 and "download" not in str(refused.value)
    # A model file, and a folder holding the weights, are named for what they are before Keras is asked.
    with pytest.raises(FeatureError, match="is a saved model .* not Xception's ImageNet weights"):
        load_xception(str(model_path), 71)
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "xception_notop.weights.h5").write_bytes(b"")
    with pytest.raises(SystemExit) as refused:
        ga_select.parse_args(["--weights", str(tmp_path / "w"), "--models-dir", str(tmp_path / "m")])
    err = capsys.readouterr().err
    assert refused.value.code == 2 and "is a folder; give the weights file itself" in err
    assert str(tmp_path / "w" / "xception_notop.weights.h5") in err


def test_why_the_weights_failed_is_said_whole_words_or_by_type():
    from ferkit.features import _reason

    assert _reason(Exception()) == "Exception, no message"  # a failed download said only "(Exception)"
    long = Exception("File format not supported: filepath=x.onnx. Keras 3 only supports V3 `.keras` files " * 3)
    assert _reason(long).endswith(" ...") and len(_reason(long)) <= 164
    assert _reason(long)[:-4] == str(long)[: len(_reason(long)) - 4]  # a cut at a word, not inside one
    assert _reason(OSError("[Errno -3] Temporary failure in name resolution\nmore")) == (
        "[Errno -3] Temporary failure in name resolution"
    )


def test_a_model_path_that_is_no_model_says_what_it_is(tmp_path):
    from ferkit.errors import ModelFileError

    (tmp_path / "photo.jpg").write_bytes(b"\xff\xd8\xff\xe0 a photo")
    (tmp_path / "old.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
    (tmp_path / "folder.onnx").mkdir()
    for path, why in (
        (tmp_path / "photo.jpg", "is not a model file; give a saved .onnx or .keras model"),
        (tmp_path / "old.h5", "is a Keras 2 (HDF5) model"),
        (tmp_path / "folder.onnx", "is a folder; give a saved model file"),
    ):
        with pytest.raises(ModelFileError, match=re.escape(why)):
            load_model(path)


@pytest.mark.parametrize(
    "main, argv, hint",
    [
        (evaluate.main, ["models/fer_cnn.keras"], "give the model as --model models/fer_cnn.keras"),
        (ensemble.main, ["--model", "a.keras", "b.keras"], "give the model files without --model: "),
        (export_script.main, ["--model", "a.keras"], "give the model file without --model: "),
        (ensemble.main, ["--tta", "a.keras", "b.keras"], "--tta took the model file after it as its value"),
    ],
)
def test_a_model_file_given_the_other_scripts_way_gets_the_spelling_this_one_takes(capsys, main, argv, hint):
    # evaluate.py takes --model, export.py and ensemble.py the files alone: argparse said only
    # "unrecognized arguments" or "invalid choice: 'a.keras'".
    with pytest.raises(SystemExit) as stopped:
        main(argv)
    assert stopped.value.code == 2 and hint in capsys.readouterr().err
