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


def text_scale(canvas: np.ndarray) -> float:
    """How large to draw on this image: 1 for webcam frames (640-1000 pixels on the long side),
    growing with larger photos (a 4000-pixel phone photo: 4) so labels stay readable when the
    image is viewed whole, and down to 0.5 for small images so a label fits beside its face."""
    side = max(canvas.shape[:2])
    return min(max(side / 1000, min(side / 640, 1.0), 0.5), 4.0)


def draw(frame: np.ndarray, boxes, probabilities, class_names, fps: float | None, bars: bool, ids=None) -> np.ndarray:
    """The frame with a box and label per face; ``ids`` (one per face, or None) are drawn before
    the label as #N, the names of the report's face_N files and of the log's face column."""
    if frame.ndim == 3 and frame.shape[2] == 4:  # a PNG with transparency keeps its colours
        canvas = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    elif frame.ndim == 3 and frame.shape[2] == 3:
        canvas = frame.copy()
    else:
        canvas = cv2.cvtColor(to_grey(frame), cv2.COLOR_GRAY2BGR)
    ids = list(ids) if ids is not None else [None] * len(boxes)
    scale = text_scale(canvas)
    font, thick = 0.6 * scale, max(1, round(2 * scale))
    for (x, y, w, h), proba, face_id in zip(boxes, probabilities, ids):
        best = int(np.argmax(proba))
        colour = COLOURS.get(class_names[best], (0, 255, 0))
        cv2.rectangle(canvas, (x, y), (x + w, y + h), colour, thick)
        label = ("" if face_id is None else f"#{face_id} ") + f"{class_names[best]} {proba[best]:.0%}"
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font, thick)
        pad = max(3, round(4 * scale))
        top = max(y - th - 2 * pad, 0)
        left = max(min(x, canvas.shape[1] - tw - 2 * pad), 0)  # inside the image, also for faces at its edge
        cv2.rectangle(canvas, (left, top), (left + tw + 2 * pad, top + th + 2 * pad), colour, -1)
        cv2.putText(canvas, label, (left + pad, top + th + pad), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), thick)
        if bars:
            draw_bars(canvas, (x, y, w, h), proba, class_names, scale=scale)
    if fps is not None:
        draw_fps(canvas, fps)
    return canvas


def draw_fps(canvas: np.ndarray, fps: float) -> np.ndarray:
    cv2.putText(canvas, f"{fps:5.1f} FPS", (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 255, 0), 2)
    return canvas


def draw_bars(canvas, box, proba, class_names, width: int = 80, scale: float = 1.0) -> None:
    """A small bar chart of all class probabilities beside a face box (right, else left);
    ``scale`` as ``text_scale`` gives for the image."""
    x, y, w, _ = box

    def px(n: float) -> int:
        return round(n * scale)

    panel_w, panel_h = px(width + 70), px(14 * len(class_names) + 6)
    left = x + w + px(6) if x + w + px(6) + panel_w <= canvas.shape[1] else max(x - panel_w - px(6), 0)
    top = min(max(y, 0), max(canvas.shape[0] - panel_h, 0))
    region = canvas[top : top + panel_h, left : left + panel_w]
    region[:] = (region * 0.35).astype(np.uint8)
    for i, (name, p) in enumerate(zip(class_names, proba)):
        row = top + px(4 + 14 * i)
        cv2.putText(
            canvas,
            name[:8],
            (left + px(3), row + px(10)),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.38 * scale,
            (255, 255, 255),
            max(1, px(1)),
            cv2.LINE_AA,
        )
        cv2.rectangle(
            canvas,
            (left + px(64), row + px(2)),
            (left + px(64 + width * p), row + px(11)),
            COLOURS.get(name, (0, 255, 0)),
            -1,
        )
