"""Model files: a Keras model saved atomically with its class names inside the ``.keras``
archive, loaded back with clear errors, and the lean float32 copy of a trained model that ships."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

from .atomic import replacing
from .errors import ModelFileError
from .faces import CLASS_NAMES
from .paths import DEFAULT_MODEL_PATH, PROJECT_DIR

CLASS_NAMES_ENTRY = "fer_class_names.json"


def save_model(model, path: str | os.PathLike, class_names=CLASS_NAMES) -> Path:
    """Save a Keras model with its class names inside the .keras archive, atomically."""
    path = Path(path)
    with replacing(path, ".tmp.keras") as tmp:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(CLASS_NAMES_ENTRY, json.dumps(list(class_names)))
    return path


def read_class_names(path: str | os.PathLike) -> tuple[str, ...]:
    with zipfile.ZipFile(path) as archive:
        if CLASS_NAMES_ENTRY not in archive.namelist():
            return CLASS_NAMES
        return tuple(json.loads(archive.read(CLASS_NAMES_ENTRY)))


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(PROJECT_DIR))
    except ValueError:
        return str(path)


def load_model(path: str | os.PathLike = DEFAULT_MODEL_PATH):
    """Load a saved classifier and its class names; clear errors for missing or foreign files."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(
            f"model file {path} not found. Train one with `python train_cnn.py --data "
            f"PATH/TO/fer2013` (it writes {_shown(DEFAULT_MODEL_PATH)}), or give the path "
            f"of a saved .keras model."
        )
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path} is not a Keras 3 .keras file; re-save it with model.save('x.keras').")
    import keras

    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # keras raises many types for foreign or corrupt files
        raise ModelFileError(f"could not load {path}: {exc}") from None
    return model, read_class_names(path)


def copy_weights(source, target) -> None:
    """Copy weights layer by layer (matched by name) from one model into another of its architecture."""
    for layer in target.layers:
        if layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())


def inference_copy(trained):
    """A float32, uncompiled copy of the trained model without augmentation or optimizer state:
    what gets shipped (smaller file, no training-only layers)."""
    import keras

    from .networks import build_model

    keras.mixed_precision.set_global_policy("float32")
    clean = build_model(num_classes=trained.output_shape[-1], augment=False, arch=trained.name.removeprefix("fer_"))
    copy_weights(trained, clean)
    return clean
