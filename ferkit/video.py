"""Frames in and out: webcam, video, image, folder and the built-in demo clip as one iterator of
BGR frames; annotated frames written to a video or numbered images."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from .atomic import finish, partial_name, replacing
from .clips import DEMO_FRAMES, demo_frames
from .errors import SourceError
from .faces import read_image
from .layouts import IMAGE_SUFFIXES

# Containers PyAV (FFmpeg) writes with a codec browsers play: H.264 in MP4 / MKV / MOV, VP9 in WebM.
BROWSER_CODECS = {".mp4": "libx264", ".mkv": "libx264", ".mov": "libx264", ".webm": "libvpx-vp9"}


class PyAVWriter:
    """Frames to H.264 (yuv420p, the profile every browser plays; moov atom first so it streams)
    or VP9 through PyAV, FFmpeg's Python binding. Odd frame sizes lose their last row or column
    (yuv420p needs even ones). Same ``write`` / ``release`` as cv2.VideoWriter."""

    def __init__(self, path: Path, fps: float, frame: np.ndarray):
        from fractions import Fraction

        import av

        self.av = av
        height, width = frame.shape[:2]
        self.size = (width - width % 2, height - height % 2)
        options = {"movflags": "+faststart"} if path.suffix.lower() in (".mp4", ".mov") else {}
        self.container = av.open(str(path), mode="w", format=None, options=options)
        codec = BROWSER_CODECS[path.suffix.lower()]
        self.stream = self.container.add_stream(codec, rate=Fraction(round((fps or 30.0) * 1000), 1000))
        self.stream.width, self.stream.height = self.size
        self.stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            self.stream.options = {"crf": "23", "preset": "veryfast"}

    def write(self, frame: np.ndarray) -> None:
        width, height = self.size
        image = self.av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:height, :width]), format="bgr24")
        for packet in self.stream.encode(image):
            self.container.mux(packet)

    def release(self) -> None:
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()


def open_video_writer(path: str | Path, fps: float, frame: np.ndarray):
    """A writer sized for ``frame``: with PyAV installed, H.264 (.mp4, .mkv, .mov) or VP9 (.webm)
    that browsers play; otherwise OpenCV's cv2.VideoWriter (mp4v for .mp4, MJPG otherwise),
    which desktop players read but browsers do not."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in BROWSER_CODECS:
        try:
            return PyAVWriter(path, fps, frame)
        except ImportError:
            if path.suffix.lower() == ".webm":
                raise SourceError("writing .webm needs PyAV: pip install av (or use .mp4 / .avi)") from None
            print(
                f"note: PyAV is not installed, so the {path.suffix} video is written with OpenCV's "
                f"{'MPEG-4 Part 2' if path.suffix.lower() == '.mp4' else 'Motion JPEG'}, which desktop players "
                f"read and browsers do not; pip install av for H.264",
                file=sys.stderr,
            )
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


def is_still(path: Path) -> bool:
    """Whether a source path is read as still images (a folder of them, or one image file), each
    on its own, rather than as a video: the one rule for ``open_source`` and the options that
    make sense only for one or the other (realtime.py refuses --log for stills)."""
    return path.is_dir() or path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def open_source(source: str, camera=(None, None, None)) -> tuple[Iterator[np.ndarray], float, bool, int | None]:
    """Frames from a webcam index, 'demo', a video, an image or a folder of images.
    Returns (frames, fps, is_still, total) where is_still marks single images and folders and
    total is the number of frames (None for a camera, or a video whose container won't say).
    ``camera``: (width, height, fps) to ask a webcam for (None: its default); a camera that
    cannot give them gives what it can, and the frames say what that is."""
    if source == "demo":
        return demo_frames(DEMO_FRAMES), 30.0, False, DEMO_FRAMES
    if source.isdigit():
        # OpenCV logs a missing camera as an [ERROR] line; our message says it better.
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        try:
            capture = cv2.VideoCapture(int(source))
        finally:
            cv2.utils.logging.setLogLevel(level)
        for prop, value in zip((cv2.CAP_PROP_FRAME_WIDTH, cv2.CAP_PROP_FRAME_HEIGHT, cv2.CAP_PROP_FPS), camera):
            if value:
                capture.set(prop, value)
        fps = capture.get(cv2.CAP_PROP_FPS) if capture.isOpened() else 0
        return _capture_frames(capture, source, camera=True), fps if fps and fps > 0 else 30.0, False, None
    path = Path(source).expanduser()
    if not path.exists():
        raise SourceError(
            f"source {source} not found: pass a webcam index (0, 1, ...), 'demo', "
            f"or the path of a video, an image or a folder of images."
        )
    if is_still(path):
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
        if not files:
            raise SourceError(f"folder {path} holds no images (.jpg, .png, ...).")
        return _image_frames(files), 0.0, True, len(files)
    capture = cv2.VideoCapture(str(path))
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    fps = capture.get(cv2.CAP_PROP_FPS) or 30.0
    return _capture_frames(capture, source, camera=False), fps, False, count if count > 0 else None


