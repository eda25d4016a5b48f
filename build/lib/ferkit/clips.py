"""Generated clips (no download) from the Grace Hopper photo (shipped in models/): the demo clip, and a hard
clip for face detectors with the true face boxes (tilted, small, large, dark, side-lit, half out
of the frame, several faces, no face), and how a detector scores on it."""

from __future__ import annotations

import time
from collections.abc import Iterator

import cv2
import numpy as np

from .paths import SHIPPED_DIR

DEMO_PHOTO = SHIPPED_DIR / "grace_hopper.jpg"
DEMO_SIZE = (720, 480)
DEMO_FRAMES = 90


def demo_photo() -> np.ndarray:
    """The Grace Hopper portrait (US Navy, public domain; the copy matplotlib ships as sample data),
    kept in models/ so the demo needs neither a download nor matplotlib."""
    return cv2.imread(str(DEMO_PHOTO))


def demo_frames(
    n_frames: int = DEMO_FRAMES, size: tuple[int, int] = DEMO_SIZE, copies: int = 1
) -> Iterator[np.ndarray]:
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
        frame[y : y + h, x : x + w] = strip
        yield frame


# The face in the demo photo (grace_hopper.jpg, 512x600), as a square (x, y, side): between the
# boxes YuNet and the Haar cascade give on the clean photo; eyes at about (227, 193), (308, 195).
DEMO_FACE = (173, 127, 190)
HARD_SCENES = ("tilted", "small", "large", "dark", "side-lit", "half out", "two faces", "three faces", "no face")


