"""From face crops to the seven class probabilities with a saved model: batch prediction for
evaluation (with optional mirror TTA) and the one-compiled-call classifier for live frames."""

from __future__ import annotations

import os

import numpy as np

from .data import Split
from .faces import IMAGE_SIZE, to_model_input
from .modelfile import load_model
from .paths import DEFAULT_MODEL_PATH


def predict_proba(model, x, *, flip_tta: bool = False, batch_size: int = 256, chunk: int = 8192) -> np.ndarray:
    """Class probabilities for uint8 (N, 48, 48) faces (an array, or rows read from disk);
    flip_tta also averages the mirror image. Converted ``chunk`` faces at a time, so memory does
    not grow with N."""
    parts = []
    for start in range(0, len(x), chunk):
        batch = to_model_input(np.asarray(x[start : start + chunk]))
        proba = model.predict(batch, batch_size=batch_size, verbose=0)
        if flip_tta:
            proba = (proba + model.predict(batch[:, :, ::-1], batch_size=batch_size, verbose=0)) / 2
        parts.append(np.asarray(proba, dtype=np.float64))
    return np.concatenate(parts) if parts else np.zeros((0, model.output_shape[-1]))


def accuracy(model, split: Split, *, flip_tta: bool = False) -> float:
    """Share of a split's faces whose most probable class is the true one."""
    return float(np.mean(predict_proba(model, split.x, flip_tta=flip_tta).argmax(1) == split.y))


class ExpressionClassifier:
    """The saved model behind one compiled call for all faces of a frame.

    ``model.predict`` builds a dataset and costs ~70 ms per call; ``predict_on_batch`` reuses a
    compiled function. Batches are padded to a power of two so only a few shapes get traced.
    """

    def __init__(self, model_path: str | os.PathLike = DEFAULT_MODEL_PATH):
        self.model, self.class_names = load_model(model_path)
        self(np.zeros((1, IMAGE_SIZE, IMAGE_SIZE), np.uint8))  # trace once before timing starts

    def __call__(self, faces) -> np.ndarray:
        batch = to_model_input(faces)
        n = len(batch)
        if n == 0:
            return np.zeros((0, len(self.class_names)))
        padded = 1 << (n - 1).bit_length()
        if padded != n:
            batch = np.concatenate([batch, np.zeros((padded - n, *batch.shape[1:]), batch.dtype)])
        return np.asarray(self.model.predict_on_batch(batch))[:n]
