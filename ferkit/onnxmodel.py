"""Expression models as ONNX files, run with ONNX Runtime: the light runtime of the live demo and
the Python API, with no TensorFlow or Keras in the process. ``OnnxModel`` answers the few calls
the rest of the package makes of a Keras model (``predict``, ``predict_on_batch``, the shapes), so
classification, evaluation and the live pipeline take either file. The class names, how the
model was calibrated and what it was trained on travel inside the file as ONNX metadata (``export.py`` writes them)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .errors import ModelFileError
from .faces import CLASS_NAMES

CLASS_NAMES_KEY = "fer_class_names"
CALIBRATION_KEY = "fer_calibration"
TRAINING_KEY = "fer_training"  # the data it was trained on, and the rule that drew its held-out faces
SOURCE_KEY = "fer_source"  # the .keras file it was exported from, and how (fp32 / int8)


def _runtime():
    try:
        import onnxruntime
    except ImportError:
        raise ModelFileError(
            "ONNX Runtime is not installed, and .onnx models need it: pip install onnxruntime "
            "(or pip install -r requirements-live.txt), or give a .keras model."
        ) from None
    return onnxruntime


class OnnxModel:
    """A saved expression model run by ONNX Runtime on the CPU. ``threads``: intra-op threads
    (None: ONNX Runtime's choice, one per physical core)."""

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        ort = _runtime()
        self.path = Path(path)
        options = ort.SessionOptions()
        options.log_severity_level = 3  # no C++ warnings on the terminal
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types for damaged or foreign files
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise ModelFileError(
                f"could not load {self.path} ({first[:200]}); the file is damaged or not an ONNX model. "
                f"Export it again with `python export.py MODEL.keras`."
            ) from None
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        self.input_name = inputs[0].name
        self.input_shape = tuple(d if isinstance(d, int) else None for d in inputs[0].shape) if inputs else ()
        self.output_shape = tuple(d if isinstance(d, int) else None for d in outputs[0].shape) if outputs else ()
        if len(inputs) != 1 or len(outputs) != 1:
            self.input_shape = self.output_shape = [len(inputs), len(outputs)]  # refused by check_classifier
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)
        self.name = self.path.stem

    def predict_on_batch(self, x) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.asarray(x, np.float32)})[0]

    def predict(self, x, batch_size: int = 256, verbose=0) -> np.ndarray:
        x = np.asarray(x, np.float32)
        parts = [self.predict_on_batch(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        return np.concatenate(parts) if parts else np.zeros((0, self.output_shape[-1]), np.float32)

    def class_names(self) -> tuple[str, ...]:
        names = self.metadata.get(CLASS_NAMES_KEY)
        return tuple(json.loads(names)) if names else CLASS_NAMES


def load_onnx(path: str | os.PathLike):
    """(model, class names) of an ``.onnx`` expression model."""
    model = OnnxModel(path)
    return model, model.class_names()
