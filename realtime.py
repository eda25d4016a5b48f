"""Live facial-expression recognition: webcam, video, image or folder -> Haar faces -> the CNN.

    python realtime.py                         # webcam 0, window with boxes, labels, FPS
    python realtime.py --source demo --no-display --output plots/demo.mp4
    python realtime.py --source clip.mp4 --log faces.csv --bars

Press q or Esc in the window to quit.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2

from ferkit import cli
from ferkit.classify import ExpressionClassifier
from ferkit.detect import FaceDetector
from ferkit.draw import draw
from ferkit.errors import SourceError
from ferkit.facelog import FaceLog
from ferkit.recognizer import Pipeline, Recognizer
from ferkit.track import FaceSmoother
from ferkit.video import AnnotatedOutput, open_source

WINDOW = "Facial expression (q to quit)"


def open_window(name: str) -> None:
    """Open the display window, or say how to get a GUI-enabled OpenCV."""
    try:
        cv2.namedWindow(name, cv2.WINDOW_AUTOSIZE)
    except cv2.error:
        raise SourceError(
            "this OpenCV build has no window support (opencv-python-headless). For the "
            "live window run `pip uninstall -y opencv-python-headless && pip install "
            "'opencv-python<5'`, or add --no-display (with --output to save the video)."
        ) from None


def show(window: str, canvas, wait: bool = False) -> bool:
    """Show a frame (``wait``: until a key is pressed); False when the user pressed q or Esc
    or closed the window."""
    cv2.imshow(window, canvas)
    key = cv2.waitKey(0 if wait else 1) & 0xFF
    return key not in (ord("q"), 27) and cv2.getWindowProperty(window, cv2.WND_PROP_VISIBLE) >= 1


def build_pipeline(args) -> Pipeline:
    detector = FaceDetector(args.cascade, args.detect_scale, args.scale_factor, args.min_neighbors, args.min_face)
    recognizer = Recognizer(ExpressionClassifier(args.model), detector)
    return Pipeline(recognizer, FaceSmoother(window=args.smooth), args.detect_every)


def run(args) -> dict:
    frames, source_fps, still = open_source(args.source)
    if not args.no_display:
        open_window(WINDOW)
    pipeline = build_pipeline(args)
    class_names = pipeline.recognizer.class_names
    if still:
        pipeline.detect_every, pipeline.smoother.window = 1, 1
    log = FaceLog(args.log, class_names) if args.log else None
    output = AnnotatedOutput(args.output, source_fps) if args.output else None
    started, last, fps, n_frames, n_faces = time.perf_counter(), time.perf_counter(), None, 0, 0
    try:
        for frame in frames:
            boxes, proba, ids = pipeline.process(frame)
            now = time.perf_counter()
            fps = 1 / max(now - last, 1e-6) if fps is None else 0.9 * fps + 0.1 / max(now - last, 1e-6)
            last = now
            canvas = draw(frame, boxes, proba, class_names, None if still else fps, args.bars)
            if log:
                log.write(n_frames, now - started, boxes, proba, ids)
            if output:
                output.write(canvas)
            n_frames, n_faces = n_frames + 1, n_faces + len(boxes)
            if not args.no_display and not show(WINDOW, canvas, wait=still):
                break
            if args.max_frames and n_frames >= args.max_frames:
                break
    except KeyboardInterrupt:
        pass  # Ctrl-C ends the loop like q; what was written so far is kept
    finally:
        if output:
            output.close()
        if log:
            log.close()
        if not args.no_display:
            cv2.destroyAllWindows()
    seconds = time.perf_counter() - started
    summary = {"frames": n_frames, "faces": n_faces, "seconds": seconds, "fps": n_frames / seconds if seconds else 0.0}
    print(
        f"{n_frames} frames, {n_faces} faces, {summary['fps']:.1f} frames/s"
        + (f"; wrote {args.output}" if output else "")
        + (f"; log {args.log}" if args.log else "")
    )
    return summary


def parse_args(argv=None):
    p = cli.parser(__doc__)
    p.add_argument(
        "--source", default="0", help="webcam index (default 0), 'demo', a video file, an image or a folder of images"
    )
    cli.add_common(p, "model")
    p.add_argument("--cascade", type=Path, default=FaceDetector.cascade, help="Haar cascade XML")
    p.add_argument("--no-display", action="store_true", help="run without a window")
    p.add_argument("--output", help="write the annotated video (.mp4/.avi) or image (.jpg/.png)")
    p.add_argument("--log", help="write one row per face per frame (.csv, or .jsonl for JSON lines)")
    p.add_argument("--bars", action="store_true", help="draw all class probabilities beside each face")
    p.add_argument(
        "--smooth",
        type=int,
        default=FaceSmoother.window,
        help="average each face's probabilities over N frames (1 = off)",
    )
    p.add_argument(
        "--detect-every",
        type=int,
        default=Pipeline.detect_every,
        help="run the face detector every N frames, reusing boxes in between",
    )
    p.add_argument(
        "--detect-scale", type=float, default=FaceDetector.scale, help="downscale factor of the frame the detector sees"
    )
    p.add_argument(
        "--scale-factor", type=float, default=FaceDetector.scale_factor, help="Haar detectMultiScale scaleFactor"
    )
    p.add_argument(
        "--min-neighbors", type=int, default=FaceDetector.min_neighbors, help="Haar detectMultiScale minNeighbors"
    )
    p.add_argument("--min-face", type=int, default=FaceDetector.min_face, help="smallest face side in pixels")
    p.add_argument("--max-frames", type=int, default=0, help="stop after N frames (0 = until the end)")
    args = p.parse_args(argv)
    if args.smooth < 1 or args.detect_every < 1:
        p.error("--smooth and --detect-every must be at least 1")
    if not 0 < args.detect_scale <= 1:
        p.error("--detect-scale must be in (0, 1]")
    if args.scale_factor <= 1:
        p.error("--scale-factor must be greater than 1")
    return args


def main(argv=None) -> dict:
    return cli.run_main(run, parse_args(argv))


if __name__ == "__main__":
    main()
