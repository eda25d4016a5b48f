"""Live facial-expression recognition: webcam, video, image or folder -> YuNet faces -> the CNN.

    python realtime.py                         # webcam 0, window with boxes, labels, FPS
    python realtime.py --source demo --no-display --output plots/demo.mp4
    python realtime.py --source clip.mp4 --log faces.csv --bars --report clip_report/

Press q or Esc in the window to quit.
"""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import cv2

from . import cli, progress
from .classify import TTA_MODES, ExpressionClassifier
from .detect import DETECTORS, FaceDetector, YuNetDetector
from .draw import draw, draw_fps
from .errors import Interrupted, SourceError
from .facelog import FaceLog
from .layouts import IMAGE_SUFFIXES
from .paths import IN_CHECKOUT
from .recognizer import Pipeline, Recognizer
from .timeline import ExpressionTimeline
from .track import FaceSmoother
from .video import AnnotatedOutput, is_still, open_source

WINDOW = "Facial expression (q to quit)"
DEFAULT_DETECTOR = "yunet"


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


def build_detector(args):
    if args.detector == "haar":
        return FaceDetector(args.cascade, args.detect_scale, args.scale_factor, args.min_neighbors, args.min_face)
    return YuNetDetector(args.yunet, args.detect_scale, args.score_threshold, min_face=args.min_face)


def build_pipeline(args) -> Pipeline:
    with cli.native_logs_silenced(not args.verbose):
        recognizer = Recognizer(
            ExpressionClassifier(args.model, tta=args.tta), build_detector(args), align=not args.no_align
        )
    return Pipeline(recognizer, FaceSmoother(window=args.smooth), args.detect_every)


def progress_bar(frames, total: int | None, enabled: bool):
    """A progress bar on stderr for files and folders (not for a camera, which has no end)."""
    if not enabled:
        return frames
    return progress.bar(frames, total=total, unit="frame", leave=False)


def written_images(output: AnnotatedOutput) -> str:
    """What a numbered image output holds after a run: NAME ... NAME_N (N+1 images)."""
    last = output.image_name(output.path, output.count - 1)
    return f"{output.path} ... {last.name} ({output.count} images)"


def stale_images(output: AnnotatedOutput) -> list[Path]:
    """Numbered images after this run's last one: an earlier, longer run's, replaced only in part
    by --overwrite. Named, not removed: the user may want them, or may have named a file so."""
    mine = {output.image_name(output.path, i) for i in range(output.count)}
    return [f for f in AnnotatedOutput.files_there(output.path) if f not in mine]


def run(args) -> dict:
    frames, source_fps, still, total = open_source(args.source, camera=(args.width, args.height, args.fps))
    if not args.no_display:
        open_window(WINDOW)
    pipeline = build_pipeline(args)
    class_names = pipeline.recognizer.class_names
    if still:  # every image on its own: searched at several scales, no smoothing or tracks across images
        pipeline.detect_every, pipeline.smoother.window, pipeline.still = 1, 1, True
    log = FaceLog(args.log, class_names) if args.log else None
    output = AnnotatedOutput(args.output, source_fps) if args.output else None
    timeline = ExpressionTimeline(class_names) if args.report else None
    is_file = not args.source.isdigit()
    frames = progress_bar(
        frames,
        min(filter(None, (args.max_frames, total)), default=None),
        is_file and args.no_display and not args.quiet,
    )
    started, last, fps, n_frames, n_faces = time.perf_counter(), time.perf_counter(), None, 0, 0
    interrupted = False
    try:
        for frame in frames:
            boxes, proba, ids = pipeline.process(frame)
            if still:
                ids = list(range(len(boxes)))
            now = time.perf_counter()
            fps = 1 / max(now - last, 1e-6) if fps is None else 0.9 * fps + 0.1 / max(now - last, 1e-6)
            last = now
            # Video time: frame number over the file's rate; a camera's frames come in real time.
            seconds = n_frames / source_fps if is_file and source_fps else now - started
            # The frame rate is drawn on the screen only, unless asked for in the saved file too.
            canvas = draw(
                frame, boxes, proba, class_names, fps if args.burn_fps and not still else None, args.bars, ids
            )
            # The log, the timeline and the video take this frame all or not at all: a stop in between
            # left the log one frame ahead of the video.
            with cli.interrupts_held():
                if log:
                    log.write(n_frames, seconds, pipeline.recognizer.faces(boxes, proba, ids, shape=frame.shape))
                if timeline:
                    timeline.add(seconds, ids, proba)
                if output:
                    output.write(canvas)
                n_frames, n_faces = n_frames + 1, n_faces + len(boxes)
            on_screen = canvas if still or args.burn_fps else draw_fps(canvas.copy(), fps)
            if not args.no_display and not show(WINDOW, on_screen, wait=still):
                break
            if args.max_frames and n_frames >= args.max_frames:
                break
    except KeyboardInterrupt:
        interrupted = True  # Ctrl-C or SIGTERM: finish the outputs below, then say so
    finally:
        if hasattr(frames, "close"):  # the progress bar (and the source behind it): not drawn again after a stop
            frames.close()
        if output:
            output.close()
        if log:
            log.close()
        if not args.no_display:
            cv2.destroyAllWindows()
    seconds = time.perf_counter() - started
    report = timeline.write(args.report) if timeline else None
    if interrupted:
        written = [str(p) for p in (args.output, args.log, args.report) if p and p != "-"]
        raise Interrupted(
            f"interrupted after {n_frames} frames"
            + (f"; {', '.join(written)} hold everything up to there" if written else "")
        )
    summary = {"frames": n_frames, "faces": n_faces, "seconds": seconds, "fps": n_frames / seconds if seconds else 0.0}
    stale = stale_images(output) if output and not output.is_video else []
    if stale:
        print(
            f"note: {len(stale)} numbered image(s) of an earlier run remain beside these (e.g. {stale[0]}); "
            "delete them if they are not yours to keep",
            file=sys.stderr,
        )
    if args.no_display and not (output or log or timeline):  # a whole video read, and nothing to show for it
        keep = "--output FILE (or analyze.py for a table)" if still else "--output FILE, --log FILE.csv or --report DIR"
        print(f"note: nothing was saved; add {keep} to keep results", file=sys.stderr)
    if report:
        summary["report"] = report
    print(  # beside rows on standard output (--log -), on the terminal's other stream
        f"{n_frames} frames, {n_faces} faces, {summary['fps']:.1f} frames/s"
        + (
            f"; wrote {written_images(output) if output.count > 1 and not output.is_video else args.output}"
            if output
            else ""
        )
        + (f"; log {args.log}" if args.log and args.log != "-" else "")
        + (f"; report {args.report} ({len(timeline.tracks)} tracked face(s))" if timeline else ""),
        file=sys.stderr if args.log == "-" else sys.stdout,
    )
    return summary


