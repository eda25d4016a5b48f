"""Live facial-expression recognition: webcam, video, image or folder -> Haar faces -> the CNN.

    python realtime.py                         # webcam 0, window with boxes, labels, FPS
    python realtime.py --source demo --no-display --output plots/demo.mp4
    python realtime.py --source clip.mp4 --log faces.csv --bars

Press q or Esc in the window to quit.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

import fer_common as fc

DEFAULT_CASCADE = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
DEMO_SIZE = (720, 480)
COLOURS = {"angry": (40, 40, 220), "disgust": (40, 140, 40), "fear": (160, 60, 160),
           "happy": (40, 200, 240), "neutral": (200, 200, 200), "sad": (200, 120, 40),
           "surprise": (60, 170, 250)}


class SourceError(RuntimeError):
    """A frame source that cannot be opened; the message says what to try."""


# --------------------------------------------------------------------------- frame sources


def demo_photo() -> np.ndarray:
    """The Grace Hopper portrait that ships with matplotlib (no download needed)."""
    import matplotlib.cbook

    return cv2.imread(str(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))


def demo_frames(n_frames: int = 90, size: tuple[int, int] = DEMO_SIZE, copies: int = 1) -> Iterator[np.ndarray]:
    """A short clip: the demo photo (``copies`` side by side) drifting across a grey frame."""
    width, height = size
    photo = demo_photo()
    scale = min(0.9 * height / photo.shape[0], 0.9 * width / (copies * photo.shape[1]))
    photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    strip = np.hstack([photo] * copies)
    h, w = strip.shape[:2]
    for i in range(n_frames):
        frame = np.full((height, width, 3), 90, np.uint8)
        phase = np.sin(2 * np.pi * i / max(n_frames, 1))
        x = int((width - w) / 2 + phase * (width - w) / 2)
        y = int((height - h) / 2 + np.cos(2 * np.pi * i / max(n_frames, 1)) * (height - h) / 3)
        frame[y:y + h, x:x + w] = strip
        yield frame


def open_video_writer(path: str | Path, fps: float, frame: np.ndarray):
    """A cv2.VideoWriter sized for ``frame`` (mp4v for .mp4, MJPG otherwise)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if path.suffix.lower() == ".mp4" else "MJPG"))
    writer = cv2.VideoWriter(str(path), fourcc, fps or 30.0, (frame.shape[1], frame.shape[0]))
    if not writer.isOpened():
        raise SourceError(f"cannot write video {path}; use a .mp4 or .avi name in a writable folder.")
    return writer


def write_video(frames, path: str | Path, fps: float = 30.0) -> Path:
    """Write BGR frames to a video file."""
    writer = None
    for frame in frames:
        writer = writer or open_video_writer(path, fps, frame)
        writer.write(frame)
    if writer is not None:
        writer.release()
    return Path(path)


def open_source(source: str) -> tuple[Iterator[np.ndarray], float, bool]:
    """Frames from a webcam index, 'demo', a video, an image or a folder of images.
    Returns (frames, fps, is_still) where is_still marks single images and folders."""
    if source == "demo":
        return demo_frames(), 30.0, False
    if source.isdigit():
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # our message says it better
        return _capture_frames(cv2.VideoCapture(int(source)), source, camera=True), 30.0, False
    path = Path(source).expanduser()
    if not path.exists():
        raise SourceError(f"source {source} not found: pass a webcam index (0, 1, ...), 'demo', "
                          f"or the path of a video, an image or a folder of images.")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in fc.IMAGE_SUFFIXES)
        if not files:
            raise SourceError(f"folder {path} holds no images (.jpg, .png, ...).")
        return _image_frames(files), 0.0, True
    if path.suffix.lower() in fc.IMAGE_SUFFIXES:
        return _image_frames([path]), 0.0, True
    capture = cv2.VideoCapture(str(path))
    return _capture_frames(capture, source, camera=False), capture.get(cv2.CAP_PROP_FPS) or 30.0, False


