"""A hostile-input and fault sweep over the scripts and the Python API, as a careless user would
run them: paths, files, CSVs, numbers, outputs, signals, concurrency and API inputs.

    python tools/hostile_sweep.py [--keep] [--timeout-scale 3]

Builds a scratch folder (small generated dataset, models, clips, damaged files), runs each case
as a subprocess with a time limit, and prints one row per case: what was done, the exit code,
the seconds, and the verdict. A case passes when it ends as expected: a refusal is a non-zero
exit with exactly one "error:" line and no traceback; a success exits 0; nothing hangs; and the
inputs named in the case are unchanged afterwards. Not run by CI (minutes of subprocesses).
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from ferkit.paths import PROJECT_DIR

ROOT = PROJECT_DIR
CLASSES = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
WEIGHTS = ROOT.parent / "shared" / "weights" / "xception_imagenet_notop.weights.h5"


def make_dataset(root: Path, per_class: int = 10) -> Path:
    rng = np.random.default_rng(0)
    for split, prefix, n in (("train", "Training", per_class), ("test", "PublicTest", 3), ("test", "PrivateTest", 3)):
        for c, name in enumerate(CLASSES):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                image = rng.integers(0, 80, (48, 48), dtype=np.uint8)
                image[5 * c : 5 * c + 6, 4:-4] = 220
                cv2.imwrite(str(folder / f"{prefix}_{c}{i:03d}.jpg"), image)
    return root


def sha(path: Path) -> str:
    if path.is_dir():
        return hashlib.sha256(b"".join(sha(p).encode() for p in sorted(path.rglob("*")) if p.is_file())).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else "absent"


class Sweep:
    def __init__(self, scratch: Path, always_keep=(), timeout_scale: float = 1.0):
        self.scratch, self.rows, self.always_keep = scratch, [], list(always_keep)
        self.timeout_scale = timeout_scale  # a busy machine (a training beside it) needs longer

    def run(self, name: str, args: list, expect: str, keep=(), timeout: float = 240, signal_after=None, check=None):
        """expect: 'ok' (exit 0), 'refused' (non-zero, one error line), 'interrupted' (130)."""
        keep = [*keep, *self.always_keep]
        timeout *= self.timeout_scale
        before = {p: sha(Path(p)) for p in keep}
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        command = [sys.executable, *map(str, args)]
        started = time.time()
        # A shell's background job ignores SIGINT and its children inherit that; a user's
        # foreground run does not, so give each case the default disposition back.
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        hung = False
        try:
            if signal_after:
                sig, condition = signal_after
                deadline = time.time() + timeout
                takes_proc = len(inspect.signature(condition).parameters) == 1
                while (
                    not (condition(proc) if takes_proc else condition())
                    and proc.poll() is None
                    and time.time() < deadline
                ):
                    time.sleep(0.1)
                proc.send_signal(sig)
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            hung = True
        seconds = time.time() - started
        errors = [line for line in err.splitlines() if "error:" in line]
        traceback = "Traceback" in err
        changed = [p for p in keep if sha(Path(p)) != before[p]]
        if hung:
            verdict = "HUNG"
        elif traceback:
            verdict = "TRACEBACK"
        elif changed:
            verdict = f"INPUT CHANGED {changed}"
        elif expect == "ok":
            verdict = "pass" if proc.returncode == 0 else f"FAILED rc {proc.returncode}"
        elif expect == "killed":
            verdict = "pass" if proc.returncode == -signal.SIGKILL else f"rc {proc.returncode}"
        elif expect == "interrupted":
            verdict = "pass" if proc.returncode == 130 and len(errors) == 1 else f"rc {proc.returncode}"
        else:
            verdict = "pass" if proc.returncode not in (0, None) and len(errors) == 1 else f"rc {proc.returncode}"
        if verdict == "pass" and check is not None:
            problem = check()
            verdict = "pass" if not problem else f"WRONG: {problem}"
        message = errors[0].split("error:", 1)[1].strip() if errors else (out.strip().splitlines() or [""])[-1]
        self.rows.append((name, proc.returncode, seconds, verdict, message))
        print(
            f"{len(self.rows):3d} {verdict:<10} rc {proc.returncode!s:>4} {seconds:6.1f}s  {name}: {message[:150]}",
            flush=True,
        )


def playable(path: Path, least: int = 1):
    capture = cv2.VideoCapture(str(path))
    ok, _ = capture.read()
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    return None if ok and frames >= least else f"{path.name} unreadable ({frames} frames)"


def log_has_rows(folder: Path, name: str, rows: int):
    """A condition: the log a running realtime.py writes under its partial name has over ``rows`` rows."""

    def condition() -> bool:
        partial = list(folder.glob(f".{name}.partial-*.csv"))
        return bool(partial) and len(partial[0].read_text().splitlines()) > rows

    return condition


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    p.add_argument("--timeout-scale", type=float, default=1.0, help="multiply every case's time limit (a busy machine)")
    p.add_argument(
        "--part",
        choices=("all", "first", "second"),
        default="all",
        help="first: the scripts' original cases; second: numbers, CSVs, photo folders, the checkpoint folder, "
        "API images, signals and a second run",
    )
    args = p.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="fer-sweep-"))
    shipped = [
        ROOT / "models" / name
        for name in ("fer_cnn.keras", "fer_cnn.onnx", "fer_cnn.int8.onnx", "fer_cnn_metrics.json")
    ]
    s = Sweep(scratch, always_keep=shipped, timeout_scale=args.timeout_scale)  # no case may touch the shipped model
    data = make_dataset(scratch / "data")
    cache = scratch / "cache"
    out = scratch / "out"
    blocker = scratch / "a_file"
    blocker.write_text("not a folder")
    common = ["--data", data, "--cache-dir", cache]

    import keras

    from ferkit import clips, video
    from ferkit.modelfile import save_model
    from ferkit.networks import build_model

    keras.utils.set_random_seed(0)
    model = save_model(build_model(arch="vgg"), scratch / "vgg.keras")
    other = save_model(build_model(arch="vgg"), scratch / "vgg2.keras")
    wide = save_model(
        keras.Sequential([keras.Input((64, 64, 1)), keras.layers.Flatten(), keras.layers.Dense(7, "softmax")]),
        scratch / "wide.keras",
    )
    five = save_model(
        keras.Sequential([keras.Input((48, 48, 1)), keras.layers.Flatten(), keras.layers.Dense(5, "softmax")]),
        scratch / "five.keras",
        ("a", "b", "c", "d", "e"),
    )
    (scratch / "text.keras").write_text("hello")
    (scratch / "cut.keras").write_bytes(model.read_bytes()[:5000])
    clip = video.write_video(clips.demo_frames(60), scratch / "clip.avi")
    long_clip = video.write_video(clips.demo_frames(1500, size=(320, 240)), scratch / "long.avi")
    (scratch / "broken.mp4").write_bytes(b"\0" * 2000)
    photos = scratch / "photos"
    photos.mkdir()
    frame = next(clips.demo_frames(1))
    cv2.imwrite(str(photos / "a.jpg"), frame)
    cv2.imwrite(str(photos / "b16.png"), frame.astype(np.uint16) * 257)
    (photos / "c.jpg").write_bytes(b"junk")
    bad_photos = scratch / "bad_photos"
    bad_photos.mkdir()
    (bad_photos / "x.jpg").write_bytes(b"junk")
    (scratch / "empty").mkdir()
    unknown = make_dataset(scratch / "unknown_class", 2)
    (unknown / "train" / "bored").mkdir()
    cv2.imwrite(str(unknown / "train" / "bored" / "Training_x.jpg"), np.zeros((48, 48), np.uint8))
    (scratch / "header.csv").write_text("a,b\n1,2\n")
    (scratch / "code.csv").write_text("emotion,pixels,Usage\n9," + " ".join(["0"] * 2304) + ",Training\n")
    (scratch / "pixels.csv").write_text("emotion,pixels,Usage\n1,0 0 0,Training\n")
    (scratch / "yunet_bad.onnx").write_bytes(b"\0" * 1000)
    np.savez(scratch / "float.npz", x=np.zeros((3, 48, 48), np.float32), y=np.zeros(3, int))
    (scratch / "cut.npz").write_bytes((scratch / "float.npz").read_bytes()[:40])
    inputs = [data, model, clip]

    if args.part in ("all", "first"):
        T = "train_cnn.py"
        places = ["--models-dir", out, "--plots-dir", out, "--cache-dir", cache]
        tiny = [*common, "--models-dir", out, "--plots-dir", out, "--batch-size", "16", "--arch", "vgg"]
        s.run("train: data path missing", [T, "--data", scratch / "nope", *places], "refused")
        s.run("train: data is a .txt file", [T, "--data", blocker, *places], "refused")
        s.run("train: data folder empty", [T, "--data", scratch / "empty", *places], "refused")
        s.run("train: unknown class folder", [T, "--data", unknown, *places], "refused")
        s.run("train: csv without the columns", [T, "--data", scratch / "header.csv", *places], "refused")
        s.run("train: csv emotion code 9", [T, "--data", scratch / "code.csv", *places], "refused")
        s.run("train: csv row of 3 pixels", [T, "--data", scratch / "pixels.csv", *places], "refused")
        for flag, value in (
            ("--epochs", "0"),
            ("--epochs", "-3"),
            ("--batch-size", "0"),
            ("--lr", "-1"),
            ("--lr-factor", "1.5"),
            ("--label-smoothing", "1"),
            ("--limit", "2"),
            ("--val-fraction", "0"),
            ("--min-lr", "-1"),
            ("--lr-patience", "0"),
            ("--mixup", "-1"),
            ("--weight-decay", "2"),
            ("--warmup-epochs", "-1"),
            ("--cpu-devices", "-2"),
            ("--augment", "heavy"),
            ("--preset", "turbo"),
        ):
            s.run(f"train: {flag} {value}", [T, *common, *places, flag, value], "refused")
        s.run("train: .npz of float faces", [T, "--data", scratch / "float.npz", *places], "refused")
        s.run("train: .npz cut short", [T, "--data", scratch / "cut.npz", *places], "refused")
        s.run(
            "train: warm-up as long as the run",
            [T, *common, *places, "--epochs", "2", "--warmup-epochs", "2"],
            "refused",
        )
        s.run(
            "train: global batch 33 on 2 devices",
            [T, *tiny, "--name", "d", "--batch-size", "33", "--distribute", "--cpu-devices", "2"],
            "refused",
        )
        s.run(
            "train: 2 devices, 1 epoch, from disk",
            [T, *tiny, "--name", "d2", "--epochs", "1", "--distribute", "--cpu-devices", "2", "--stream"],
            "ok",
            inputs,
            check=lambda: None if (out / "d2.keras").exists() else "no model",
        )
        s.run("train: --name with a folder", [T, *common, *places, "--name", "x/y"], "refused")
        s.run("train: --arch unknown", [T, *common, *places, "--arch", "resnet"], "refused")
        s.run("train: misspelt flag --epoch", [T, *common, *places, "--epoch", "3"], "refused")
        s.run("train: default name would replace the shipped model", [T, *common, "--epochs", "1"], "refused")
        s.run("train: --models-dir is a file", [T, *common, "--models-dir", blocker], "refused")
        s.run("train: --plots-dir under a file", [T, *common, "--plots-dir", blocker / "p"], "refused")
        s.run("train: --checkpoint-dir under a file", [T, *common, "--checkpoint-dir", blocker / "c"], "refused")
        s.run("train: --init-from missing", [T, *tiny, "--init-from", scratch / "none.keras"], "refused")
        s.run("train: --init-from a text file", [T, *tiny, "--init-from", scratch / "text.keras"], "refused", [model])
        s.run("train: --init-from other arch", [T, *tiny, "--arch", "seed", "--init-from", model], "refused", [model])
        s.run("train: --teacher missing", [T, *tiny, "--teacher", scratch / "none.keras"], "refused")
        s.run("train: --teacher a text file", [T, *tiny, "--teacher", scratch / "text.keras"], "refused", [model])
        s.run("train: --teacher of 5 classes", [T, *tiny, "--teacher", model, five, "--name", "t5"], "refused", [model])
        s.run("train: --distill without --teacher", [T, *tiny, "--distill", "0.3"], "refused")
        s.run(
            "train: --teacher is its own output",
            [T, *tiny, "--name", "vgg", "--models-dir", scratch, "--teacher", model],
            "refused",
            [model],
        )
        s.run(
            "train: distilled from two teachers",
            [T, *tiny, "--epochs", "1", "--name", "kd", "--teacher", model, other, "--teacher-tta", "flip"],
            "ok",
            [model, other],
        )
        s.run(
            "train: --init-from its own output",
            [T, *tiny, "--name", "vgg", "--models-dir", scratch, "--init-from", model],
            "refused",
            [model],
        )
        s.run(
            "train: 1 epoch on tiny data",
            [T, *tiny, "--epochs", "1", "--name", "ok"],
            "ok",
            inputs,
            check=lambda: None if (out / "ok.keras").exists() and (out / "ok_metrics.json").exists() else "no outputs",
        )
        state = out / "checkpoints" / "stop" / "state.json"
        s.run(
            "train: SIGTERM mid-run",
            [T, *tiny, "--epochs", "40", "--name", "stop"],
            "interrupted",
            inputs,
            signal_after=(signal.SIGTERM, lambda: state.exists()),
            check=lambda: None if json.loads(state.read_text())["epoch"] >= 1 else "checkpoint lost",
        )
        s.run("train: resume with other --lr", [T, *tiny, "--epochs", "40", "--name", "stop", "--lr", "0.1"], "refused")
        s.run(
            "train: resume, same command",
            [T, *tiny, "--epochs", "40", "--name", "stop"],
            "ok",
            check=lambda: (
                None if json.loads((out / "stop_metrics.json").read_text())["epochs_trained"] == 40 else "epochs"
            ),
        )
        (out / "checkpoints" / "dmg").mkdir(parents=True)
        (out / "checkpoints" / "dmg" / "state.json").write_text("{broken")
        s.run("train: damaged checkpoint state", [T, *tiny, "--epochs", "2", "--name", "dmg"], "refused")
        s.run("train: --fresh after damage", [T, *tiny, "--epochs", "1", "--name", "dmg", "--fresh"], "ok")

        E = "evaluate.py"
        s.run("evaluate: model missing", [E, *common, "--model", scratch / "none.keras"], "refused")
        s.run("evaluate: model is a text file", [E, *common, "--model", scratch / "text.keras"], "refused")
        s.run("evaluate: model cut short", [E, *common, "--model", scratch / "cut.keras"], "refused")
        s.run("evaluate: model takes 64x64", [E, *common, "--model", wide], "refused")
        s.run("evaluate: model of 5 classes", [E, *common, "--model", five], "refused")
        s.run("evaluate: data missing", [E, "--data", scratch / "nope", "--model", model], "refused")
        s.run("evaluate: --json under a file", [E, *common, "--model", model, "--json", blocker / "r.json"], "refused")
        s.run("evaluate: --confusion .xyz", [E, *common, "--model", model, "--confusion", out / "c.xyz"], "refused")
        s.run("evaluate: --json is the model", [E, *common, "--model", model, "--json", model], "refused", [model])
        s.run("evaluate: --split nonsense", [E, *common, "--model", model, "--split", "train"], "refused")
        s.run("evaluate: --tta nonsense", [E, *common, "--model", model, "--tta", "rotate"], "refused")
        s.run(
            "evaluate: ok with --json",
            [E, *common, "--model", model, "--json", out / "r.json"],
            "ok",
            inputs,
            check=lambda: None if json.loads((out / "r.json").read_text())["accuracy"] >= 0 else "no json",
        )

        N = "ensemble.py"
        s.run("ensemble: one model", [N, model, *common], "refused")
        s.run("ensemble: --out is a member", [N, model, other, *common, "--out", model], "refused", [model, other])
        s.run("ensemble: different classes", [N, model, five, *common], "refused", [model])
        s.run("ensemble: member missing", [N, model, scratch / "none.keras", *common], "refused")
        s.run("ensemble: --out .txt", [N, model, other, *common, "--out", out / "avg.txt"], "refused")
        s.run(
            "ensemble: ok",
            [N, model, other, *common, "--out", out / "avg.keras"],
            "ok",
            [model, other],
            check=lambda: None if (out / "avg.keras").exists() else "no output",
        )

        R = "realtime.py"
        rt = ["--no-display", "--model", model, "--quiet"]
        s.run("realtime: source missing", [R, "--source", scratch / "nope.mp4", *rt], "refused")
        s.run("realtime: camera 57", [R, "--source", "57", *rt], "refused")
        s.run("realtime: damaged video", [R, "--source", scratch / "broken.mp4", *rt], "refused")
        s.run("realtime: empty folder", [R, "--source", scratch / "empty", *rt], "refused")
        s.run("realtime: folder of unreadable images", [R, "--source", bad_photos, *rt], "refused")
        s.run(
            "realtime: folder with bad and 16-bit images",
            [R, "--source", photos, *rt, "--output", out / "ann.jpg"],
            "ok",
            [photos],
            check=lambda: None if (out / "ann_1.jpg").exists() else "outputs missing",
        )
        s.run("realtime: --output is the source", [R, "--source", clip, *rt, "--output", clip], "refused", [clip])
        s.run("realtime: --log is the source", [R, "--source", clip, *rt, "--log", clip], "refused", [clip])
        s.run("realtime: --output .xyz", [R, "--source", "demo", *rt, "--output", out / "v.xyz"], "refused")
        s.run("realtime: --output under a file", [R, "--source", "demo", *rt, "--output", blocker / "v.mp4"], "refused")
        s.run("realtime: --log is a folder", [R, "--source", "demo", *rt, "--log", out], "refused")
        s.run(
            "realtime: --log same as --output",
            [R, "--source", "demo", *rt, "--output", out / "a.csv", "--log", out / "a.csv"],
            "refused",
        )
        s.run("realtime: --report is a file", [R, "--source", "demo", *rt, "--report", blocker], "refused", [blocker])
        s.run("realtime: model takes 64x64", [R, "--source", "demo", "--no-display", "--model", wide], "refused")
        s.run(
            "realtime: model missing",
            [R, "--source", "demo", "--no-display", "--model", scratch / "none.keras"],
            "refused",
        )
        s.run("realtime: --yunet missing", [R, "--source", "demo", *rt, "--yunet", scratch / "none.onnx"], "refused")
        s.run(
            "realtime: --yunet damaged", [R, "--source", "demo", *rt, "--yunet", scratch / "yunet_bad.onnx"], "refused"
        )
        s.run(
            "realtime: --cascade missing",
            [R, "--source", "demo", *rt, "--detector", "haar", "--cascade", blocker],
            "refused",
        )
        for flag, value in (
            ("--detect-scale", "0"),
            ("--smooth", "0"),
            ("--score-threshold", "2"),
            ("--max-frames", "-5"),
            ("--detect-every", "0"),
            ("--min-face", "-1"),
            ("--scale-factor", "1"),
        ):
            s.run(f"realtime: {flag} {value}", [R, "--source", "demo", *rt, flag, value], "refused")
        s.run("realtime: window with the headless build", [R, "--source", "demo", "--model", model], "refused")
        for sig in (signal.SIGTERM, signal.SIGINT):
            name = signal.Signals(sig).name
            s.run(
                f"realtime: {name} during --output",
                [R, "--source", long_clip, *rt, "--output", out / f"{name}.mp4", "--log", out / f"{name}.csv"],
                "interrupted",
                [long_clip],
                signal_after=(sig, log_has_rows(out, name, 20)),
                check=lambda n=name: playable(out / f"{n}.mp4", 20),
            )
        s.run(
            "realtime: SIGKILL during --output",
            [R, "--source", long_clip, *rt, "--output", out / "kill.mp4"],
            "killed",
            [long_clip],
            signal_after=(signal.SIGKILL, lambda: list(out.glob(".kill.partial-*.mp4"))),
            check=lambda: None if not (out / "kill.mp4").exists() else "half file under the final name",
        )
        s.run(
            "realtime: demo with --report",
            [R, "--source", "demo", *rt, "--report", out / "rep"],
            "ok",
            check=lambda: None if (out / "rep" / "summary.csv").exists() else "no report",
        )

        G = "ga_select.py"
        ga_small = [
            *common,
            "--weights",
            WEIGHTS,
            "--size",
            "71",
            "--models-dir",
            out / "ga",
            "--plots-dir",
            out / "ga",
            "--train-limit",
            "0",
            "--seeds",
            "1",
            "--generations",
            "2",
            "--population",
            "8",
            "--candidates",
            "2",
            "--final-trees",
            "20",
            "--max-features",
            "64",
            "--min-features",
            "8",
            "--jobs",
            "2",
        ]
        s.run("ga: weights file missing", [G, *common, "--weights", scratch / "none.h5"], "refused")
        for flag, value in (
            ("--size", "50"),
            ("--population", "2"),
            ("--seeds", "0"),
            ("--max-features", "8"),
            ("--mutation", "2"),
            ("--train-limit", "-1"),
            ("--jobs", "0"),
        ):
            s.run(f"ga: {flag} {value}", [G, *common, flag, value], "refused")
        if WEIGHTS.exists():
            s.run("ga: --scheduler nobody listens on", [G, *ga_small, "--scheduler", "tcp://127.0.0.1:9"], "refused")
        s.run("ga: --plots-dir is a file", [G, *common, "--plots-dir", blocker], "refused")
        s.run("ga: data missing", [G, "--data", scratch / "nope", "--weights", WEIGHTS], "refused")
        if WEIGHTS.exists():
            s.run(
                "ga: small run",
                [G, *ga_small],
                "ok",
                [data],
                check=lambda: None if (out / "ga" / "ga_report.json").exists() else "no report",
            )
            for f in cache.glob("xception-*.npz"):
                f.write_bytes(f.read_bytes()[:300])
            s.run(
                "ga: damaged feature cache",
                [G, *ga_small, "--overwrite"],  # the small run's report and plots are there
                "ok",
                [data],
                check=lambda: None if list(cache.glob("xception-*.damaged")) else "cache not set aside",
            )

    if args.part in ("all", "second"):
        more_cases(s, scratch, data, cache, out, blocker, model, other, five, clip, long_clip, photos)

    passed = sum(row[3] == "pass" for row in s.rows)
    kinds = {}
    for row in s.rows:
        kind = row[3].split()[0].rstrip(":")
        kinds[kind] = kinds.get(kind, 0) + 1
    print("verdicts: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    print(f"\n{passed} of {len(s.rows)} cases as expected; scratch {scratch}")
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)


API = """
import numpy as np
from ferkit import Pipeline, Recognizer, cli

