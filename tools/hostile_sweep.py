"""A hostile-input and fault sweep over the five scripts, as a careless user would run them.

    python tools/hostile_sweep.py [--keep]

Builds a scratch folder (small generated dataset, models, clips, damaged files), runs each case
as a subprocess with a time limit, and prints one row per case: what was done, the exit code,
the seconds, and the verdict. A case passes when it ends as expected: a refusal is a non-zero
exit with exactly one "error:" line and no traceback; a success exits 0; nothing hangs; and the
inputs named in the case are unchanged afterwards. Not run by CI (minutes of subprocesses).
"""

from __future__ import annotations

import argparse
import hashlib
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

ROOT = Path(__file__).resolve().parents[1]
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
    def __init__(self, scratch: Path, always_keep=()):
        self.scratch, self.rows, self.always_keep = scratch, [], list(always_keep)

    def run(self, name: str, args: list, expect: str, keep=(), timeout: float = 240, signal_after=None, check=None):
        """expect: 'ok' (exit 0), 'refused' (non-zero, one error line), 'interrupted' (130)."""
        keep = [*keep, *self.always_keep]
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
                while not condition() and proc.poll() is None and time.time() < deadline:
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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = p.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="fer-sweep-"))
    shipped = [ROOT / "models" / "fer_cnn.keras", ROOT / "models" / "fer_cnn_metrics.json"]
    s = Sweep(scratch, always_keep=shipped)  # no case may touch the shipped model
    data = make_dataset(scratch / "data")
    cache = scratch / "cache"
    out = scratch / "out"
    blocker = scratch / "a_file"
    blocker.write_text("not a folder")
    common = ["--data", data, "--cache-dir", cache]

    sys.path.insert(0, str(ROOT))
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
    s.run("train: warm-up with the plateau schedule", [T, *common, *places, "--warmup-epochs", "2"], "refused")
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
        check=lambda: None if json.loads((out / "stop_metrics.json").read_text())["epochs_trained"] == 40 else "epochs",
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
        "realtime: model missing", [R, "--source", "demo", "--no-display", "--model", scratch / "none.keras"], "refused"
    )
    s.run("realtime: --yunet missing", [R, "--source", "demo", *rt, "--yunet", scratch / "none.onnx"], "refused")
    s.run("realtime: --yunet damaged", [R, "--source", "demo", *rt, "--yunet", scratch / "yunet_bad.onnx"], "refused")
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
    partial = lambda: list(out.glob(".stop.partial-*.csv"))  # noqa: E731
    for sig in (signal.SIGTERM, signal.SIGINT):
        name = signal.Signals(sig).name
        s.run(
            f"realtime: {name} during --output",
            [R, "--source", long_clip, *rt, "--output", out / f"{name}.mp4", "--log", out / "stop.csv"],
            "interrupted",
            [long_clip],
            signal_after=(sig, lambda: partial() and len(partial()[0].read_text().splitlines()) > 20),
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
            [G, *ga_small],
            "ok",
            [data],
            check=lambda: None if list(cache.glob("xception-*.damaged")) else "cache not set aside",
        )

    passed = sum(row[3] == "pass" for row in s.rows)
    print(f"\n{passed} of {len(s.rows)} cases as expected; scratch {scratch}")
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
