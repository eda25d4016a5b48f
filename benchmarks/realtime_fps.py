"""Frames per second of the real-time pipeline over a 720x480 video of the demo photo, headless:
(a) the straightforward loop (Haar at full size, ``model.predict`` per face) against (b) this
project's pipeline (downscaled detection every N frames, one compiled call per frame), in one run.

    python benchmarks/realtime_fps.py --frames 150 [--model models/fer_cnn.keras] [--copies 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from ferkit import video
from ferkit.classify import ExpressionClassifier
from ferkit.detect import DEFAULT_CASCADE, FaceDetector
from ferkit.faces import to_model_input
from ferkit.modelfile import load_model
from ferkit.paths import DEFAULT_MODEL_PATH
from ferkit.recognizer import Pipeline, Recognizer
from ferkit.track import FaceSmoother, iou


def video_frames(path: Path):
    """The video's frames, read the way realtime.py reads them."""
    frames, _, _ = video.open_source(str(path))
    return frames


def straightforward(path: Path, model) -> tuple[float, list]:
    """Detect on every full-size frame, then one ``model.predict`` per face."""
    cascade = cv2.CascadeClassifier(str(DEFAULT_CASCADE))
    boxes_per_frame, started = [], time.perf_counter()
    for frame in video_frames(path):
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        boxes = cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(40, 40))
        for x, y, w, h in boxes:
            model.predict(to_model_input([grey[y : y + h, x : x + w]]), verbose=0)
        boxes_per_frame.append(np.asarray(boxes).reshape(-1, 4))
    return len(boxes_per_frame) / (time.perf_counter() - started), boxes_per_frame


def project_pipeline(path: Path, model_path: Path, detect_every: int) -> tuple[float, list]:
    recognizer = Recognizer(ExpressionClassifier(model_path), FaceDetector())
    pipeline = Pipeline(recognizer, FaceSmoother(), detect_every)
    boxes_per_frame, started = [], time.perf_counter()
    for frame in video_frames(path):
        boxes, _, _ = pipeline.process(frame)
        boxes_per_frame.append(boxes)
    return len(boxes_per_frame) / (time.perf_counter() - started), boxes_per_frame


def agreement(a: list, b: list) -> tuple[float, float]:
    """Share of frames with the same number of faces, and mean best-IoU of (a)'s boxes in (b)."""
    same = np.mean([len(x) == len(y) for x, y in zip(a, b)])
    ious = [max((iou(box, other) for other in y), default=0.0) for x, y in zip(a, b) for box in x]
    return float(same), float(np.mean(ious)) if ious else 0.0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--copies", type=int, default=1, help="faces side by side in each frame")
    p.add_argument("--detect-every", type=int, default=2)
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        clip = video.write_video(video.demo_frames(args.frames, copies=args.copies), Path(tmp) / "demo_720x480.avi")
        model, _ = load_model(args.model)
        model.predict(np.zeros((1, 48, 48, 1), np.float32), verbose=0)  # warm up both paths
        fps_a, boxes_a = straightforward(clip, model)
        fps_b, boxes_b = project_pipeline(clip, args.model, args.detect_every)

    same, mean_iou = agreement(boxes_a, boxes_b)
    print(f"720x480 video, {args.frames} frames, {args.copies} face(s) per frame, model {args.model.name}")
    print(f"  (a) straightforward loop:   {fps_a:7.1f} frames/s, {sum(map(len, boxes_a))} faces found")
    print(
        f"  (b) this project's pipeline: {fps_b:7.1f} frames/s, {sum(map(len, boxes_b))} faces found "
        f"(detect every {args.detect_every} frames at half size)"
    )
    print(
        f"  speed-up (b)/(a): {fps_b / fps_a:.1f}x; same face count in {same:.0%} of frames; "
        f"mean IoU of (a)'s boxes with (b)'s {mean_iou:.2f}"
    )


if __name__ == "__main__":
    main()
