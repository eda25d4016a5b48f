"""Face detection: OpenCV's Haar cascade on a downscaled grey frame, boxes mapped back to the
full frame as (x, y, w, h)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .errors import ParameterError, SourceError

DEFAULT_CASCADE = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"


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
        self.classifier = cv2.CascadeClassifier(str(self.cascade))
        if self.classifier.empty():
            raise SourceError(
                f"cannot load Haar cascade {self.cascade}; give the path of "
                f"haarcascade_frontalface_default.xml (OpenCV 4.x ships it in cv2.data.haarcascades)."
            )

    def __call__(self, grey: np.ndarray) -> np.ndarray:
        """Boxes (x, y, w, h) in full-frame pixels for a grey uint8 frame."""
        small = (
            grey
            if self.scale == 1
            else cv2.resize(grey, None, fx=self.scale, fy=self.scale, interpolation=cv2.INTER_AREA)
        )
        side = max(int(self.min_face * self.scale), 12)
        boxes = self.classifier.detectMultiScale(
            small, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(side, side)
        )
        if len(boxes) == 0:
            return np.zeros((0, 4), int)
        return np.round(np.asarray(boxes, float) / self.scale).astype(int)