def _image_frames(files) -> Iterator[np.ndarray]:
    for file in files:
        frame = cv2.imread(str(file), cv2.IMREAD_UNCHANGED)
        if frame is None:
            print(f"warning: skipping unreadable image {file}")
            continue
        yield frame


def _capture_frames(capture, source: str, camera: bool) -> Iterator[np.ndarray]:
    if not capture.isOpened():
        if camera:
            raise SourceError(
                f"could not open camera {source}. Check that a webcam is connected and not in use "
                f"by another program, try another index (--source 1), or use a file or --source demo.")
        raise SourceError(f"could not read video {source}: the file is damaged or its codec is not "
                          f"supported by OpenCV; convert it to .mp4 (H.264) or .avi (MJPG).")
    return _read_frames(capture, source, camera)


def _read_frames(capture, source: str, camera: bool) -> Iterator[np.ndarray]:
    try:
        first = True
        while True:
            ok, frame = capture.read()
            if not ok:
                if first:
                    raise SourceError(f"{'camera' if camera else 'video'} {source} gave no frames; "
                                      f"try another camera index, or convert the video to .mp4 or .avi.")
                return
            first = False
            yield frame
    finally:
        capture.release()


def open_window(name: str) -> None:
    """Open the display window, or say how to get a GUI-enabled OpenCV."""
    try:
        cv2.namedWindow(name, cv2.WINDOW_AUTOSIZE)
    except cv2.error:
        raise SourceError("this OpenCV build has no window support (opencv-python-headless). For the "
                          "live window run `pip uninstall -y opencv-python-headless && pip install "
                          "'opencv-python<5'`, or add --no-display (with --output to save the video).") from None


# --------------------------------------------------------------------------- detection


class FaceDetector:
    """Haar cascade on a downscaled grey frame; boxes are mapped back to the full frame."""

    def __init__(self, cascade: str | Path = DEFAULT_CASCADE, scale: float = 0.5,
                 scale_factor: float = 1.2, min_neighbors: int = 5, min_face: int = 60):
        if not 0 < scale <= 1:
            raise ValueError("--detect-scale must be in (0, 1]")
        self.cascade = cv2.CascadeClassifier(str(cascade))
        if self.cascade.empty():
            raise SourceError(f"cannot load Haar cascade {cascade}; pass --cascade PATH to "
                              f"haarcascade_frontalface_default.xml (OpenCV 4.x ships it in cv2.data).")
        self.scale, self.scale_factor, self.min_neighbors = scale, scale_factor, min_neighbors
        self.min_face = min_face

    def __call__(self, grey: np.ndarray) -> np.ndarray:
        """Boxes (x, y, w, h) in full-frame pixels for a grey uint8 frame."""
        small = grey if self.scale == 1 else cv2.resize(grey, None, fx=self.scale, fy=self.scale,
                                                        interpolation=cv2.INTER_AREA)
        side = max(int(self.min_face * self.scale), 12)
        boxes = self.cascade.detectMultiScale(small, scaleFactor=self.scale_factor,
                                              minNeighbors=self.min_neighbors, minSize=(side, side))
        if len(boxes) == 0:
            return np.zeros((0, 4), int)
        return np.round(np.asarray(boxes, float) / self.scale).astype(int)


def to_grey(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return frame
    if frame.shape[2] == 1:
        return frame[:, :, 0]
    return cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY if frame.shape[2] == 4 else cv2.COLOR_BGR2GRAY)


def crop_faces(grey: np.ndarray, boxes: np.ndarray) -> list[np.ndarray]:
    height, width = grey.shape
    crops = []
    for x, y, w, h in boxes:
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
        crops.append(grey[y0:y1, x0:x1])
    return crops


# --------------------------------------------------------------------------- classification


