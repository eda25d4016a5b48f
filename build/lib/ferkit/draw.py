"""Drawing results on a frame: a box per face in its expression's colour, the label with its
confidence, optional probability bars, and the frame rate."""

from __future__ import annotations

import cv2
import numpy as np

from .faces import to_grey

COLOURS = {
    "angry": (40, 40, 220),
    "disgust": (40, 140, 40),
    "fear": (160, 60, 160),
    "happy": (40, 200, 240),
    "neutral": (200, 200, 200),
    "sad": (200, 120, 40),
    "surprise": (60, 170, 250),
}


def draw(frame: np.ndarray, boxes, probabilities, class_names, fps: float | None, bars: bool, ids=None) -> np.ndarray:
    """The frame with a box and label per face; ``ids`` (one per face, or None) are drawn before
    the label as #N, the names of the report's face_N files and of the log's face column."""
    canvas = frame if frame.ndim == 3 and frame.shape[2] == 3 else cv2.cvtColor(to_grey(frame), cv2.COLOR_GRAY2BGR)
    canvas = canvas.copy()
    ids = list(ids) if ids is not None else [None] * len(boxes)
    for (x, y, w, h), proba, face_id in zip(boxes, probabilities, ids):
        best = int(np.argmax(proba))
        colour = COLOURS.get(class_names[best], (0, 255, 0))
        cv2.rectangle(canvas, (x, y), (x + w, y + h), colour, 2)
        label = ("" if face_id is None else f"#{face_id} ") + f"{class_names[best]} {proba[best]:.0%}"
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 2)
        top = max(y - th - 8, 0)
        cv2.rectangle(canvas, (x, top), (x + tw + 6, top + th + 8), colour, -1)
        cv2.putText(canvas, label, (x + 3, top + th + 3), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 2)
        if bars:
            draw_bars(canvas, (x, y, w, h), proba, class_names)
    if fps is not None:
        draw_fps(canvas, fps)
    return canvas


def draw_fps(canvas: np.ndarray, fps: float) -> np.ndarray:
    cv2.putText(canvas, f"{fps:5.1f} FPS", (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 255, 0), 2)
    return canvas


def draw_bars(canvas, box, proba, class_names, width: int = 80) -> None:
    """A small bar chart of all class probabilities beside a face box (right, else left)."""
    x, y, w, _ = box
    panel_w, panel_h = width + 70, 14 * len(class_names) + 6
    left = x + w + 6 if x + w + 6 + panel_w <= canvas.shape[1] else max(x - panel_w - 6, 0)
    top = min(max(y, 0), max(canvas.shape[0] - panel_h, 0))
    region = canvas[top : top + panel_h, left : left + panel_w]
    region[:] = (region * 0.35).astype(np.uint8)
    for i, (name, p) in enumerate(zip(class_names, proba)):
        row = top + 4 + 14 * i
        cv2.putText(
            canvas, name[:8], (left + 3, row + 10), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (255, 255, 255), 1, cv2.LINE_AA
        )
        cv2.rectangle(
            canvas, (left + 64, row + 2), (left + 64 + int(width * p), row + 11), COLOURS.get(name, (0, 255, 0)), -1
        )
