"""Face detection on a downscaled frame, boxes mapped back to the full frame as (x, y, w, h):
OpenCV's YuNet CNN (default; also gives eye positions for upright crops) and the seed's Haar
cascade. Both take a grey, BGR or BGRA frame; ``detect`` returns (boxes, eyes or None)."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import ParameterError, SourceError
from .faces import to_grey
from .paths import DEFAULT_YUNET

DEFAULT_CASCADE = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
# Below this many pixels a side no detector finds a face (and OpenCV refuses an empty resize).
SMALLEST_FRAME = 8


def check_counts(settings, **least) -> None:
    """Whole-number settings (attributes of ``settings``: a detector, a pipeline) at or above their
    least values (``min_face=1``); one ``ParameterError`` naming the first that is not."""
    for name, low in least.items():
        value = getattr(settings, name)
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ParameterError(name, f"is {value!r}; give a whole number, {low} or more")


def downscaled(frame: np.ndarray, scale: float) -> np.ndarray | None:
    """The frame scaled by ``scale`` (area averaging), or None when it would be too small to hold
    a face (a 1x1 image, a tiny --detect-scale)."""
    if scale == 1:
        return frame if min(frame.shape[:2]) >= SMALLEST_FRAME else None
    size = (int(round(frame.shape[1] * scale)), int(round(frame.shape[0] * scale)))
    if min(size) < SMALLEST_FRAME:
        return None
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


@dataclass
class FaceDetector:
    """Haar cascade on a grey frame downscaled by ``scale``; boxes are mapped back to the full
    frame. ``scale_factor`` and ``min_neighbors`` are detectMultiScale's; ``min_face`` is the
    smallest face side in full-frame pixels."""

    cascade: str | os.PathLike = DEFAULT_CASCADE
    scale: float = 0.5
    scale_factor: float = 1.2
    min_neighbors: int = 5
    min_face: int = 60

    def __post_init__(self):
        if not 0 < self.scale <= 1:
            raise ParameterError("scale", "must be in (0, 1]")
        if self.scale_factor <= 1:
            raise ParameterError("scale_factor", "must be greater than 1")
        check_counts(self, min_face=1, min_neighbors=0)
        if not Path(self.cascade).expanduser().is_file():  # before OpenCV, which logs its own error line
            raise SourceError(
                f"Haar cascade {self.cascade} not found; give the path of haarcascade_frontalface_default.xml "
                f"(OpenCV 4.x ships it in cv2.data.haarcascades), or leave it out for that one."
            )
        try:
            self.classifier = cv2.CascadeClassifier(str(Path(self.cascade).expanduser()))
        except (cv2.error, SystemError):  # a file that is not a cascade XML at all (OpenCV wraps its error)
            self.classifier = None
        if self.classifier is None or self.classifier.empty():
            raise SourceError(
                f"cannot load Haar cascade {self.cascade}; give the path of "
                f"haarcascade_frontalface_default.xml (OpenCV 4.x ships it in cv2.data.haarcascades)."
            )
        self._lock = threading.Lock()  # one OpenCV detector object: one call at a time (see YuNetDetector)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """Boxes (x, y, w, h) in full-frame pixels."""
        return self.detect(frame)[0]

    def detect(self, frame: np.ndarray):
        """(boxes, None): the Haar cascade finds no landmarks."""
        grey = to_grey(frame)
        small = downscaled(grey, self.scale)
        if small is None:
            return np.zeros((0, 4), int), None
        side = max(int(self.min_face * self.scale), 12)
        with self._lock:
            boxes = self.classifier.detectMultiScale(
                small, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(side, side)
            )
        if len(boxes) == 0:
            return np.zeros((0, 4), int), None
        return np.round(np.asarray(boxes, float) / self.scale).astype(int), None


# YuNet's boxes are tight around the face; FER2013's crops show more forehead and chin. This maps
# a YuNet box (x, y, w, h) to the FER framing: centre shift (dx, dy) and side as shares of the
# YuNet box's width. Measured by benchmarks/faces_in_frames.py --framing-only on PublicTest
# faces (never the test split) pasted into larger frames, where the FER crop is the known answer.
FER_FRAMING = (0.007, -0.024, 1.231)  # 3,589 PublicTest faces, 94.2% found


@dataclass
class YuNetDetector:
    """OpenCV's YuNet face detector (``cv2.FaceDetectorYN``) on a frame downscaled by ``scale``.

    Finds turned, tilted, small and badly lit faces the Haar cascade misses, and the eye
    positions for upright crops. Boxes are reframed like FER2013's crops (``FER_FRAMING``);
    faces scoring below ``score_threshold`` or smaller than ``min_face`` pixels are dropped."""

    model: str | os.PathLike = DEFAULT_YUNET
    scale: float = 0.5
    score_threshold: float = 0.7
    nms_threshold: float = 0.3
    min_face: int = 24
    framing: tuple = FER_FRAMING

    def __post_init__(self):
        if not 0 < self.scale <= 1:
            raise ParameterError("scale", "must be in (0, 1]")
        if not 0 < self.score_threshold < 1:
            raise ParameterError("score_threshold", "must be between 0 and 1")
        if not 0 < self.nms_threshold <= 1:  # the overlap above which two boxes are one face
            raise ParameterError("nms_threshold", "must be in (0, 1]")
        check_counts(self, min_face=1)
        if not Path(self.model).is_file():
            raise SourceError(
                f"YuNet model {self.model} not found; it ships in models/ (face_detection_yunet_2026may.onnx). "
                f"Restore it with git, download it from OpenCV Zoo, or use the Haar detector."
            )
        try:
            self.net = cv2.FaceDetectorYN.create(
                str(self.model), "", (320, 320), self.score_threshold, self.nms_threshold, 50
            )
        except cv2.error:
            raise SourceError(
                f"cannot load YuNet model {self.model}: the file is damaged or this OpenCV is older than 4.8; "
                f"restore the file or upgrade opencv-python-headless."
            ) from None
        self._input_size = (320, 320)
        # OpenCV's detector object keeps its input size and buffers between calls: two threads in
        # it at once corrupted the heap (a Recognizer shared by a thread pool crashed the process).
        # So one call at a time; the model's part of the work (ONNX Runtime) still runs in parallel.
        self._lock = threading.Lock()

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """Boxes (x, y, w, h) in full-frame pixels."""
        return self.detect(frame)[0]

    def detect(self, frame: np.ndarray):
        """(boxes (N, 4) int, eyes (N, 2, 2) float: each face's two eye centres as (x, y))."""
        return self._detect_at(_as_bgr(frame), self.scale)

    def _detect_at(self, frame: np.ndarray, scale: float, keep_scores: bool = False):
        small = downscaled(frame, scale)
        faces = self._yunet(small) if small is not None else None
        if faces is None or len(faces) == 0:
            return (np.zeros((0, 4), int), np.zeros((0, 2, 2))) + ((np.zeros(0),) if keep_scores else ())
        scores = faces[:, 14].copy()
        faces = faces[:, :14] / scale
        big_enough = np.minimum(faces[:, 2], faces[:, 3]) >= self.min_face
        faces, scores = faces[big_enough], scores[big_enough]
        x, y, w, h = faces[:, 0], faces[:, 1], faces[:, 2], faces[:, 3]
        dx, dy, side = self.framing
        cx, cy, s = x + w / 2 + dx * w, y + h / 2 + dy * w, side * w
        boxes = np.round(np.stack([cx - s / 2, cy - s / 2, s, s], axis=1)).astype(int)
        eyes = faces[:, 4:8].reshape(-1, 2, 2)
        return (boxes, eyes, scores) if keep_scores else (boxes, eyes)

    def _yunet(self, image: np.ndarray) -> np.ndarray | None:
        """YuNet's rows (box, five landmarks, score) for an image, in its pixels. An image of more
        than ``TILE_ABOVE`` pixels is searched in overlapping tiles: YuNet's buffers grow with the image
        it sees (a 8000x6000 photo took 3.5 GB at once), while a face it can find (at most a few
        hundred pixels there) lies wholly inside one tile; the tiles' repeats are merged."""
        height, width = image.shape[:2]
        if height * width <= TILE_ABOVE:
            return self._run(image)
        found = []
        for top, tall in _tiles(height):
            for left, wide in _tiles(width):
                rows = self._run(image[top : top + tall, left : left + wide])
                if rows is not None and len(rows):
                    rows = rows.copy()
                    rows[:, _XS] += left  # the box's corner and each landmark; w and h stay
                    rows[:, _YS] += top
                    found.append(rows)
        if not found:
            return None
        rows = np.concatenate(found)
        keep = cv2.dnn.NMSBoxes(rows[:, :4].tolist(), rows[:, 14].tolist(), self.score_threshold, self.nms_threshold)
        return rows[np.asarray(keep, int).reshape(-1)]

    def _run(self, image: np.ndarray) -> np.ndarray | None:
        size = (image.shape[1], image.shape[0])
        with self._lock:
            if size != self._input_size:
                self.net.setInputSize(size)
                self._input_size = size
            return self.net.detect(np.ascontiguousarray(image))[1]

    def detect_still(self, frame: np.ndarray):
        """``detect`` for a single image, where time matters less than finding every face: YuNet
        finds faces of about 10-300 pixels in the image it sees, so a photo is searched at full
        size and at every third of that until the image is at most 320 pixels long (a 40-pixel
        face in an 8000-pixel photo, and a face that fills the image, whatever its size), and the
        boxes are merged by non-maximum suppression. A face much larger than YuNet's range can
        also be half-found at full size (its eyes and nose as a face): a box mostly inside a
        better-scoring one is dropped, since one face does not sit inside another. ``scale`` does
        not apply here."""
        frame = _as_bgr(frame)
        scales, long_side = [1.0], max(frame.shape[:2])
        while long_side * scales[-1] > 320:
            scales.append(scales[-1] / 3)
        found = [self._detect_at(frame, s, keep_scores=True) for s in scales]
        boxes = np.concatenate([f[0] for f in found])
        eyes = np.concatenate([f[1] for f in found])
        scores = np.concatenate([f[2] for f in found])
        if len(boxes) <= 1:
            return boxes, eyes
        keep = cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), self.score_threshold, self.nms_threshold)
        keep = np.asarray(keep, int).reshape(-1)
        keep = np.sort(_not_inside(boxes[keep], scores[keep], keep))
        return boxes[keep], eyes[keep]