class ExpressionClassifier:
    """The saved model behind one compiled call for all faces of a frame.

    ``model.predict`` builds a dataset and costs ~70 ms per call; ``predict_on_batch`` reuses a
    compiled function. Batches are padded to a power of two so only a few shapes get traced.
    """

    def __init__(self, model_path: str | Path = fc.DEFAULT_MODEL_PATH):
        self.model, self.class_names = fc.load_model(model_path)
        self(np.zeros((1, fc.IMAGE_SIZE, fc.IMAGE_SIZE), np.uint8))  # trace once before timing starts

    def __call__(self, faces) -> np.ndarray:
        batch = fc.to_model_input(faces)
        n = len(batch)
        if n == 0:
            return np.zeros((0, len(self.class_names)))
        padded = 1 << (n - 1).bit_length()
        if padded != n:
            batch = np.concatenate([batch, np.zeros((padded - n, *batch.shape[1:]), batch.dtype)])
        return np.asarray(self.model.predict_on_batch(batch))[:n]


# --------------------------------------------------------------------------- smoothing


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    inter_w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    inter_h = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = inter_w * inter_h
    union = aw * ah + bw * bh - inter
    return inter / union if union else 0.0


@dataclass
class Track:
    box: tuple
    history: deque
    track_id: int
    missed: int = 0


@dataclass
class FaceSmoother:
    """Average each face's probabilities over its last ``window`` frames; faces are matched
    between frames by box overlap (IoU). window <= 1 turns smoothing off."""

    window: int = 5
    min_iou: float = 0.3
    max_missed: int = 5
    tracks: list = field(default_factory=list)
    next_id: int = 0

    def update(self, boxes, probabilities) -> tuple[np.ndarray, list[int]]:
        pairs = sorted(((iou(t.box, b), ti, bi) for ti, t in enumerate(self.tracks)
                        for bi, b in enumerate(boxes)), reverse=True)
        matched_tracks, assignment = set(), {}
        for overlap, ti, bi in pairs:
            if overlap < self.min_iou:
                break
            if ti not in matched_tracks and bi not in assignment:
                matched_tracks.add(ti)
                assignment[bi] = self.tracks[ti]
        for ti, track in enumerate(self.tracks):
            if ti not in matched_tracks:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        smoothed, ids = [], []
        for bi, (box, proba) in enumerate(zip(boxes, probabilities)):
            track = assignment.get(bi)
            if track is None:
                track = Track(tuple(box), deque(maxlen=max(self.window, 1)), self.next_id)
                self.next_id += 1
                self.tracks.append(track)
            track.box, track.missed = tuple(box), 0
            track.history.append(np.asarray(proba, float))
            smoothed.append(np.mean(track.history, axis=0))
            ids.append(track.track_id)
        if not smoothed:
            return np.zeros((0, np.shape(probabilities)[-1] if np.ndim(probabilities) == 2 else 0)), ids
        return np.array(smoothed), ids


# --------------------------------------------------------------------------- drawing and logs


def draw(frame: np.ndarray, boxes, probabilities, class_names, fps: float | None, bars: bool) -> np.ndarray:
    canvas = frame if frame.ndim == 3 and frame.shape[2] == 3 else cv2.cvtColor(
        to_grey(frame), cv2.COLOR_GRAY2BGR)
    canvas = canvas.copy()
    for (x, y, w, h), proba in zip(boxes, probabilities):
        best = int(np.argmax(proba))
        colour = COLOURS.get(class_names[best], (0, 255, 0))
        cv2.rectangle(canvas, (x, y), (x + w, y + h), colour, 2)
        label = f"{class_names[best]} {proba[best]:.0%}"
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 2)
        top = max(y - th - 8, 0)
        cv2.rectangle(canvas, (x, top), (x + tw + 6, top + th + 8), colour, -1)
        cv2.putText(canvas, label, (x + 3, top + th + 3), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 2)
        if bars:
            draw_bars(canvas, (x, y, w, h), proba, class_names)
    if fps is not None:
        cv2.putText(canvas, f"{fps:5.1f} FPS", (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 255, 0), 2)
    return canvas


