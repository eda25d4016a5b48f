"""Model files: a Keras model saved atomically with its class names (and how it was calibrated,
and which data it was trained on) inside the ``.keras`` archive, loaded back with clear errors,
and the lean float32 copy of a trained model that ships."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

from .atomic import replacing
from .errors import ModelFileError
from .faces import CLASS_NAMES, IMAGE_SIZE
from .interrupts import interrupts_held
from .onnxmodel import CALIBRATION_KEY, TRAINING_KEY
from .paths import DEFAULT_MODEL_PATH, IN_CHECKOUT, KERAS_MODEL_PATH

CLASS_NAMES_ENTRY = "fer_class_names.json"
CALIBRATION_ENTRY = "fer_calibration.json"
# Which data a model was trained on and, where its held-out faces were drawn rather than named by
# the data, by which rule (ferkit.splits.SPLIT_RULE): evaluate.py reads it to say whether faces
# it scores on could have been among the model's training faces.
TRAINING_ENTRY = "fer_training.json"


def save_model(
    model,
    path: str | os.PathLike,
    class_names=CLASS_NAMES,
    calibration: dict | None = None,
    training: dict | None = None,
) -> Path:
    """Save a Keras model with its class names (and, when given, how it was calibrated and what
    it was trained on) inside the .keras archive, atomically."""
    path = Path(path)
    with replacing(path, ".tmp.keras") as tmp:
        model.save(tmp)
        with zipfile.ZipFile(tmp, "a") as archive:
            archive.writestr(CLASS_NAMES_ENTRY, json.dumps(list(class_names)))
            if calibration is not None:
                archive.writestr(CALIBRATION_ENTRY, json.dumps(calibration))
            if training is not None:
                archive.writestr(TRAINING_ENTRY, json.dumps(training))
    return path


def is_onnx(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() == ".onnx"


def _read_record(path, entry: str, onnx_key: str) -> dict | None:
    """A JSON record saved inside a model file: an entry of the .keras archive, or the ONNX
    metadata that export.py copies it to; None where the file has none."""
    if is_onnx(path):
        from .onnxmodel import OnnxModel

        found = OnnxModel(path).metadata.get(onnx_key)
        return json.loads(found) if found else None
    with zipfile.ZipFile(path) as archive:
        if entry not in archive.namelist():
            return None
        return json.loads(archive.read(entry))


def read_calibration(path: str | os.PathLike) -> dict | None:
    """How a saved model was calibrated (temperature, where it was fitted, ECE), or None."""
    return _read_record(path, CALIBRATION_ENTRY, CALIBRATION_KEY)


def read_training(path: str | os.PathLike) -> dict | None:
    """What a saved model was trained on (its data, and the rule that drew its held-out faces when
    the data named none), or None for a model saved without it (before session 22, or by hand)."""
    try:
        record = _read_record(path, TRAINING_ENTRY, TRAINING_KEY)
    except (OSError, ValueError, zipfile.BadZipFile, ModelFileError):
        # A damaged record, or a start model or teacher file gone since its run began (a resume
        # reads only its checkpoint), only loses what the record would have said.
        return None
    return record if isinstance(record, dict) else None


def saved_network_name(path: str | os.PathLike) -> str | None:
    """The name of the network saved in a .keras archive (``fer_wide``, say), read from its
    config.json without Keras; None where the file is not such an archive."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = json.loads(archive.read("config.json")).get("config", {}).get("name")
    except (OSError, ValueError, KeyError, AttributeError, zipfile.BadZipFile):
        return None
    return name if isinstance(name, str) else None


def read_class_names(path: str | os.PathLike) -> tuple[str, ...]:
    with zipfile.ZipFile(path) as archive:
        if CLASS_NAMES_ENTRY not in archive.namelist():
            return CLASS_NAMES
        return tuple(json.loads(archive.read(CLASS_NAMES_ENTRY)))


# The scripts a message may name (train_cnn.py, export.py) are in the project's repository; an
# installed package holds only the library and the shipped models, so its messages say where they are.
_SCRIPTS_ELSEWHERE = "" if IN_CHECKOUT else " (a script of the project's repository, not of the installed package)"