def parse_args(argv=None):
    p = cli.parser(__doc__)
    p.add_argument(
        "--source", default="0", help="webcam index (default 0), 'demo', a video file, an image or a folder of images"
    )
    cli.add_common(p, "model")
    p.add_argument(
        "--detector",
        choices=sorted(DETECTORS),
        default=DEFAULT_DETECTOR,
        help="yunet: OpenCV's CNN face detector, finds turned, small and badly lit faces (default); "
        "haar: the seed's Haar cascade",
    )
    p.add_argument("--yunet", type=Path, default=YuNetDetector.model, help="YuNet .onnx model (shipped in models/)")
    p.add_argument(
        "--score-threshold",
        type=cli.finite_float,
        default=YuNetDetector.score_threshold,
        help="YuNet's face score cut-off",
    )
    p.add_argument("--cascade", type=Path, default=FaceDetector.cascade, help="Haar cascade XML (--detector haar)")
    p.add_argument("--no-align", action="store_true", help="do not rotate faces upright by their eyes (YuNet)")
    p.add_argument(
        "--tta",
        choices=TTA_MODES,
        help="average each face's probabilities over views: flip (with its mirror image, 2 views) or crops (12 "
        "views); more accurate, slower",
    )
    p.add_argument("--no-display", action="store_true", help="run without a window")
    p.add_argument(
        "--output",
        help="write the annotated video (.mp4/.mkv/.mov: H.264 with PyAV installed, which browsers play; .webm: "
        "VP9; .avi: MJPG) or image (.jpg/.png)",
    )
    p.add_argument("--burn-fps", action="store_true", help="also draw the frame rate into --output (always on screen)")
    p.add_argument("--width", type=int, help="ask the camera for this frame width (a webcam --source)")
    p.add_argument("--height", type=int, help="ask the camera for this frame height")
    p.add_argument("--fps", type=cli.finite_float, help="ask the camera for this frame rate")
    p.add_argument(
        "--log", help="write one row per face per frame (.csv, or .jsonl for JSON lines; - for CSV on standard output)"
    )
    p.add_argument(
        "--report", type=Path, help="write a per-face timeline plot and a summary CSV into this folder at the end"
    )
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
        "--detect-scale",
        type=cli.finite_float,
        default=YuNetDetector.scale,
        help="downscale factor of the frame the detector sees",
    )
    p.add_argument(
        "--scale-factor",
        type=cli.finite_float,
        default=FaceDetector.scale_factor,
        help="Haar detectMultiScale scaleFactor",
    )
    p.add_argument(
        "--min-neighbors", type=int, default=FaceDetector.min_neighbors, help="Haar detectMultiScale minNeighbors"
    )
    p.add_argument("--min-face", type=int, default=None, help="smallest face side in pixels (yunet 24, haar 60)")
    p.add_argument("--max-frames", type=int, default=0, help="stop after N frames (0 = until the end)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--verbose", action="store_true", help="show TensorFlow's own log lines")
    p.add_argument(
        "--overwrite", action="store_true", help="allow --output, --log and --report to replace an earlier run's files"
    )
    args = p.parse_args(argv)
    if args.smooth < 1 or args.detect_every < 1:
        p.error("--smooth and --detect-every must be at least 1")
    if not 0 < args.detect_scale <= 1:
        p.error("--detect-scale must be in (0, 1]")
    if args.scale_factor <= 1:
        p.error("--scale-factor must be greater than 1")
    if not 0 < args.score_threshold < 1:
        p.error("--score-threshold must be between 0 and 1")
    for flag in ("width", "height", "fps"):
        value = getattr(args, flag)
        if value is not None and not (0 < value <= 16384):
            p.error(f"--{flag} must be a positive number (and at most 16384)")
    if args.max_frames < 0:
        p.error("--max-frames must be at least 0 (0 = until the end)")
    if args.min_neighbors < 0:
        p.error("--min-neighbors must be at least 0")
    if args.min_face is None:
        args.min_face = DETECTORS[args.detector].min_face
    elif args.min_face < 1:
        p.error("--min-face must be at least 1")
    # ~ expanded once, here: what is checked below is what is written (--log=~/x.csv reaches us unexpanded)
    args.output, args.log = (str(Path(v).expanduser()) if v else v for v in (args.output, args.log))
    args.report = args.report.expanduser() if args.report else None
    cli.check_output_file(p, "--output", args.output, IMAGE_SUFFIXES | AnnotatedOutput.VIDEO_SUFFIXES)
    if args.log != "-":  # "-": rows on standard output
        cli.check_log_file(p, "--log", args.log)
    log_file = None if args.log == "-" else args.log
    cli.check_output_dir(p, "--report", args.report)
    source = None if args.source.isdigit() or args.source == "demo" else args.source
    cli.refuse_same(
        p,
        {"--output": args.output, "--log": log_file, "--report": args.report},
        {"--source": source, "--model": args.model, "--yunet": args.yunet, "--cascade": args.cascade},
    )
    # ("" reads the working folder; a missing file is open_source's to name)
    there = Path(source).expanduser() if source is not None else None
    still = there is not None and is_still(there)
    if still and (args.log or args.report):
        # A log of photos by frame number and seconds of this run, and timelines that track one
        # "face" across different people's photos, would read as what they are not.
        flag = "--log" if args.log else "--report"
        analyze = "python analyze.py" if IN_CHECKOUT else "ferkit-analyze"
        p.error(
            f"{flag} follows faces through a video; {source} is a photo or a folder of photos: for one row per face "
            f"per photo, named by file, use {analyze} {source} --log faces.csv (--annotate DIR for drawn copies)"
        )
    report = args.report / "summary.csv" if args.report else None  # with face_<id>.png, what --report writes
    cli.refuse_duplicates(p, {"--output": args.output, "--log": log_file, "--report (its summary.csv)": report})
    output = Path(args.output) if args.output else None
    if (
        output
        and output.suffix.lower() in IMAGE_SUFFIXES
        and source
        and Path(source).expanduser().is_dir()
        and output.resolve().parent == Path(source).expanduser().resolve()
    ):
        # One annotated image per source image, named NAME, NAME_1, NAME_2, ...: among the sources
        # they would overwrite some and be read as sources by the next run.
        p.error(
            f"--output {args.output} is inside the --source folder {source}: its numbered images "
            f"({output.stem}_1{output.suffix}, ...) would overwrite or mix with the source images; "
            f"write them to another folder (e.g. --output annotated/{output.name})"
        )
    cli.require_plotting(p, {"--report": args.report})
    if output and output.suffix.lower() == ".webm" and importlib.util.find_spec("av") is None:
        p.error("--output .webm (VP9) is written with PyAV, which is not installed: pip install av, or use .mp4 / .avi")
    written = AnnotatedOutput.files_there(output) if output else []  # numbered images included
    plots = sorted(args.report.glob("face_*.png")) if args.report and args.report.is_dir() else []
    cli.refuse_existing(p, [*written, log_file, report, *plots], args.overwrite, "Choose other names")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    cli.quiet_tensorflow(args.verbose)
    return cli.run_main(run, args)


def entry() -> None:
    """The installed console command: ``main`` returns its results for callers and tests, and a
    console script would turn a returned value into an exit status."""
    main()