def _background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A smooth, textured, slightly tinted grey background (structure, but no face)."""
    width, height = size
    coarse = cv2.resize(
        rng.normal(0, 1, (height // 24 + 2, width // 24 + 2)), (width, height), interpolation=cv2.INTER_CUBIC
    )
    tint = rng.uniform(0.8, 1.2, 3)
    grey = 110 + 40 * coarse[..., None] * tint + rng.normal(0, 4, (height, width, 1))
    return np.clip(grey, 0, 255).astype(np.uint8)


def _place(canvas, photo, face_side: float, centre, angle: float) -> tuple[int, int, int, int]:
    """Draw the photo scaled so its face is ``face_side`` px, rotated by ``angle`` degrees about
    the face, with the face centred at ``centre``. Returns the face's ground-truth box: the
    bounding box of the rotated face square, clipped to the frame."""
    fx, fy, side = DEMO_FACE
    scale = face_side / side
    face_centre = (fx + side / 2, fy + side / 2)
    matrix = cv2.getRotationMatrix2D(face_centre, angle, scale)
    matrix[:, 2] += (centre[0] - face_centre[0], centre[1] - face_centre[1])
    height, width = canvas.shape[:2]
    cv2.warpAffine(photo, matrix, (width, height), dst=canvas, borderMode=cv2.BORDER_TRANSPARENT)
    corners = np.array([[fx, fy, 1], [fx + side, fy, 1], [fx, fy + side, 1], [fx + side, fy + side, 1]], float)
    moved = corners @ matrix.T
    x0, y0 = np.clip(moved.min(0), 0, (width, height))
    x1, y1 = np.clip(moved.max(0), 0, (width, height))
    return int(x0), int(y0), int(x1 - x0), int(y1 - y0)


def hard_frames(frames_per_scene: int = 12, size: tuple[int, int] = DEMO_SIZE, seed: int = 0):
    """A hard clip for face detectors, generated from the demo photo (no download), with the true
    face boxes: (frame, boxes, scene) per frame. Scenes, in order: faces tilted up to +-30
    degrees, small (about 40 px), large, dark, side-lit, half out of the frame, two and three
    faces, and frames with no face."""
    rng = np.random.default_rng(seed)
    photo = demo_photo()
    width, height = size
    for scene in HARD_SCENES:
        for i in range(frames_per_scene):
            frame = _background(rng, size)
            t = i / max(frames_per_scene - 1, 1)
            jitter = rng.uniform(-15, 15, 2)
            centre = (width / 2 + jitter[0], height / 2 + jitter[1])
            boxes = []
            if scene == "tilted":
                boxes.append(_place(frame, photo, 150, centre, -30 + 60 * t))
            elif scene == "small":
                boxes.append(_place(frame, photo, rng.uniform(36, 46), centre, rng.uniform(-5, 5)))
            elif scene == "large":
                boxes.append(_place(frame, photo, rng.uniform(300, 360), centre, rng.uniform(-5, 5)))
            elif scene in ("dark", "side-lit"):
                boxes.append(_place(frame, photo, rng.uniform(100, 160), centre, rng.uniform(-8, 8)))
                if scene == "dark":
                    frame = np.clip(frame * rng.uniform(0.15, 0.3) + rng.normal(0, 3, frame.shape), 0, 255)
                else:
                    ramp = np.linspace(1.0, 0.12, width) if i % 2 else np.linspace(0.12, 1.0, width)
                    frame = frame * ramp[None, :, None]
                frame = frame.astype(np.uint8)
            elif scene == "half out":
                side = rng.uniform(120, 160)
                x = 0 if i % 2 else width
                boxes.append(_place(frame, photo, side, (x, centre[1]), rng.uniform(-5, 5)))
            elif scene in ("two faces", "three faces"):
                n = 2 if scene == "two faces" else 3
                for j in range(n):
                    x = width * (j + 0.5) / n + jitter[0] / 2
                    face = rng.uniform(70, 100) if n == 3 else rng.uniform(90, 130)
                    boxes.append(_place(frame, photo, face, (x, centre[1] + 40 * (j % 2)), rng.uniform(-10, 10)))
            yield frame, np.array(boxes, int).reshape(-1, 4), scene


def small_face_stills(n: int = 24, size: tuple[int, int] = (1280, 720), sides=(32, 46), seed: int = 1):
    """Stills with one small face each (``sides`` px, at a random place): (frame, true boxes,
    "small") like ``hard_frames``, for the smallest faces a photo search must find."""
    rng = np.random.default_rng(seed)
    photo = demo_photo()
    width, height = size
    for _ in range(n):
        frame = _background(rng, size)
        side = rng.uniform(*sides)
        centre = (rng.uniform(0.1, 0.9) * width, rng.uniform(0.15, 0.85) * height)
        box = _place(frame, photo, side, centre, rng.uniform(-5, 5))
        yield frame, np.array([box], int), "small"


def match_faces(found: np.ndarray, truth: np.ndarray) -> int:
    """How many true faces a detector found. A true box (the visible part of the face) counts
    when a found box's centre lies in it and the found box's side is between half its shorter
    side and twice its longer side; each found box is used once."""
    used, hits = set(), 0
    for tx, ty, tw, th in truth:
        for i, (x, y, w, h) in enumerate(found):
            cx, cy = x + w / 2, y + h / 2
            inside = tx <= cx <= tx + tw and ty <= cy <= ty + th
            if i not in used and inside and 0.5 * min(tw, th) <= max(w, h) <= 2 * max(tw, th):
                used.add(i)
                hits += 1
                break
    return hits


def score_detector(detector, clip) -> dict:
    """Faces found (recall), false boxes per frame and frames/s of ``detector`` (a frame -> boxes
    callable) on ``clip``, an iterable of (frame, true boxes, scene); also recall by scene."""
    frames = list(clip)
    found, truth, false, by_scene = 0, 0, 0, {}
    started = time.perf_counter()
    results = [detector(frame) for frame, _, _ in frames]
    seconds = time.perf_counter() - started
    for (_, true_boxes, scene), boxes in zip(frames, results):
        hits = match_faces(boxes, true_boxes)
        found, truth, false = found + hits, truth + len(true_boxes), false + len(boxes) - hits
        scene_found, scene_truth = by_scene.get(scene, (0, 0))
        by_scene[scene] = (scene_found + hits, scene_truth + len(true_boxes))
    return {
        "recall": found / max(truth, 1),
        "faces": truth,
        "found": found,
        "false_per_frame": false / len(frames),
        "fps": len(frames) / seconds,
        "recall_by_scene": {k: (f / t if t else None) for k, (f, t) in by_scene.items()},
    }
