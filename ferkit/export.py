"""A trained ``.keras`` model written as ONNX for the light runtime (``onnxmodel``): the float32
graph through Keras' own exporter, and an int8 copy by static quantization calibrated on training
faces. Both carry the class names, the calibration and the training record inside, as ONNX metadata. Exporting needs
Keras with TensorFlow and ``tf2onnx``; running the files needs only ONNX Runtime."""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np

from .atomic import replacing
from .errors import ModelFileError
from .faces import to_model_input
from .modelfile import load_model, read_calibration, read_training
from .onnxmodel import CALIBRATION_KEY, CLASS_NAMES_KEY, SOURCE_KEY, TRAINING_KEY

# Faces the int8 activations' ranges are measured on (a stratified draw of the training split):
# beyond a few hundred the ranges, and the accuracy, no longer move.
CALIBRATION_FACES = 1024


def _write_metadata(path: Path, entries: dict) -> None:
    import onnx

    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key not in entries]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in entries.items():
        model.metadata_props.add(key=key, value=value)
    with replacing(path, ".tmp.onnx") as tmp:
        onnx.save(model, tmp)


def _metadata(keras_path: Path, class_names, kind: str) -> dict:
    calibration = read_calibration(keras_path)
    entries = {
        CLASS_NAMES_KEY: json.dumps(list(class_names)),
        SOURCE_KEY: json.dumps({"from": keras_path.name, "kind": kind}),
    }
    if calibration is not None:
        entries[CALIBRATION_KEY] = json.dumps(calibration)
    training = read_training(keras_path)
    if training is not None:
        entries[TRAINING_KEY] = json.dumps(training)
    return entries


def export_onnx(keras_path: str | os.PathLike, out_path: str | os.PathLike) -> Path:
    """Write the float32 ONNX graph of a saved ``.keras`` model, atomically."""
    keras_path, out_path = Path(keras_path), Path(out_path)
    model, class_names = load_model(keras_path)
    try:
        import tf2onnx  # noqa: F401 (Keras' ONNX export on TensorFlow goes through it)
    except ImportError:
        raise ModelFileError("exporting to ONNX needs tf2onnx: pip install tf2onnx onnx") from None
    import keras

    # Keras' exporter traces ``model(x)`` without ``training``; a preprocessing layer inside (an
    # augmentation layer, CenterCrop) then defaults to training=True and passes it on, so BatchNorm
    # after it would normalise with the batch's statistics: a wrapper that says training=False.
    face = keras.Input(model.input_shape[1:], name="face")
    inference = keras.Model(face, model(face, training=False), name=model.name)
    inference.predict_on_batch(np.zeros((1, *model.input_shape[1:]), np.float32))  # traced once before export
    with replacing(out_path, ".tmp.onnx") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # tf2onnx probes np.object
        inference.export(tmp, format="onnx", verbose=False)
        _check_export(model, Path(tmp), keras_path)
        _write_metadata(Path(tmp), _metadata(keras_path, class_names, "float32"))
    return out_path


def _check_export(model, onnx_path: Path, keras_path: Path, tolerance: float = 1e-4) -> None:
    """Refuse an ONNX graph that does not give Keras' probabilities for one face and for a batch
    (a batch-dependent graph only shows on faces that differ)."""
    from .onnxmodel import OnnxModel

    faces = to_model_input(np.random.default_rng(0).integers(0, 256, (8, *model.input_shape[1:3]), dtype=np.uint8))
    onnx_model = OnnxModel(onnx_path)
    for batch in (faces[:1], faces):
        difference = float(np.abs(onnx_model.predict_on_batch(batch) - np.asarray(model.predict_on_batch(batch))).max())
        if not difference <= tolerance:
            raise ModelFileError(
                f"the ONNX graph of {keras_path} does not give Keras' probabilities (largest difference "
                f"{difference:.2g} on {len(batch)} faces); nothing was written. Run the .keras model instead, "
                f"and report the model's layers to the project."
            )


def quantize_int8(
    fp32_path: str | os.PathLike, out_path: str | os.PathLike, faces: np.ndarray, keras_path: str | os.PathLike
) -> Path:
    """Static int8 quantization (QDQ, per-channel 7-bit weights, 8-bit activations) of an exported
    float32 graph, with the activation ranges measured on ``faces`` (uint8 (N, 48, 48) training faces)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .onnxmodel import OnnxModel

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    input_name = OnnxModel(fp32_path).input_name
    batches = [to_model_input(faces[i : i + 64]) for i in range(0, len(faces), 64)]

    class Faces(CalibrationDataReader):
        def __init__(self):
            self.left = iter(batches)

        def get_next(self):
            batch = next(self.left, None)
            return None if batch is None else {input_name: batch}

    with tempfile.TemporaryDirectory() as scratch, replacing(out_path, ".tmp.onnx") as tmp:
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        # The softmax stays float: quantized to 1/256 steps its outputs would not sum to one.
        softmax = [n.name for n in onnx.load(str(prepared)).graph.node if n.op_type == "Softmax"]
        quantize_static(
            str(prepared),
            tmp,
            Faces(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            # 7-bit weights: x86 CPUs without VNNI (AVX2 only) multiply u8 x s8 pairs into int16
            # sums that saturate with full 8-bit weights. Measured on an AVX2-only EPYC (PublicTest):
            # 8-bit 0.6654 and 88% of Keras' labels, 7-bit 0.6821 and 98.5% (float32 0.6826); the
            # same file stays right on VNNI CPUs.
            reduce_range=True,
            nodes_to_exclude=softmax,
        )
        _, class_names = load_model(fp32_path)
        _write_metadata(Path(tmp), _metadata(Path(keras_path), class_names, "int8"))
    return out_path