def go():
    image = {image}
    faces = Recognizer()(image)
    Pipeline(Recognizer()).process(image) if not isinstance(image, (str, list)) else None
    print("faces", len(faces) if not isinstance(image, list) else [len(f) for f in faces])

cli.run_main(go)
"""

DTYPES = {
    "uint8": ("frame", "ok"),
    "uint16": ("frame.astype(np.uint16) * 257", "ok"),
    "float32 in [0, 1]": ("frame.astype(np.float32) / 255", "ok"),
    "float64 in [0, 255]": ("frame.astype(np.float64)", "ok"),
    "int64 in range": ("frame.astype(np.int64)", "ok"),
    "int64 out of range": ("frame.astype(np.int64) * 1000 + 1", "refused"),
    "bool": ("frame > 100", "refused"),
    "float NaN": ("frame * np.nan", "refused"),
    "float negative": ("frame.astype(np.float32) - 300", "refused"),
    "int8 negative": ("(frame // 2).astype(np.int8) - 100", "refused"),
    "complex": ("frame.astype(np.complex64)", "refused"),
}
SHAPES = {
    "grey": ("cv2.cvtColor(DEMO, cv2.COLOR_BGR2GRAY)", "ok"),
    "BGR": ("DEMO", "ok"),
    "BGRA": ("cv2.cvtColor(DEMO, cv2.COLOR_BGR2BGRA)", "ok"),
    "grey (H, W, 1)": ("cv2.cvtColor(DEMO, cv2.COLOR_BGR2GRAY)[..., None]", "ok"),
    "two channels": ("DEMO[..., :2]", "refused"),
    "1x1": ("DEMO[:1, :1]", "ok"),
    "empty": ("DEMO[:0, :0]", "refused"),
    "five channels": ("np.concatenate([DEMO, DEMO[..., :2]], axis=2)", "refused"),
    "4-D batch": ("DEMO[None]", "refused"),
}


def more_cases(s, scratch, data, cache, out, blocker, model, other, five, clip, long_clip, photos) -> None:
    """The second sweep: every float flag with NaN / infinity / text, CSVs as people save them,
    folders of odd photos, the checkpoint folder pointed at things it must not delete, every image
    the API may be handed, and signals and a second run during long work."""
    from ferkit import clips
    from ferkit.paths import DEFAULT_MODEL_PATH, INT8_MODEL_PATH

    T, R, G, E, A, X = "train_cnn.py", "realtime.py", "ga_select.py", "evaluate.py", "analyze.py", "export.py"
    N_SCRIPT = "ensemble.py"
    places = ["--models-dir", out, "--plots-dir", out, "--cache-dir", cache]
    common = ["--data", data, "--cache-dir", cache]
    onnx = ["--model", DEFAULT_MODEL_PATH]

    # Numbers: NaN and infinity pass range checks written as comparisons; text and fractions where
    # integers belong; values out of any sensible range.
    for flag in ("--lr", "--min-lr", "--weight-decay", "--label-smoothing", "--mixup", "--distill", "--val-fraction",
                 "--lr-factor"):  # fmt: skip
        for value in ("nan", "inf", "-inf", "abc"):
            s.run(f"train: {flag} {value}", [T, *common, *places, flag, value], "refused")
    for flag in ("--epochs", "--batch-size", "--limit", "--seed", "--width", "--lr-patience", "--warmup-epochs",
                 "--cpu-devices"):  # fmt: skip
        for value in ("1.5", "x"):
            s.run(f"train: {flag} {value}", [T, *common, *places, flag, value], "refused")
    for flag, value in (("--seed", "-1"), ("--seed", str(2**40)), ("--width", "4"), ("--width", "1000")):
        s.run(f"train: {flag} {value}", [T, *common, *places, flag, value], "refused")
    for flag in ("--detect-scale", "--scale-factor", "--score-threshold", "--fps"):
        for value in ("nan", "inf", "-inf", "abc"):
            s.run(f"realtime: {flag} {value}", [R, "--source", "demo", "--no-display", flag, value], "refused")
    for flag, value in (("--width", "0"), ("--height", "-5"), ("--fps", "0"), ("--width", "99999")):
        s.run(f"realtime: {flag} {value}", [R, "--source", "demo", "--no-display", flag, value], "refused")
    for flag, value in (("--size", "2000"), ("--jobs", "100000"), ("--mutation", "nan"), ("--crossover", "inf"),
                        ("--max-samples", "nan"), ("--population", "1e9")):  # fmt: skip
        s.run(f"ga: {flag} {value}", [G, *common, flag, value], "refused")
    for flag, value in (("--batch", "0"), ("--min-face", "0"), ("--batch", "x")):
        s.run(f"analyze: {flag} {value}", [A, photos, flag, value], "refused")

    # Export to ONNX.
    s.run("export: model missing", [X, scratch / "none.keras"], "refused")
    s.run("export: an .onnx given as the model", [X, DEFAULT_MODEL_PATH], "refused")
    s.run("export: --int8 without --data", [X, model, "--int8"], "refused", [model])
    s.run("export: --out .txt", [X, model, "--out", out / "m.txt"], "refused", [model])
    s.run("export: --out is the model", [X, model, "--out", model], "refused", [model])
    s.run(
        "export: float32 and int8, checked",
        [X, model, "--out", out / "exp.onnx", "--int8", *common],
        "ok",
        [model, data],
        check=lambda: None if (out / "exp.int8.onnx").exists() else "no int8 file",
    )

    # CSVs as people save them, read by evaluate.py with the ONNX model (no TensorFlow: quick).
    px = " ".join(["9"] * 2304)
    good = "".join(f"{i % 7},{px},{('Training', 'PublicTest', 'PrivateTest')[i % 3]}\n" for i in range(42))
    csvs = {
        "byte-order mark": (b"\xef\xbb\xbfemotion,pixels,Usage\n" + good.encode(), "ok"),
        "CRLF line ends": (("emotion,pixels,Usage\r\n" + good.replace("\n", "\r\n")).encode(), "ok"),
        "extra column": (("emotion,pixels,Usage,source\n" + good.replace("\n", ",web\n")).encode(), "ok"),
        "quoted pixels": (("emotion,pixels,Usage\n" + "".join(
            f'{i % 7},"{px}",{("Training", "PublicTest", "PrivateTest")[i % 3]}\n' for i in range(42))).encode(), "ok"),
        "label-only row": (b"emotion,pixels,Usage\n3\n", "refused"),
        "a Latin-1 byte": (("emotion,pixels,Usage\n" + good).encode() + b"3,\xe9\n", "refused"),
        "empty file": (b"", "refused"),
        "header only": (b"emotion,pixels,Usage\n", "refused"),
        "letters in pixels": (b"emotion,pixels,Usage\n1,a b c,Training\n", "refused"),
        "pixel 300": (("emotion,pixels,Usage\n1," + " ".join(["300"] * 2304) + ",Training\n").encode(), "refused"),
        "emotion 3.0": (("emotion,pixels,Usage\n3.0," + px + ",Training\n").encode(), "refused"),
        "tab separated": (("emotion\tpixels\tUsage\n" + good.replace(",", "\t")).encode(), "refused"),
        "no test rows": (("emotion,pixels,Usage\n" + "".join(f"{i % 7},{px},Training\n" for i in range(14))).encode(),
                         "refused"),
        "utf-16": ("emotion,pixels,Usage\n".encode("utf-16") + good.encode("utf-16"), "refused"),
    }  # fmt: skip
    for name, (body, expect) in csvs.items():
        path = scratch / f"csv_{name.replace(' ', '_')}.csv"
        path.write_bytes(body)
        s.run(f"evaluate: csv with {name}", [E, "--data", path, *onnx, "--cache-dir", cache], expect, [path])

    # Folders of photos as people have them, through analyze.py.
    odd = scratch / "odd_photos"
    (odd / "a" / "b" / "c" / "d").mkdir(parents=True)
    frame = next(clips.demo_frames(1))
    cv2.imwrite(str(odd / "plain.jpg"), frame)
    cv2.imwrite(str(odd / "a" / "b" / "c" / "d" / "deep.png"), frame)
    cv2.imwrite(str(odd / "ünïcödé fotó.jpg"), frame)
    cv2.imwrite(str(odd / "grey.png"), cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(odd / "alpha.png"), cv2.cvtColor(frame, cv2.COLOR_BGR2BGRA))
    cv2.imwrite(str(odd / "sixteen.png"), frame.astype(np.uint16) * 257)
    cv2.imwrite(str(odd / "tiny.png"), frame[:1, :1])
    cv2.imwrite(str(odd / "png_named.jpg"), frame)
    (odd / "png_named.jpg").write_bytes(cv2.imencode(".png", frame)[1].tobytes())
    jpeg = cv2.imencode(".jpg", frame)[1].tobytes()
    (odd / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 3])
    (odd / "zero.jpg").write_bytes(b"")
    (odd / "folder.jpg").mkdir()
    (odd / "notes.txt").write_text("not an image")
    os.symlink(odd / "a", odd / "a" / "b" / "loop")
    big = cv2.resize(frame, (8000, 5333))
    cv2.imwrite(str(odd / "huge.jpg"), big)
    no_images = scratch / "no_images"
    no_images.mkdir()
    (no_images / "readme.txt").write_text("x")

    def rows_in(path: Path, least: int):
        lines = path.read_text().strip().splitlines() if path.exists() else []
        return None if len(lines) - 1 >= least else f"{len(lines) - 1} rows"

    s.run("analyze: source missing", [A, scratch / "nope"], "refused")
    s.run("analyze: empty folder", [A, scratch / "empty"], "refused")
    s.run("analyze: folder without images", [A, no_images], "refused", [no_images])
    s.run("analyze: --log .txt", [A, photos, "--log", out / "r.txt"], "refused", [photos])
    s.run("analyze: --log is a folder", [A, photos, "--log", out], "refused", [photos])
    s.run("analyze: --annotate is a file", [A, photos, "--annotate", blocker], "refused", [photos, blocker])
    s.run("analyze: --annotate is the source", [A, photos, "--annotate", photos], "refused", [photos])
    s.run("analyze: --log is a source image", [A, photos / "a.jpg", "--log", photos / "a.jpg"], "refused", [photos])
    s.run(
        "analyze: odd folder (unicode, deep, 16-bit, alpha, cut, empty, loop, 8000 px)",
        [A, odd, "--log", out / "odd.csv", "--annotate", out / "odd_ann", "--quiet"],
        "ok",
        [odd],
        timeout=400,
        check=lambda: rows_in(out / "odd.csv", 8),
    )
    s.run(
        "analyze: annotations inside the source are skipped on the next run",
        [A, odd, "--log", out / "odd2.csv", "--annotate", odd / "ann", "--quiet"],
        "ok",
        timeout=400,
        check=lambda: rows_in(out / "odd2.csv", 8),
    )
    s.run(
        "analyze: again, the annotations there, no --overwrite",
        [A, odd, "--log", out / "odd4.csv", "--annotate", odd / "ann", "--quiet"],
        "refused",
        [odd],
    )
    s.run(
        "analyze: again, with the annotations already there",
        [A, odd, "--log", out / "odd3.csv", "--annotate", odd / "ann", "--quiet", "--overwrite"],
        "ok",
        timeout=400,
        check=lambda: None if (out / "odd3.csv").read_text() == (out / "odd2.csv").read_text() else "rows differ",
    )
    mine = scratch / "my_photos"  # the user's own folder, one file named as a copy would be
    mine.mkdir()
    shutil.copy(photos / "a.jpg", mine / "a.jpg")
    s.run(
        "analyze: --annotate into a folder of the user's photos, --overwrite",
        [A, photos, "--annotate", mine, "--quiet", "--overwrite"],
        "refused",
        [photos, mine],
    )
    s.run("analyze: rows on the terminal", [A, photos / "a.jpg", "--log", "-", "--quiet"], "ok", [photos])
    s.run("analyze: jsonl", [A, photos, "--log", out / "r.jsonl", "--quiet"], "ok", [photos])
    s.run("analyze: one file, unreadable", [A, photos / "c.jpg"], "refused", [photos])  # nothing to read: an error
    s.run("analyze: a damaged .onnx model", [A, photos, "--model", scratch / "yunet_bad.onnx"], "refused", [photos])
    s.run("analyze: the int8 model", [A, photos, "--model", INT8_MODEL_PATH, "--quiet"], "ok", [photos])
    s.run("analyze: a .keras model", [A, photos, "--model", model, "--quiet"], "ok", [photos, model])

    # realtime.py outputs.
    mixed = scratch / "mixed_sizes"
    mixed.mkdir()
    for i, size in enumerate([(640, 480), (320, 240), (500, 700), (641, 481)]):
        cv2.imwrite(str(mixed / f"{i}.png"), next(clips.demo_frames(1, size=size)))
    rt = ["--no-display", "--quiet"]
    s.run(
        "realtime: stills of four sizes into one video",
        [R, "--source", mixed, *rt, "--output", out / "mixed.avi"],
        "ok",
        [mixed],
        check=lambda: playable(out / "mixed.avi", 4),
    )
    for suffix in (".mp4", ".mkv", ".webm", ".mov"):
        s.run(f"realtime: demo to {suffix}", [R, "--source", "demo", *rt, "--max-frames", "10", "--output",
                                              out / f"demo{suffix}"], "ok")  # fmt: skip
    s.run("realtime: --burn-fps", [R, "--source", "demo", *rt, "--max-frames", "5", "--burn-fps", "--output",
                                   out / "burn.mp4"], "ok")  # fmt: skip
    s.run("realtime: a 1x1 image", [R, "--source", odd / "tiny.png", *rt], "ok")
    s.run("realtime: an 8000-pixel photo", [R, "--source", odd / "huge.jpg", *rt, "--output", out / "huge.jpg"], "ok",
          timeout=400)  # fmt: skip
    s.run("realtime: --detect-scale tiny", [R, "--source", "demo", *rt, "--detect-scale", "0.001", "--max-frames",
                                            "3"], "ok")  # fmt: skip
    s.run("realtime: --log - (rows on stdout)", [R, "--source", "demo", *rt, "--log", "-", "--max-frames", "5"], "ok")
    s.run("realtime: --log on a folder of photos", [R, "--source", mixed, *rt, "--log", out / "m.csv"], "refused",
          [mixed])  # fmt: skip
    s.run("realtime: --report on a photo", [R, "--source", mixed / "0.png", *rt, "--report", out / "rep"], "refused",
          [mixed])  # fmt: skip
    s.run("realtime: the int8 model", [R, "--source", "demo", *rt, "--model", INT8_MODEL_PATH, "--max-frames", "5"],
          "ok")  # fmt: skip

    # evaluate.py with ONNX models and outputs.
    s.run("evaluate: the ONNX model", [E, *common, *onnx], "ok", [data])
    s.run("evaluate: the int8 model", [E, *common, "--model", INT8_MODEL_PATH], "ok", [data])
    s.run("evaluate: a damaged .onnx", [E, *common, "--model", scratch / "yunet_bad.onnx"], "refused")
    (scratch / "text.onnx").write_text("hello")
    s.run("evaluate: a text file named .onnx", [E, *common, "--model", scratch / "text.onnx"], "refused")
    s.run("evaluate: --calibrate an ONNX model", [E, *common, *onnx, "--calibrate", out / "c.keras"], "refused")
    s.run(
        "evaluate: one path for two plots",
        [E, *common, *onnx, "--confusion", out / "p.png", "--reliability", out / "p.png"],
        "refused",
    )
    s.run("ensemble: an ONNX member", [N_SCRIPT, model, DEFAULT_MODEL_PATH, *common], "refused", [model])

    # The checkpoint folder pointed at things it must never delete.
    user_files = scratch / "my_files"
    user_files.mkdir()
    (user_files / "thesis.tex").write_text("years of work")
    tiny = [*common, "--models-dir", out, "--plots-dir", out / "plots", "--batch-size", "16", "--arch", "vgg"]
    for name, folder in (("the dataset", data), ("a folder of the user's files", user_files), ("the photos", photos),
                         ("a file", blocker)):  # fmt: skip
        s.run(f"train: --checkpoint-dir is {name}", [T, *tiny, "--name", "ck", "--checkpoint-dir", folder], "refused",
              [folder])  # fmt: skip
    s.run("train: --checkpoint-dir is the models folder", [T, *tiny, "--name", "ck", "--checkpoint-dir", out],
          "refused")  # fmt: skip
    s.run("train: --checkpoint-dir is the plots folder",
          [T, *tiny, "--name", "ck", "--checkpoint-dir", out / "plots"], "refused")  # fmt: skip
    s.run("train: --fresh into a folder of the user's files",
          [T, *tiny, "--name", "ck", "--checkpoint-dir", user_files, "--fresh"], "refused", [user_files])  # fmt: skip
    empty_given = scratch / "empty_given"
    empty_given.mkdir()
    s.run(
        "train: an empty --checkpoint-dir is used and left in place",
        [T, *tiny, "--name", "ck1", "--epochs", "1", "--checkpoint-dir", empty_given],
        "ok",
        [data],
        check=lambda: None if empty_given.is_dir() and not list(empty_given.iterdir()) else "folder not as given",
    )
    s.run("train: NaN loss (--lr 1e30)", [T, *tiny, "--name", "nan", "--epochs", "2", "--lr", "1e30"], "refused",
          check=lambda: None if not (out / "nan.keras").exists() else "NaN model saved")  # fmt: skip
    s.run("train: --init-from a 5-class model", [T, *tiny, "--name", "i5", "--init-from", five], "refused", [five])
    s.run("train: preset warm-up on a 2-epoch run", [T, *tiny, "--name", "pre", "--preset", "strong", "--arch", "vgg",
                                                     "--epochs", "2", "--limit", "70"], "ok")  # fmt: skip
    loop = scratch / "loop_class"
    make_dataset(loop, 2)
    os.rename(loop / "train" / "sad", scratch / "sad_elsewhere")
    os.symlink(loop / "train" / "sad", loop / "train" / "sad")
    s.run("train: a class folder that is a looping link", [T, "--data", loop, *places, "--name", "lp"], "refused")

    # The Python API, with every image a user may hold.
    for dname, (dexpr, dexpect) in DTYPES.items():
        for sname, (sexpr, sexpect) in SHAPES.items():
            image = dexpr.replace("frame", f"({sexpr})")
            expect = "ok" if dexpect == sexpect == "ok" else "refused"
            setup = "import cv2\nfrom ferkit import clips\nDEMO = next(clips.demo_frames(1))\n"
            s.run(f"api: {dname}, {sname}", ["-c", setup + API.format(image=image)], expect)
    for name, expr, expect in (
        ("None", "None", "refused"),
        ("a missing path", "'no/such.jpg'", "refused"),
        ("bytes", "b'abc'", "refused"),
        ("a list with a bad item", "['no/such.jpg']", "refused"),
        ("an empty list", "[]", "ok"),
        ("a nested list", "[[1, 2], [3, 4]]", "refused"),
    ):
        s.run(f"api: {name}", ["-c", API.format(image=expr)], expect)

    # Signals and a second run during long work.
    many = scratch / "many_photos"
    many.mkdir()
    for i, frame in enumerate(clips.demo_frames(400, size=(320, 240))):
        cv2.imwrite(str(many / f"{i:04d}.jpg"), frame)
    for sig in (signal.SIGINT, signal.SIGTERM):
        name = signal.Signals(sig).name
        log = out / f"many_{name}.csv"
        s.run(
            f"analyze: {name} mid-folder",
            [A, many, "--log", log],
            "interrupted",
            [many],
            signal_after=(
                sig,
                lambda: any(len(p.read_text().splitlines()) > 30 for p in out.glob(".many_*.partial-*")),
            ),
            check=lambda log=log: rows_in(log, 30),
        )
    s.run(
        "analyze: SIGKILL mid-folder",
        [A, many, "--log", out / "killed.csv"],
        "killed",
        [many],
        signal_after=(
            signal.SIGKILL,
            lambda: any(len(p.read_text().splitlines()) > 30 for p in out.glob(".killed.partial-*")),
        ),  # fmt: skip
        check=lambda: None if not (out / "killed.csv").exists() else "half file under the final name",
    )
    s.run(
        "analyze: the same command after SIGKILL",
        [A, many, "--log", out / "killed.csv", "--quiet"],
        "ok",
        check=lambda: None if not list(out.glob(".killed.partial-*")) else "the killed run's partial file is left",
    )
    lock = out / "checkpoints" / "busy" / ".lock"
    first = subprocess.Popen([sys.executable, T, *tiny, "--name", "busy", "--epochs", "200"], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 240
    while not lock.exists() and time.time() < deadline and first.poll() is None:
        time.sleep(0.2)
    s.run("train: a second run on a busy checkpoint folder", [T, *tiny, "--name", "busy", "--epochs", "200"],
          "refused")  # fmt: skip
    first.send_signal(signal.SIGTERM)
    first.wait(timeout=120)

    def loading_tensorflow(proc) -> bool:
        maps = Path(f"/proc/{proc.pid}/maps")
        return maps.exists() and "tensorflow" in maps.read_text()

    s.run("train: SIGINT while TensorFlow loads", [T, *tiny, "--name", "imp", "--epochs", "1"], "interrupted",
          signal_after=(signal.SIGINT, loading_tensorflow))  # fmt: skip


if __name__ == "__main__":
    main()
