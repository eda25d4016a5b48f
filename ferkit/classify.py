"""From face crops to the seven class probabilities with a saved model: batch prediction for
evaluation (with optional mirror and crop TTA) and the one-compiled-call classifier for live frames."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .data import Split
from .errors import ParameterError
from .faces import IMAGE_SIZE, to_model_input
from .modelfile import is_onnx, load_model
from .paths import DEFAULT_MODEL_PATH
from .progress import bar as progress_bar

# Test-time augmentation modes (besides none), and how reports name each setting.
TTA_MODES = ("flip", "crops")
TTA_NAMES = {
    None: "single pass",
    False: "single pass",
    True: "flip TTA",
    "flip": "flip TTA",
    "crops": "12-view crop TTA",
}


def tta_options(tta) -> dict:
    """``predict_proba``'s keywords for a TTA setting: None / False, True / "flip", or "crops"."""
    return {"flip_tta": bool(tta), "crops": tta == "crops"}


# Crop TTA: the centre and four corners, CROP_SIZE pixels square, each scaled back to the input
# size (a 9% zoom, inside the training augmentation's +-10%).
CROP_SIZE = 44


def _crop_views(batch: np.ndarray):
    import cv2

    m = IMAGE_SIZE - CROP_SIZE
    for top, left in ((m // 2, m // 2), (0, 0), (0, m), (m, 0), (m, m)):
        crops = batch[:, top : top + CROP_SIZE, left : left + CROP_SIZE, 0]
        yield np.stack([cv2.resize(c, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_LINEAR) for c in crops])[
            ..., None
        ]


def tta_views(batch: np.ndarray, *, flip_tta: bool = False, crops: bool = False) -> list[np.ndarray]:
    """The views of a model-input batch (N, 48, 48, 1) whose probabilities TTA averages: the batch
    itself, with ``crops`` five 44-pixel crops of it, with ``flip_tta`` the mirror of each."""
    views = [batch, *(_crop_views(batch) if crops else ())]
    if flip_tta:
        views += [v[:, :, ::-1] for v in views]
    return views


def predict_proba(
    model,
    x,
    *,
    flip_tta: bool = False,
    crops: bool = False,
    batch_size: int = 256,
    chunk: int = 8192,
    progress: str | None = None,
) -> np.ndarray:
    """Class probabilities for uint8 (N, 48, 48) faces (an array, or rows read from disk).
    flip_tta averages with the mirror image; crops also with five 44-pixel crops (centre,
    corners) of each, so 12 views with flip_tta. Converted ``chunk`` faces at a time, so memory
    does not grow with N. ``progress``: the label of a progress bar on stderr (gone when done);
    a split read with 12 views takes minutes on a CPU."""
    views = view_probabilities(
        model, x, flip_tta=flip_tta, crops=crops, batch_size=batch_size, chunk=chunk, progress=progress
    )
    return views.mean(0)


def ensemble_members(model) -> list:
    """The models an ensemble file (``ensemble.py``) averages, or ``[model]`` for any other."""
    layers = getattr(model, "layers", None)
    if not layers or layers[-1].name != "mean_probability":
        return [model]
    # One level: an average whose members are averages themselves is calibrated on its members'
    # outputs (rare; ensemble.py can build one), so its ECE after is near, not exactly, the file's.
    return [layer for layer in layers if hasattr(layer, "layers") and hasattr(layer, "predict")]


def view_probabilities(
    model,
    x,
    *,
    flip_tta: bool = False,
    crops: bool = False,
    members: bool = False,
    batch_size: int = 256,
    chunk: int = 8192,
    progress: str | None = None,
) -> np.ndarray:
    """(K, N, C): ``predict_proba``'s probabilities before the average, one row per TTA view and,
    with ``members``, per model an ensemble file averages (their mean is ``predict_proba``). What
    a temperature acts on: it is folded into each member and applied to each view."""
    if progress:
        chunk = min(chunk, 512)  # the bar moves once per chunk
    nets = ensemble_members(model) if members else [model]
    parts = []
    # Closed on the way out of an interruption too: left open, it was drawn again under the
    # "interrupted" line, the terminal's last line a stale bar.
    with progress_bar(total=len(x), desc=progress, unit="face", leave=False, disable=not progress) as bar:
        for start in range(0, len(x), chunk):
            views = tta_views(to_model_input(np.asarray(x[start : start + chunk])), flip_tta=flip_tta, crops=crops)
            parts.append(
                np.stack(
                    [
                        np.asarray(net.predict(v, batch_size=batch_size, verbose=0), np.float64)
                        for v in views
                        for net in nets
                    ]
                )
            )
            bar.update(parts[-1].shape[1])
    if not parts:
        return np.zeros((1, 0, model.output_shape[-1]))
    return np.concatenate(parts, axis=1)


def accuracy(model, split: Split, *, flip_tta: bool = False, crops: bool = False, progress: str | None = None) -> float:
    """Share of a split's faces whose most probable class is the true one."""
    proba = predict_proba(model, split.x, flip_tta=flip_tta, crops=crops, progress=progress)
    return float(np.mean(proba.argmax(1) == split.y))


class ExpressionClassifier:
    """The saved model behind one call for all faces of a frame: an ``.onnx`` file (the default,
    run by ONNX Runtime) or a ``.keras`` file.

    Keras' ``model.predict`` builds a dataset and costs ~70 ms per call; ``predict_on_batch``
    reuses a compiled function, and batches are padded to a power of two so only a few shapes
    get traced. ONNX Runtime takes any batch size as it is.
    """

    CHUNK = 256

    def __init__(self, model_path: str | os.PathLike = DEFAULT_MODEL_PATH, tta: str | None = None):
        if tta not in (None, *TTA_MODES):
            raise ParameterError("tta", f"is {tta!r}; use None (one view), 'flip' or 'crops'")
        self.model, self.class_names = load_model(model_path)
        self.path = Path(model_path)
        self.tta = tta
        self._views = tta_options(tta)
        self._pad = not is_onnx(model_path)
        self(np.zeros((1, IMAGE_SIZE, IMAGE_SIZE), np.uint8))  # trace once before timing starts

    def __call__(self, faces) -> np.ndarray:
        if len(faces) > self.CHUNK:  # a folder's worth of faces: bounded memory, same results
            parts = [self(faces[i : i + self.CHUNK]) for i in range(0, len(faces), self.CHUNK)]
            return np.concatenate(parts)
        n = len(faces)
        if n == 0:
            return np.zeros((0, len(self.class_names)))
        # With TTA every view of every face goes into the same call: one model call per frame still.
        batch = np.concatenate(tta_views(to_model_input(faces), **self._views))
        rows = len(batch)
        padded = 1 << (rows - 1).bit_length() if self._pad else rows
        if padded != rows:
            batch = np.concatenate([batch, np.zeros((padded - rows, *batch.shape[1:]), batch.dtype)])
        proba = np.asarray(self.model.predict_on_batch(batch))[:rows]
        return proba.reshape(rows // n, n, -1).mean(axis=0)