# Images of more than TILE_ABOVE pixels are searched in tiles of at most TILE pixels a side that
# overlap by TILE_OVERLAP, more than the largest face YuNet finds in the image it sees (about 300
# pixels), so every face lies wholly inside some tile. The tiles of a side are of one length, so
# they repeat as little as they can (8000x6000: nine tiles, 1.2x the pixels of the whole).
TILE, TILE_OVERLAP, TILE_ABOVE = 3000, 320, 13_000_000
# Columns of YuNet's rows that hold x and y: the box's corner (0, 1), then five landmarks (4-13).
_XS, _YS = [0, 4, 6, 8, 10, 12], [1, 5, 7, 9, 11, 13]


def _tiles(length: int) -> list[tuple[int, int]]:
    """(start, length) of the tiles along one side: as few as cover it with TILE_OVERLAP between
    neighbours, all of one length."""
    count = max(1, -(-(length - TILE_OVERLAP) // (TILE - TILE_OVERLAP)))
    size = -(-(length + (count - 1) * TILE_OVERLAP) // count)
    return [(min(i * (size - TILE_OVERLAP), length - size), size) for i in range(count)]


def _not_inside(boxes: np.ndarray, scores: np.ndarray, index: np.ndarray, most: float = 0.6) -> np.ndarray:
    """``index`` without the boxes whose area lies ``most`` or more inside a box of higher score."""
    order = np.argsort(-scores, kind="stable")
    kept = []
    for i in order:
        x, y, w, h = boxes[i]
        inside = False
        for j in kept:
            X, Y, W, H = boxes[j]
            overlap = max(0, min(x + w, X + W) - max(x, X)) * max(0, min(y + h, Y + H) - max(y, Y))
            inside = inside or overlap >= most * w * h
        if not inside:
            kept.append(i)
    return index[kept]


def _as_bgr(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2 or frame.shape[2] == 1:
        return cv2.cvtColor(frame.reshape(frame.shape[:2]), cv2.COLOR_GRAY2BGR)
    if frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    return frame


DETECTORS = {"yunet": YuNetDetector, "haar": FaceDetector}
