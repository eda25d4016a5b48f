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

from ferkit import clips
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
    first = next(iter(models))
    width = max(10, *map(len, models))

    if not args.tta:  # TTA changes nothing before the first frame
        starts = {name: [] for name in models}
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.rounds):
                for name, (path, _) in models.items():
                    starts[name].append(start_to_first_frame(path, Path(tmp) / "first.jpg"))
        print(f"start to first annotated frame (realtime.py --source demo, median of {args.rounds} fresh processes):")
        base = statistics.median(starts[first])
        for name, times in starts.items():
            median = statistics.median(times)
            print(
                f"  {name:<{width}} {median:6.2f} s (min {min(times):.2f}, max {max(times):.2f}); "
                f"{base / median:4.1f}x {first}"
            )

    for copies in (1, 2):
        frames = list(clips.demo_frames(args.frames, copies=copies))
        fps = {name: [] for name in models}
        for _ in range(args.rounds):
            for name, (path, tta) in models.items():
                fps[name].append(pipeline_fps(path, frames, tta))
        print(f"live pipeline, {copies} face(s) per frame, {args.frames} frames, median of {args.rounds} rounds:")
        base = statistics.median(fps[first])
        for name, values in fps.items():
            median = statistics.median(values)
            print(
                f"  {name:<{width}} {median:7.1f} frames/s (min {min(values):.1f}, max {max(values):.1f}); "
                f"{median / base:4.2f}x {first}"
            )


if __name__ == "__main__":
    main()
