"""Frames per second of the real-time pipeline over 720x480 videos of the demo photo (one and two
faces), headless: (a) the straightforward loop (Haar at full size, ``model.predict`` per face)
against this project's pipeline (detection on a half-size frame every N frames, one compiled
call per frame) with (b) the Haar detector and (c) YuNet, the default; then both detectors on the
hard clip (``ferkit.clips.hard_frames``: tilted, small, large, dark, side-lit, half-out, several
and no faces) against its true boxes. All in one run.

    python benchmarks/realtime_fps.py --frames 150 [--model models/fer_cnn.keras]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from ferkit import cli, clips, video
from ferkit.classify import ExpressionClassifier
from ferkit.detect import DEFAULT_CASCADE, FaceDetector, YuNetDetector
from ferkit.faces import to_model_input
from ferkit.modelfile import load_model
from ferkit.paths import DEFAULT_MODEL_PATH
from ferkit.recognizer import Pipeline, Recognizer
from ferkit.track import FaceSmoother, iou


def video_frames(path: Path):
    """The video's frames, read the way realtime.py reads them."""
    frames, _, _, _ = video.open_source(str(path))
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


def project_pipeline(path: Path, model_path: Path, detector, detect_every: int) -> tuple[float, list]:
    pipeline = Pipeline(Recognizer(ExpressionClassifier(model_path), detector), FaceSmoother(), detect_every)
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


def compare_on_clip(tmp: str, args, copies: int, model) -> None:
    clip = video.write_video(clips.demo_frames(args.frames, copies=copies), Path(tmp) / f"demo{copies}.avi")
    fps_a, boxes_a = straightforward(clip, model)
    print(f"720x480 video, {args.frames} frames, {copies} face(s) per frame, model {args.model.name}")
    print(f"  (a) straightforward loop (Haar, full size): {fps_a:7.1f} frames/s, {sum(map(len, boxes_a))} faces found")
    for label, detector in (("(b) pipeline, Haar", FaceDetector()), ("(c) pipeline, YuNet (default)", YuNetDetector())):
        fps, boxes = project_pipeline(clip, args.model, detector, args.detect_every)
        same, mean_iou = agreement(boxes_a, boxes)
        print(
            f"  {label + ':':<43} {fps:7.1f} frames/s, {sum(map(len, boxes))} faces found; {fps / fps_a:.1f}x (a); "
            f"same face count as (a) in {same:.0%} of frames, mean IoU with (a)'s boxes {mean_iou:.2f}"
        )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--detect-every", type=int, default=2)
    p.add_argument("--hard-frames", type=int, default=12, help="frames per scene of the hard clip")
    args = p.parse_args()

    model, _ = load_model(args.model)
    model.predict(np.zeros((1, 48, 48, 1), np.float32), verbose=0)  # warm up
    with tempfile.TemporaryDirectory() as tmp:
        for copies in (1, 2):
            compare_on_clip(tmp, args, copies, model)

    hard = list(clips.hard_frames(args.hard_frames))
    print(f"hard clip: {len(hard)} frames, {sum(len(b) for _, b, _ in hard)} faces, detection on every frame")
    for name, detector in (("Haar", FaceDetector()), ("YuNet (default)", YuNetDetector())):
        score = clips.score_detector(detector, hard)
        scenes = ", ".join(f"{k} {v:.0%}" for k, v in score["recall_by_scene"].items() if v is not None)
        print(
            f"  {name + ':':<17} faces found {score['recall']:.1%} ({score['found']}/{score['faces']}), "
            f"false boxes per frame {score['false_per_frame']:.3f}, detector {score['fps']:.0f} frames/s"
        )
        print(f"  {'':<17} by scene: {scenes}")


if __name__ == "__main__":
    cli.run_main(main)
