"""Calibrated confidence: how far a model's stated probability is from how often it is right
(expected calibration error, reliability diagram), and temperature scaling fitted on the
validation split and folded into the model's last layer, so every script that loads the model
shows calibrated percentages at no cost (the most probable class never changes)."""

from __future__ import annotations

import numpy as np

from .errors import ModelFileError


def reliability(proba: np.ndarray, y: np.ndarray, bins: int = 15):
    """Per confidence bin (equal width on [0, 1]): (mean confidence, accuracy, count)."""
    confidence, correct = proba.max(1), proba.argmax(1) == y
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        n = int(inside.sum())
        rows.append(
            (float(confidence[inside].mean()) if n else np.nan, float(correct[inside].mean()) if n else np.nan, n)
        )
    return rows


def expected_calibration_error(proba: np.ndarray, y: np.ndarray, bins: int = 15) -> float:
    """ECE: the count-weighted mean gap between confidence and accuracy over ``bins`` bins."""
    rows = reliability(proba, y, bins)
    total = sum(n for _, _, n in rows)
    return float(sum(n * abs(c - a) for c, a, n in rows if n) / total)


def with_temperature(proba: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(log p / T): the probabilities a model gives after temperature scaling. ``proba``
    (N, C), or (K, N, C) for views or ensemble members that are averaged (``view_probabilities``):
    each is scaled, as the folded temperature scales it, then they are averaged."""
    logits = np.log(np.clip(proba, 1e-12, 1)) / temperature
    logits -= logits.max(-1, keepdims=True)
    scaled = np.exp(logits)
    scaled /= scaled.sum(-1, keepdims=True)
    return scaled.mean(0) if scaled.ndim == 3 else scaled


# The temperatures searched. One at either end means the search ran out of room, not that it
# found a best: at 20 the model's probabilities are near uniform, i.e. they carry almost nothing.
TEMPERATURE_RANGE = (0.05, 20.0)


def fit_temperature(proba: np.ndarray, y: np.ndarray) -> float:
    """The temperature in ``TEMPERATURE_RANGE`` that minimises the negative log-likelihood of
    ``y`` (fit on validation); ``proba`` as ``with_temperature`` takes it."""
    from scipy.optimize import minimize_scalar

    def nll(log_t):
        scaled = with_temperature(proba, float(np.exp(log_t)))
        return -np.mean(np.log(np.clip(scaled[np.arange(len(y)), y], 1e-12, 1)))

    return float(np.exp(minimize_scalar(nll, bounds=tuple(np.log(TEMPERATURE_RANGE)), method="bounded").x))


def fold_temperature(model, temperature: float) -> None:
    """Divide the logits of every softmax output layer (the model's, or each averaged member's)
    by ``temperature``, in place: softmax(z / T) with z = Wx + b is softmax((W/T)x + b/T)."""
    import keras

    softmax_layers = [
        layer
        for layer in _all_layers(model)
        if isinstance(layer, keras.layers.Dense) and getattr(layer.activation, "__name__", "") == "softmax"
    ]
    if not softmax_layers:
        raise ModelFileError("the model has no Dense softmax output layer to calibrate; train it with train_cnn.py.")
    for layer in softmax_layers:
        kernel, bias = layer.get_weights()
        layer.set_weights([kernel / temperature, bias / temperature])


def _all_layers(model):
    for layer in model.layers:
        yield layer
        if hasattr(layer, "layers"):
            yield from _all_layers(layer)
