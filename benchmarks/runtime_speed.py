"""The light runtime against Keras, side by side in one run: (1) time from starting
``realtime.py`` to its first annotated frame written, in a fresh process, and (2) frames per
second of the live pipeline (YuNet, upright crops, smoothing) on the demo clip with one and two
faces, for the shipped model as .keras (Keras on TensorFlow), .onnx (float32) and .int8.onnx,
all through ONNX Runtime or Keras on this machine's CPU. Rounds alternate between the models and
the median is reported, so a busy machine slows all of them alike.

    python benchmarks/runtime_speed.py --rounds 5 --frames 150
    python benchmarks/runtime_speed.py --models models/fer_cnn.onnx other/fer_cnn.onnx  # any files, first = 1x
    python benchmarks/runtime_speed.py --tta   # the shipped .onnx live with no TTA, flip and crops
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ferkit import cli, clips
from ferkit.classify import ExpressionClassifier
from ferkit.paths import DEFAULT_MODEL_PATH, INT8_MODEL_PATH, KERAS_MODEL_PATH, PROJECT_DIR
from ferkit.recognizer import Pipeline, Recognizer


def start_to_first_frame(model: Path, out: Path) -> float:
    """Seconds from launching realtime.py to its exit after writing one annotated frame."""
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "realtime.py",
            "--source",
            "demo",
            "--no-display",
            "--max-frames",
            "1",
            "--quiet",
            "--model",
            str(model),
            "--output",
            str(out),
        ],
        cwd=PROJECT_DIR,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def pipeline_fps(model: Path, frames: list, tta: str | None = None) -> float:
    pipeline = Pipeline(Recognizer(ExpressionClassifier(model, tta=tta)))
    pipeline.process(frames[0])  # warm-up
    started = time.perf_counter()
    for frame in frames:
        pipeline.process(frame)
    return len(frames) / (time.perf_counter() - started)


def print_medians(title: str, samples: dict, unit: str, lower_is_better: bool) -> None:
    """Each row's median (with min and max) and its speed against the first row's."""
    print(title)
    first = next(iter(samples))
    base = statistics.median(samples[first])
    width = max(10, *map(len, samples))
    for name, values in samples.items():
        median = statistics.median(values)
        ratio = base / median if lower_is_better else median / base
        print(
            f"  {name:<{width}} {median:7.2f} {unit} (min {min(values):.2f}, max {max(values):.2f}); "
            f"{ratio:4.2f}x {first}"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--models", type=Path, nargs="+", help="compare these model files instead (ratios to the first)")
    p.add_argument(
        "--tta",
        action="store_true",
        help="compare the live frame rate of the shipped .onnx with no TTA, flip and crops",
    )
    args = p.parse_args()
    # name -> (model file, TTA mode)
    models = {"keras": KERAS_MODEL_PATH, "onnx fp32": DEFAULT_MODEL_PATH, "onnx int8": INT8_MODEL_PATH}
    models = {name: (path, None) for name, path in models.items()}
    if args.models:
        models = {str(path): (path, None) for path in args.models}
    if args.tta:
        models = {f"onnx, {mode or 'no'} TTA": (DEFAULT_MODEL_PATH, mode) for mode in (None, "flip", "crops")}

    if not args.tta:  # TTA changes nothing before the first frame
        starts = {name: [] for name in models}
        with tempfile.TemporaryDirectory() as tmp:
            for round_ in range(args.rounds):
                for index, (name, (path, _)) in enumerate(models.items()):  # a new file each (none replaced)
                    starts[name].append(start_to_first_frame(path, Path(tmp) / f"first_{round_}_{index}.jpg"))
        title = f"start to first annotated frame (realtime.py --source demo, median of {args.rounds} fresh processes):"
        print_medians(title, starts, "s", lower_is_better=True)

    for copies in (1, 2):
        frames = list(clips.demo_frames(args.frames, copies=copies))
        fps = {name: [] for name in models}
        for _ in range(args.rounds):
            for name, (path, tta) in models.items():
                fps[name].append(pipeline_fps(path, frames, tta))
        title = f"live pipeline, {copies} face(s) per frame, {args.frames} frames, median of {args.rounds} rounds:"
        print_medians(title, fps, "frames/s", lower_is_better=False)


if __name__ == "__main__":
    cli.run_main(main)
