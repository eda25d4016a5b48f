"""The public face of the package: a ``Recognizer`` (face detector + expression model) that turns
a BGR image into a list of ``Face`` results, and the ``Pipeline`` that runs it over a video with
detection every few frames and per-face smoothing. ``realtime.py`` uses exactly these objects.

    import cv2
    from ferkit import Recognizer

    recognizer = Recognizer()                      # models/fer_cnn.keras + the YuNet detector
    for face in recognizer(cv2.imread("photo.jpg")):
        print(face.box, face.label, f"{face.confidence:.0%}")
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from .classify import ExpressionClassifier
from .detect import YuNetDetector
from .errors import SourceError
from .faces import crop_faces, to_grey
from .paths import DEFAULT_MODEL_PATH
from .track import FaceSmoother


@dataclass(frozen=True)
class Face:
    """One face found in an image: its box (x, y, w, h) in image pixels, the most probable
    expression with its probability, and all seven probabilities by class name."""

    box: tuple[int, int, int, int]
    label: str
    confidence: float
    probabilities: dict[str, float]
    track_id: int | None = None


class Recognizer:
    """Finds faces in an image and classifies each one's expression.

    ``model`` is a saved ``.keras`` file (default: the shipped model) or an
    ``ExpressionClassifier``; ``detector`` a ``YuNetDetector`` (default), a ``FaceDetector``
    (Haar) or any callable from a frame to (x, y, w, h) boxes. With ``align`` (default) and a
    detector that finds eyes, each face is rotated upright before it is classified.
    """

    def __init__(
        self,
        model: str | os.PathLike | ExpressionClassifier = DEFAULT_MODEL_PATH,
        detector=None,
        align: bool = True,
    ):
        self.classifier = model if isinstance(model, ExpressionClassifier) else ExpressionClassifier(model)
        self.detector = detector if detector is not None else YuNetDetector()
        self.align = align
        self.class_names = self.classifier.class_names

    def detect(self, frame: np.ndarray):
        """(boxes, eyes or None) for a frame; eyes only when aligning and the detector finds them."""
        if hasattr(self.detector, "detect"):
            boxes, eyes = self.detector.detect(frame)
        else:
            boxes, eyes = self.detector(frame), None
        return boxes, (eyes if self.align else None)

    def classify(self, grey: np.ndarray, boxes: np.ndarray, eyes: np.ndarray | None = None) -> np.ndarray:
        """Class probabilities (N, 7) for the faces in these boxes of a grey frame, in one call."""
        return self.classifier(crop_faces(grey, boxes, eyes))

    def faces(self, boxes, probabilities, ids=None) -> list[Face]:
        """``Face`` results from boxes and their probabilities."""
        ids = ids if ids is not None else [None] * len(boxes)
        results = []
        for box, proba, track_id in zip(boxes, probabilities, ids):
            best = int(np.argmax(proba))
            results.append(
                Face(
                    box=tuple(int(v) for v in box),
                    label=self.class_names[best],
                    confidence=float(proba[best]),
                    probabilities={n: float(p) for n, p in zip(self.class_names, proba)},
                    track_id=track_id,
                )
            )
        return results

    def __call__(self, image: np.ndarray) -> list[Face]:
        """Every face in a BGR, BGRA or grey image with its expression."""
        if image is None or not hasattr(image, "shape") or np.asarray(image).ndim not in (2, 3) or not image.size:
            raise SourceError(
                "no image to look at (got None or an empty array); cv2.imread returns None for a missing or "
                "unreadable file: check the path."
            )
        image = np.asarray(image)
        boxes, eyes = self.detect(image)
        return self.faces(boxes, self.classify(to_grey(image), boxes, eyes))


@dataclass
class Pipeline:
    """A video's frames through a ``Recognizer``: detect every ``detect_every`` frames (boxes are
    reused in between), classify all faces in one call, smooth per face."""

    recognizer: Recognizer
    smoother: FaceSmoother = field(default_factory=FaceSmoother)
    detect_every: int = 2
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), int))
    eyes: np.ndarray | None = None
    frame_index: int = 0

    def process(self, frame: np.ndarray):
        """Return (boxes, smoothed probabilities, face ids) for one frame."""
        if self.frame_index % self.detect_every == 0:
            self.boxes, self.eyes = self.recognizer.detect(frame)
        self.frame_index += 1
        proba = self.recognizer.classify(to_grey(frame), self.boxes, self.eyes)
        smoothed, ids = self.smoother.update(self.boxes, proba)
        return self.boxes, smoothed, ids