def _shown(path: Path) -> str:
    """A path as the user can type it from where they are: relative to the working folder when
    it lies inside it (models/fer_cnn.onnx in a checkout), else whole."""
    try:  # the folder resolved, not the file: a linked model file is named as the user knows it
        path = Path(path)
        return str((path.parent.resolve() / path.name).relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def check_model_path(path: str | os.PathLike, keras_only: bool = False) -> Path:
    """The path of a saved model, or ``ModelFileError`` when there is no file there (missing, or a
    folder): what the scripts check at parse time, before loading any framework. ``keras_only``:
    for the scripts that read .keras files alone (export.py, ensemble.py)."""
    path = Path(path)
    kinds, example = (".keras", KERAS_MODEL_PATH) if keras_only else (".onnx or .keras", DEFAULT_MODEL_PATH)
    if not path.exists():
        shipped = (
            f"the shipped model is {_shown(example)}"
            if example.exists()
            else f"the shipped {_shown(example)} is missing too: restore it with "
            + ("`git checkout models/`" if IN_CHECKOUT else "`pip install --force-reinstall` of the wheel or checkout")
        )
        raise ModelFileError(
            f"model file {path} not found; give the path of a saved {kinds} model ({shipped}), "
            f"or train one with `python train_cnn.py --data PATH/TO/fer2013`{_SCRIPTS_ELSEWHERE} (the full "
            f"install, requirements.txt; it writes {_shown(KERAS_MODEL_PATH) if IN_CHECKOUT else 'models/NAME.keras'})."
        )
    if path.is_dir():
        raise ModelFileError(
            f"{path} is a folder; give a saved model file ({kinds}; the shipped one is {_shown(example)})"
        )
    return path


def load_model(path: str | os.PathLike = DEFAULT_MODEL_PATH):
    """Load a saved classifier and its class names; clear errors for missing or foreign files.
    A ``.keras`` file loads with Keras; an ``.onnx`` file (``export.py``) with ONNX Runtime, so
    neither TensorFlow nor Keras is imported for it."""
    path = check_model_path(path)
    if is_onnx(path):
        from .onnxmodel import load_onnx

        model, class_names = load_onnx(path)
        check_classifier(model, class_names, path)
        return model, class_names
    if not zipfile.is_zipfile(path):
        if path.suffix.lower() in (".h5", ".hdf5"):
            raise ModelFileError(
                f"{path} is a Keras 2 (HDF5) model; load it with Keras and save it again as .keras "
                "(model.save('x.keras')), or use the shipped model"
            )
        if path.suffix.lower() != ".keras":
            raise ModelFileError(
                f"{path} is not a model file; give a saved .onnx or .keras model (the shipped one is "
                f"{_shown(DEFAULT_MODEL_PATH)})"
            )
        raise ModelFileError(
            f"{path} is not a Keras 3 .keras file (no zip archive in it: cut short, damaged or of another kind); "
            "restore or re-save it (model.save('x.keras'))"
        )
    try:
        with interrupts_held():  # whole or not at all: see cli.import_keras_quietly
            import keras
    except ImportError:  # the light runtime (requirements-live.txt) has ONNX Runtime, not Keras
        raise ModelFileError(
            f"{path} is a Keras model, which needs Keras and TensorFlow (pip install -r requirements.txt); "
            f"the light runtime reads .onnx models: use the shipped {_shown(DEFAULT_MODEL_PATH)}, or export this "
            f"one where Keras is installed with `python export.py {path}`{_SCRIPTS_ELSEWHERE}"
        ) from None
    try:
        # Ctrl-C waits for the load: an interruption inside it (in a lazy import, say) would show
        # as a damaged file.
        with interrupts_held():
            model = keras.models.load_model(path, compile=False)
            class_names = read_class_names(path)
    except Exception as exc:  # keras raises many types for foreign or corrupt files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(
            f"could not load {path} ({first_line[:200]}); the file is damaged or not a Keras 3 model. "
            f"Restore it (git checkout models/) or train one with train_cnn.py."
        ) from None
    check_classifier(model, class_names, path)
    return model, class_names


