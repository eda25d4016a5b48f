"""ImageNet Xception features of faces (2,048 per face, global average pooling), batched with a
progress bar and cached on disk under a key of the faces and the settings that produced them."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import cv2
import numpy as np

from .atomic import atomic_savez, set_aside, try_cache_write
from .errors import FeatureError, ParameterError
from .progress import bar as progress_bar

XCEPTION_MIN_SIZE = 71


def xception_input(faces: np.ndarray, size: int) -> np.ndarray:
    """uint8 (N, 48, 48) grey faces -> Xception's input: size x size, 3 channels, [-1, 1]."""
    from keras.applications.xception import preprocess_input

    resized = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_CUBIC) for f in faces])
    return preprocess_input(np.repeat(resized[..., None], 3, axis=-1).astype(np.float32))


def check_weights_path(weights: str) -> None:
    """Raise ``FeatureError`` for a --weights that cannot be Xception's no-top weights file (a
    folder, a saved model, nothing there), before any work; 'imagenet' (the download) passes."""
    if weights == "imagenet":
        return
    if Path(weights).expanduser().is_dir():
        found = sorted(f.name for f in Path(weights).expanduser().glob("*xception*.h5"))
        inside = f"; the one in it: {Path(weights) / found[0]}" if len(found) == 1 else ""
        raise FeatureError(
            f"--weights {weights} is a folder; give the weights file itself (an Xception no-top .h5){inside}"
        )
    if Path(weights).suffix.lower() in (".keras", ".onnx"):
        raise FeatureError(
            f"{weights} is a saved model (this toolkit's expression CNN, say), not Xception's ImageNet weights; give "
            f"xception_weights_tf_dim_ordering_tf_kernels_notop.h5 or a .weights.h5 of keras.applications.Xception."
        )
    if not Path(weights).expanduser().is_file():
        raise FeatureError(
            f"weights file {weights} not found. Give the path of an Xception no-top weights file "
            f"(xception_weights_tf_dim_ordering_tf_kernels_notop.h5 or a .weights.h5), or 'imagenet' "
            f"to download it."
        )


def load_xception(weights: str, size: int):
    if size < XCEPTION_MIN_SIZE:
        raise ParameterError("size", f"must be at least {XCEPTION_MIN_SIZE} (Xception's minimum input)")
    check_weights_path(weights)
    import warnings

    import keras

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a foreign file makes Keras warn per layer; one error says it
            return keras.applications.Xception(
                include_top=False, pooling="avg", weights=weights, input_shape=(size, size, 3)
            )
    except Exception as exc:  # download failures and foreign files surface as many exception types
        if weights == "imagenet":
            raise FeatureError(
                f"could not download the ImageNet Xception weights ({_reason(exc)}). Without internet, "
                f"download the no-top weights elsewhere and give their path with --weights."
            ) from None
        raise FeatureError(
            f"{weights} is not an Xception no-top weights file (Keras could not load it: {_reason(exc)}). Give "
            f"xception_weights_tf_dim_ordering_tf_kernels_notop.h5 or a .weights.h5 of keras.applications.Xception."
        ) from None


def _reason(exc: BaseException, most: int = 160) -> str:
    """The first line of an exception's message, cut at a word (not mid-word) when long; its type
    where it has no message (a bare ``Exception`` from a failed download said nothing)."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else ""
    if not text:
        return f"{type(exc).__name__}, no message"
    if len(text) > most:
        text = text[:most].rsplit(" ", 1)[0].rstrip(" .,:;") + " ..."
    return text


def extract_features(
    faces: np.ndarray, weights: str, size: int, batch_size: int = 64, model=None, desc: str = "Xception features"
) -> np.ndarray:
    """2,048 features per face, batched, with a progress bar."""
    model = model or load_xception(weights, size)
    out = np.zeros((len(faces), model.output_shape[-1]), np.float32)
    for start in progress_bar(range(0, len(faces), batch_size), desc=desc, unit="batch"):
        batch = xception_input(faces[start : start + batch_size], size)
        out[start : start + len(batch)] = np.asarray(model.predict_on_batch(batch))
    return out


def cached_features(
    faces: np.ndarray,
    labels: np.ndarray,
    weights: str,
    size: int,
    cache_dir: Path | None,
    model=None,
    desc: str = "Xception features",
) -> np.ndarray:
    """Features for these exact faces and settings, from the cache when it has them."""
    digest = hashlib.sha256(np.ascontiguousarray(faces).tobytes()).hexdigest()
    weights_id = "imagenet" if weights == "imagenet" else f"{Path(weights).name}:{Path(weights).stat().st_size}"
    settings = {
        "faces_sha256": digest,
        "count": len(faces),
        "size": size,
        "weights": weights_id,
        "model": "Xception(include_top=False, pooling='avg')",
        "preprocess": "cubic resize, grey x3, preprocess_input",
    }
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:20]
    path = cache_dir / f"xception-{key}.npz" if cache_dir else None
    if path and path.exists():
        try:
            with np.load(path) as cached:
                features, cached_labels = cached["features"], cached["labels"]
                cached_settings = json.loads(str(cached["settings"]))
            matches = (
                cached_settings == settings
                and features.shape[0] == len(faces)
                and np.array_equal(cached_labels, labels)
                and np.isfinite(features).all()
            )
        except Exception:  # truncated or bit-flipped: BadZipFile, OSError, ValueError, zlib.error, ...
            matches = False
        if matches:
            return features
        set_aside(path, "Xception feature cache")
    features = extract_features(faces, weights, size, model=model, desc=desc)
    if path:
        try_cache_write(atomic_savez, path, features=features, labels=labels, settings=json.dumps(settings))
    return features
