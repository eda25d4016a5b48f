"""Decoded faces in one compressed ``.npz``: the file ``data.export_npz`` writes to carry a dataset
to another machine (a GPU's, under its size limit) and ``data.load_dataset`` reads as a dataset.

Arrays: the faces as ``x_up`` (each pixel minus the one above it, PNG's "Up" filter, which zlib
packs tighter: lossless), ``x_webp`` + ``x_ends`` (one lossy WebP image per face, end to end), or
plain ``x`` (uint8 N x 48 x 48, as older files and other tools write them); ``y`` (class indices),
optionally ``group`` (the split of each face) and ``class_names``. This module owns the format;
what the labels and groups mean is checked by ``layouts``.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from .atomic import replacing
from .errors import DatasetError
from .faces import CLASS_NAMES, IMAGE_SIZE


def write_faces_npz(
    path: str | os.PathLike, x: np.ndarray, y: np.ndarray, group: np.ndarray, quality: int | None = None
) -> Path:
    """Write faces, labels and groups atomically: lossless row differences, or WebP at ``quality``
    (1-100; FER2013's training faces at 90: 25 MiB against 62 lossless, about 2 grey levels RMS)."""
    if quality is None:
        faces = {"x_up": np.diff(x, axis=1, prepend=np.zeros((len(x), 1, x.shape[2]), np.uint8)).astype(np.uint8)}
    else:
        faces = _encode_webp(x, quality)
    path = Path(path)
    with replacing(path, ".tmp.npz") as tmp:
        np.savez_compressed(tmp, **faces, y=y, group=group, class_names=np.array(CLASS_NAMES))
    return path


def read_faces_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(x uint8 (N, 48, 48), y, group or None) from a faces ``.npz``, or one ``DatasetError``
    that says what is wrong with the file (not a zip, an array missing, other classes, shapes)."""
    try:
        with np.load(path) as data:
            has_x = any(k in data.files for k in ("x", "x_up", "x_webp"))
            missing = [k for k in ("x", "y") if k not in data.files and not (k == "x" and has_x)]
            if missing:
                raise DatasetError(f"{path} lacks the array {missing[0]!r}; write it with tools/export_npz.py.")
            if "x_webp" in data.files:
                x = _decode_webp(data["x_webp"], data["x_ends"])
            elif "x_up" in data.files:
                x = np.cumsum(data["x_up"], axis=1, dtype=np.uint8)
            else:
                x = data["x"]
            y = data["y"]
            group = data["group"] if "group" in data.files else None
            names = tuple(data["class_names"].tolist()) if "class_names" in data.files else CLASS_NAMES
    except DatasetError:
        raise
    except Exception as exc:  # not a zip, cut short, bit-flipped
        raise DatasetError(f"{path} cannot be read as an .npz ({type(exc).__name__}); export it again.") from None
    if names != CLASS_NAMES:
        raise DatasetError(f"{path} has classes {', '.join(names)}; expected {', '.join(CLASS_NAMES)}, in that order.")
    # Labels and groups are one number per face: a 0-d or 2-D array is refused here, not met later
    # as a traceback from len() or as groups that silently mean something else.
    group_shape = y.shape if group is None else group.shape
    faces_ok = x.dtype == np.uint8 and x.ndim == 3 and x.shape[1:] == (IMAGE_SIZE, IMAGE_SIZE)
    if not faces_ok or y.ndim != 1 or group_shape != y.shape or x.shape[:1] != y.shape:
        raise DatasetError(
            f"{path} holds x {x.dtype} {x.shape}, y {y.shape}, group {group_shape}; expected uint8 (N, 48, 48) "
            f"faces with N labels and N groups, (N,) each. Write it with tools/export_npz.py."
        )
    return x, y, group


def _encode_webp(x: np.ndarray, quality: int) -> dict[str, np.ndarray]:
    """Faces as WebP images end to end in one byte array, with where each one ends."""
    blobs = [cv2.imencode(".webp", face, [cv2.IMWRITE_WEBP_QUALITY, quality])[1].ravel() for face in x]
    return {"x_webp": np.concatenate(blobs), "x_ends": np.cumsum([len(b) for b in blobs])}


def _decode_webp(blob: np.ndarray, ends: np.ndarray) -> np.ndarray:
    starts = np.concatenate([[0], ends[:-1]])
    with ThreadPoolExecutor() as pool:  # OpenCV's decoder releases the GIL
        faces = list(pool.map(lambda se: cv2.imdecode(blob[se[0] : se[1]], cv2.IMREAD_GRAYSCALE), zip(starts, ends)))
    if any(face is None or face.shape != (IMAGE_SIZE, IMAGE_SIZE) for face in faces):
        raise DatasetError("the .npz holds a WebP face that does not decode to 48x48; export it again.")
    return np.stack(faces) if faces else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