def check_classifier(model, class_names, path) -> None:
    """Refuse a model that does not take 48x48 grey faces or whose outputs do not match its
    class names: anything else would fail deep inside Keras or give silently wrong labels."""
    expected = (None, IMAGE_SIZE, IMAGE_SIZE, 1)
    inputs = getattr(model, "input_shape", None)
    if isinstance(inputs, list) or tuple(inputs or ()) != expected:
        raise ModelFileError(
            f"{path} takes inputs of shape {inputs}; this project's models take {IMAGE_SIZE}x{IMAGE_SIZE} grey "
            f"faces {expected}. Use a model trained by train_cnn.py."
        )
    outputs = getattr(model, "output_shape", None)
    if isinstance(outputs, list) or len(outputs or ()) != 2 or outputs[-1] != len(class_names):
        raise ModelFileError(
            f"{path} gives outputs of shape {outputs} but names {len(class_names)} classes; "
            f"use a model trained by train_cnn.py."
        )
    # Three faces (black, grey, noise) through it: scores that are not probabilities (a model
    # ending in logits) would read as nonsense everywhere: an ECE of 285, an average that one such
    # member swamps.
    import numpy as np

    probe = np.stack([np.zeros(expected[1:]), np.full(expected[1:], 128.0)])
    probe = np.concatenate([probe, np.random.default_rng(0).uniform(0, 255, (1, *expected[1:]))]).astype(np.float32)
    onnx = hasattr(model, "session")
    try:
        if onnx:
            scores = model.predict_on_batch(probe)
        else:
            import keras

            scores = keras.ops.convert_to_numpy(model(probe, training=False))
    except Exception as exc:  # a custom layer, an input type of its own: not this project's kind of model
        raise ModelFileError(
            f"{path} failed on three test faces ({type(exc).__name__}: {str(exc).strip()[:160]}); "
            f"use a model trained by train_cnn.py."
        ) from None
    scores = np.asarray(scores, np.float64)
    if not np.all(np.isfinite(scores)):
        raise ModelFileError(
            f"{path} gives NaN or infinite scores (its training diverged?); use an earlier checkpoint or retrain it."
        )
    sums = scores.sum(1)
    worst = int(np.argmax(np.abs(sums - 1)))
    if scores.min() < -1e-4 or abs(sums[worst] - 1) > 0.02:
        fix = (
            "export it again from a .keras model that ends in one"
            if onnx
            else "end it in Dense(..., activation='softmax') (where --calibrate folds a temperature) and save it again"
        )
        raise ModelFileError(
            f"{path} gives scores that are not probabilities (a face's sum to {sums[worst]:.3g}, the lowest is "
            f"{scores.min():.3g}): it ends without a softmax. {fix[0].upper() + fix[1:]}, or use a model trained by "
            f"train_cnn.py."
        )


def require_classes(class_names, expected, path, fix: str = "evaluate it on data with its classes") -> None:
    """Refuse a model whose classes are not the data's (same names, same order)."""
    if tuple(class_names) != tuple(expected):
        raise ModelFileError(
            f"{path} labels {len(class_names)} classes ({', '.join(class_names)}) but the data has "
            f"{len(expected)} ({', '.join(expected)}); {fix}."
        )


def copy_weights(source, target) -> None:
    """Copy weights layer by layer (matched by name) from one model into another of its architecture."""
    for layer in target.layers:
        if layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())


def inference_copy(trained):
    """A float32, uncompiled copy of the trained model without augmentation or optimizer state:
    what gets shipped (smaller file, no training-only layers)."""
    import keras

    from .networks import build_model, network_of

    keras.mixed_precision.set_global_policy("float32")
    # Another model's name reaches build_model as its arch, which refuses it by name.
    network = network_of(trained.name) or {"arch": trained.name.removeprefix("fer_")}
    clean = build_model(num_classes=trained.output_shape[-1], augment=False, **network)
    copy_weights(trained, clean)
    return clean