def draw_bars(canvas, box, proba, class_names, width: int = 80) -> None:
    """A small bar chart of all class probabilities beside a face box (right, else left)."""
    x, y, w, _ = box
    panel_w, panel_h = width + 70, 14 * len(class_names) + 6
    left = x + w + 6 if x + w + 6 + panel_w <= canvas.shape[1] else max(x - panel_w - 6, 0)
    top = min(max(y, 0), max(canvas.shape[0] - panel_h, 0))
    region = canvas[top:top + panel_h, left:left + panel_w]
    region[:] = (region * 0.35).astype(np.uint8)
    for i, (name, p) in enumerate(zip(class_names, proba)):
        row = top + 4 + 14 * i
        cv2.putText(canvas, name[:8], (left + 3, row + 10), cv2.FONT_HERSHEY_SIMPLEX, 0.38,
                    (255, 255, 255), 1, cv2.LINE_AA)
        cv2.rectangle(canvas, (left + 64, row + 2), (left + 64 + int(width * p), row + 11),
                      COLOURS.get(name, (0, 255, 0)), -1)


class FaceLog:
    """One row per face per frame, as CSV or JSON lines (chosen by the file's extension)."""

    def __init__(self, path: str | Path, class_names):
        self.path, self.class_names = Path(path), class_names
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(self.path, "w", newline="")
        self.jsonl = self.path.suffix.lower() in (".jsonl", ".json", ".ndjson")
        if not self.jsonl:
            self.writer = csv.writer(self.file)
            self.writer.writerow(["frame", "time", "face", "x", "y", "w", "h", "label", "confidence",
                                  *self.class_names])

    def write(self, frame_index: int, seconds: float, boxes, probabilities, ids) -> None:
        for box, proba, face_id in zip(boxes, probabilities, ids):
            best = int(np.argmax(proba))
            row = {"frame": frame_index, "time": round(seconds, 4), "face": int(face_id),
                   "box": [int(v) for v in box], "label": self.class_names[best],
                   "confidence": round(float(proba[best]), 4),
                   "probabilities": {n: round(float(p), 4) for n, p in zip(self.class_names, proba)}}
            if self.jsonl:
                self.file.write(json.dumps(row) + "\n")
            else:
                self.writer.writerow([frame_index, row["time"], face_id, *row["box"], row["label"],
                                      row["confidence"], *row["probabilities"].values()])

    def close(self) -> None:
        self.file.close()


# --------------------------------------------------------------------------- the loop


@dataclass
class Pipeline:
    """Detect (every ``detect_every`` frames), classify all faces in one call, smooth."""

    detector: FaceDetector
    classifier: ExpressionClassifier
    smoother: FaceSmoother
    detect_every: int = 2
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), int))
    frame_index: int = 0

    def process(self, frame: np.ndarray):
        """Return (boxes, smoothed probabilities, face ids) for one frame."""
        grey = to_grey(frame)
        if self.frame_index % self.detect_every == 0:
            self.boxes = self.detector(grey)
        self.frame_index += 1
        proba = self.classifier(crop_faces(grey, self.boxes))
        smoothed, ids = self.smoother.update(self.boxes, proba)
        return self.boxes, smoothed, ids


class AnnotatedOutput:
    """Writes annotated frames to a video (.mp4/.avi) or to images (.jpg/.png, numbered after
    the first) as they come."""

    def __init__(self, path: str | Path, fps: float):
        self.path, self.fps, self.writer, self.count = Path(path), fps, None, 0
        self.is_video = self.path.suffix.lower() not in fc.IMAGE_SUFFIXES

    def write(self, canvas: np.ndarray) -> None:
        if self.is_video:
            self.writer = self.writer or open_video_writer(self.path, self.fps, canvas)
            self.writer.write(canvas)
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            name = self.path if self.count == 0 else self.path.with_stem(f"{self.path.stem}_{self.count}")
            cv2.imwrite(str(name), canvas)
        self.count += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()


def show(window: str, canvas: np.ndarray, wait: bool = False) -> bool:
    """Show a frame (``wait``: until a key is pressed); False when the user pressed q or Esc
    or closed the window."""
    cv2.imshow(window, canvas)
    key = cv2.waitKey(0 if wait else 1) & 0xFF
    return key not in (ord("q"), 27) and cv2.getWindowProperty(window, cv2.WND_PROP_VISIBLE) >= 1


