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
    the label as #N, the names of the report's face_N files and of the log's face column. With
    ``bars`` each face gets a panel of its probabilities, placed where it covers no face, label
    or other panel when the image has room (right of the face, else left, below, above)."""
    if frame.ndim == 3 and frame.shape[2] == 4:  # a PNG with transparency keeps its colours
        canvas = cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR)
    elif frame.ndim == 3 and frame.shape[2] == 3:
        canvas = frame.copy()
    else:
        canvas = cv2.cvtColor(to_grey(frame), cv2.COLOR_GRAY2BGR)
    ids = list(ids) if ids is not None else [None] * len(boxes)
    scale = text_scale(canvas)
    font, thick = 0.6 * scale, max(1, round(2 * scale))
    pad = max(3, round(4 * scale))
    labels = []
    for (x, y, _w, _h), proba, face_id in zip(boxes, probabilities, ids):
        best = int(np.argmax(proba))
        text = ("" if face_id is None else f"#{face_id} ") + f"{class_names[best]} {proba[best]:.0%}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, thick)
        top = max(y - th - 2 * pad, 0)
        left = max(min(x, canvas.shape[1] - tw - 2 * pad), 0)  # inside the image, also for faces at its edge
        labels.append((text, best, (left, top, left + tw + 2 * pad, top + th + 2 * pad), th))
    if bars:
        # Panels first, so that no label is drawn over; each keeps clear of every face and label.
        taken = [(x, y, x + w, y + h) for x, y, w, h in boxes] + [rect for *_, rect, _ in labels]
        for box, proba in zip(boxes, probabilities):
            taken.append(draw_bars(canvas, box, proba, class_names, scale=scale, avoid=taken))
    for (x, y, w, h), (text, best, (left, top, right, bottom), th) in zip(boxes, labels):
        colour = COLOURS.get(class_names[best], (0, 255, 0))
        cv2.rectangle(canvas, (x, y), (x + w, y + h), colour, thick)
        cv2.rectangle(canvas, (left, top), (right, bottom), colour, -1)
        cv2.putText(canvas, text, (left + pad, top + th + pad), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), thick)
    if fps is not None:
        draw_fps(canvas, fps)
    return canvas


def draw_fps(canvas: np.ndarray, fps: float) -> np.ndarray:
    cv2.putText(canvas, f"{fps:5.1f} FPS", (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 255, 0), 2)
    return canvas


def _overlap(a, b) -> int:
    """Area shared by two rectangles given as (x0, y0, x1, y1)."""
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def panel_place(shape, box, size, avoid=(), gap: int = 6) -> tuple[int, int]:
    """Top-left corner for a ``size`` = (width, height) panel beside ``box`` = (x, y, w, h) inside
    an image of ``shape``: right of the box, else left, below or above, the first that covers none
    of ``avoid`` (rectangles (x0, y0, x1, y1)) nor the box; when every side covers something (a
    crowded or small image), the side that covers least."""
    x, y, w, h = box
    pw, ph = size
    rows, cols = shape[:2]
    own = (x, y, x + w, y + h)
    best, best_cost = None, None
    for cx, cy in ((x + w + gap, y), (x - pw - gap, y), (x, y + h + gap), (x, y - ph - gap)):
        left, top = min(max(cx, 0), max(cols - pw, 0)), min(max(cy, 0), max(rows - ph, 0))
        rect = (left, top, left + pw, top + ph)
        # The panel's own face counts double: covering it hides what the panel describes.
        cost = 2 * _overlap(rect, own) + sum(_overlap(rect, other) for other in avoid if other != own)
        if best_cost is None or cost < best_cost:
            best, best_cost = (left, top), cost
        if cost == 0:
            break
    return best


def draw_bars(canvas, box, proba, class_names, width: int = 80, scale: float = 1.0, avoid=()):
    """A small bar chart of all class probabilities beside a face box, placed by ``panel_place``
    clear of ``avoid`` where it can be; ``scale`` as ``text_scale`` gives for the image. Returns
    the panel's rectangle (x0, y0, x1, y1)."""

    def px(n: float) -> int:
        return round(n * scale)

    panel_w, panel_h = px(width + 70), px(14 * len(class_names) + 6)
    left, top = panel_place(canvas.shape, box, (panel_w, panel_h), avoid, gap=px(6))
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
    return (left, top, left + panel_w, top + panel_h)