def _image_frames(files) -> Iterator[np.ndarray]:
    readable = 0
    for file in files:
        try:
            frame = read_image(file)
        except SourceError as exc:
            if len(files) == 1:  # the only image: its error is the run's, said once
                raise
            print(f"warning: skipped an image: {exc}", file=sys.stderr)  # the message names the file
            continue
        readable += 1
        # Drawn on and written to video: BGR (or grey); a file's alpha channel is dropped.
        yield cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR) if frame.ndim == 3 and frame.shape[2] == 4 else frame
    if not readable:
        raise SourceError(f"none of the {len(files)} images in {files[0].parent} could be read; check the files.")


def _capture_frames(capture, source: str, camera: bool) -> Iterator[np.ndarray]:
    if not capture.isOpened():
        if camera:
            raise SourceError(
                f"could not open camera {source}. Check that a webcam is connected and not in use "
                f"by another program, try another index (--source 1), or use a file or --source demo."
            )
        raise SourceError(
            f"could not read video {source}: the file is damaged or its codec is not "
            f"supported by OpenCV; convert it to .mp4 (H.264) or .avi (MJPG)."
        )
    return _read_frames(capture, source, camera)


def _read_frames(capture, source: str, camera: bool) -> Iterator[np.ndarray]:
    try:
        first = True
        while True:
            ok, frame = capture.read()
            if not ok:
                if first:
                    raise SourceError(
                        f"{'camera' if camera else 'video'} {source} gave no frames; "
                        f"try another camera index, or convert the video to .mp4 or .avi."
                    )
                return
            first = False
            yield frame
    finally:
        capture.release()


def letterbox(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled to fit (height, width) ``size``, centred on black."""
    height, width = size
    scale = min(height / image.shape[0], width / image.shape[1])
    scaled = cv2.resize(image, (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale))))
    canvas = np.zeros((height, width, 3), np.uint8)
    top, left = (height - scaled.shape[0]) // 2, (width - scaled.shape[1]) // 2
    canvas[top : top + scaled.shape[0], left : left + scaled.shape[1]] = scaled
    return canvas


class AnnotatedOutput:
    """Writes annotated frames to a video (.mp4/.avi) or to images (.jpg/.png, numbered after
    the first) as they come. A video is written under a partial name and moved onto its name by
    ``close()``, also after an interruption (the frames so far make a playable file); an image
    that cannot be encoded or written raises ``SourceError``."""

    VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm"})

    def __init__(self, path: str | Path, fps: float):
        self.path, self.fps, self.writer, self.count = Path(path), fps, None, 0
        self.is_video = self.path.suffix.lower() not in IMAGE_SUFFIXES
        self.partial = partial_name(self.path)

    @staticmethod
    def image_name(path: Path, index: int) -> Path:
        """The name of the index-th image of an image output: NAME, then NAME_1, NAME_2, ..."""
        return path if index == 0 else path.with_stem(f"{path.stem}_{index}")

    @classmethod
    def files_there(cls, path: str | Path) -> list[Path]:
        """The files a run writing to ``path`` would replace: the file itself, and for an image
        output the numbered images after it."""
        path = Path(path)
        there = [path] if path.exists() else []
        if path.suffix.lower() in IMAGE_SUFFIXES:
            # As image_name numbers them (no leading zeros): a user's NAME_01 or NAME_2023 is not ours.
            numbered = re.compile(re.escape(path.stem) + r"_[1-9]\d{0,5}" + re.escape(path.suffix) + "$")
            there += sorted(f for f in path.parent.glob(f"*{path.suffix}") if numbered.match(f.name))
        return there

    def write(self, canvas: np.ndarray) -> None:
        if self.is_video:
            self.writer = self.writer or open_video_writer(self.partial, self.fps, canvas)
            self.size = getattr(self, "size", canvas.shape[:2])
            if canvas.shape[:2] != self.size:  # images of other sizes in one video: fitted, not dropped
                canvas = letterbox(canvas, self.size)
            self.writer.write(canvas)
        else:
            name = self.image_name(self.path, self.count)
            with replacing(name, name.suffix) as tmp:
                try:
                    ok = cv2.imwrite(tmp, canvas)
                except cv2.error:
                    ok = False
                if not ok:
                    raise SourceError(f"could not write image {name}: check the folder and the extension (.jpg, .png).")
        self.count += 1

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
            finish(self.partial, self.path)