WINDOW = "Facial expression (q to quit)"


def run(args: argparse.Namespace) -> dict:
    frames, source_fps, still = open_source(args.source)
    if not args.no_display:
        open_window(WINDOW)
    classifier = ExpressionClassifier(args.model)
    pipeline = Pipeline(FaceDetector(args.cascade, args.detect_scale, args.scale_factor,
                                     args.min_neighbors, args.min_face),
                        classifier, FaceSmoother(window=args.smooth), args.detect_every)
    if still:
        pipeline.detect_every, pipeline.smoother.window = 1, 1
    log = FaceLog(args.log, classifier.class_names) if args.log else None
    output = AnnotatedOutput(args.output, source_fps) if args.output else None
    started, last, fps, n_frames, n_faces = time.perf_counter(), time.perf_counter(), None, 0, 0
    try:
        for frame in frames:
            boxes, proba, ids = pipeline.process(frame)
            now = time.perf_counter()
            fps = 1 / max(now - last, 1e-6) if fps is None else 0.9 * fps + 0.1 / max(now - last, 1e-6)
            last = now
            canvas = draw(frame, boxes, proba, classifier.class_names, None if still else fps, args.bars)
            if log:
                log.write(n_frames, now - started, boxes, proba, ids)
            if output:
                output.write(canvas)
            n_frames, n_faces = n_frames + 1, n_faces + len(boxes)
            if not args.no_display and not show(WINDOW, canvas, wait=still):
                break
            if args.max_frames and n_frames >= args.max_frames:
                break
    finally:
        if output:
            output.close()
        if log:
            log.close()
        if not args.no_display:
            cv2.destroyAllWindows()
    seconds = time.perf_counter() - started
    summary = {"frames": n_frames, "faces": n_faces, "seconds": seconds,
               "fps": n_frames / seconds if seconds else 0.0}
    print(f"{n_frames} frames, {n_faces} faces, {summary['fps']:.1f} frames/s"
          + (f"; wrote {args.output}" if output else "") + (f"; log {args.log}" if args.log else ""))
    return summary


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default="0",
                   help="webcam index (default 0), 'demo', a video file, an image or a folder of images")
    p.add_argument("--model", type=Path, default=fc.DEFAULT_MODEL_PATH, help="saved .keras model")
    p.add_argument("--cascade", type=Path, default=DEFAULT_CASCADE, help="Haar cascade XML")
    p.add_argument("--no-display", action="store_true", help="run without a window")
    p.add_argument("--output", help="write the annotated video (.mp4/.avi) or image (.jpg/.png)")
    p.add_argument("--log", help="write one row per face per frame (.csv, or .jsonl for JSON lines)")
    p.add_argument("--bars", action="store_true", help="draw all class probabilities beside each face")
    p.add_argument("--smooth", type=int, default=5,
                   help="average each face's probabilities over N frames (1 = off)")
    p.add_argument("--detect-every", type=int, default=2,
                   help="run the face detector every N frames, reusing boxes in between")
    p.add_argument("--detect-scale", type=float, default=0.5,
                   help="downscale factor of the frame the detector sees")
    p.add_argument("--scale-factor", type=float, default=1.2, help="Haar detectMultiScale scaleFactor")
    p.add_argument("--min-neighbors", type=int, default=5, help="Haar detectMultiScale minNeighbors")
    p.add_argument("--min-face", type=int, default=60, help="smallest face side in pixels")
    p.add_argument("--max-frames", type=int, default=0, help="stop after N frames (0 = until the end)")
    args = p.parse_args(argv)
    if args.smooth < 1 or args.detect_every < 1:
        p.error("--smooth and --detect-every must be at least 1")
    if not 0 < args.detect_scale <= 1:
        p.error("--detect-scale must be in (0, 1]")
    if args.scale_factor <= 1:
        p.error("--scale-factor must be greater than 1")
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        run(args)
    except (SourceError, fc.ModelFileError) as exc:
        fc.fail(str(exc))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
