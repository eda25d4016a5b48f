"""ferkit: facial-expression recognition on FER2013 with Keras 3.

The public API for Python users::

    import cv2
    from ferkit import Recognizer

    recognizer = Recognizer()  # the shipped model and the YuNet face detector
    for face in recognizer(cv2.imread("photo.jpg")):
        print(face.box, face.label, face.probabilities)

Modules, one idea each: ``faces`` (class order, the 48x48 crop), ``layouts`` (datasets on disk,
decoding), ``imagecache`` (decoded faces kept), ``data`` (the splits), ``networks`` (the CNNs),
``modelfile`` (saving and loading models), ``classify`` (probabilities from a model),
``calibration`` (honest confidence), ``report`` (metrics and plots), ``training`` (training runs and
checkpoints), ``ensemble`` (averaging models), ``detect`` / ``track`` / ``video`` / ``draw`` /
``facelog`` / ``timeline`` / ``recognizer`` (the live pieces), ``clips`` (generated test clips),
``features`` and ``ga`` (Xception features and genetic feature selection), ``atomic`` (safe file
writes), ``paths`` (the project's default places), ``errors``, and ``cli`` (what the scripts share).
"""

from .classify import ExpressionClassifier, predict_proba
from .data import Dataset, Split, load_dataset
from .detect import FaceDetector, YuNetDetector
from .errors import (
    CheckpointError,
    DatasetError,
    FeatureError,
    FerError,
    FerWarning,
    Interrupted,
    ModelFileError,
    ParameterError,
    SourceError,
)
from .faces import CLASS_NAMES, IMAGE_SIZE, prepare_face
from .modelfile import load_model, save_model
from .recognizer import Face, Pipeline, Recognizer

__version__ = "0.3.0"

__all__ = [
    "CLASS_NAMES",
    "IMAGE_SIZE",
    "CheckpointError",
    "Dataset",
    "DatasetError",
    "ExpressionClassifier",
    "Face",
    "FaceDetector",
    "FeatureError",
    "FerError",
    "FerWarning",
    "Interrupted",
    "ModelFileError",
    "ParameterError",
    "Pipeline",
    "Recognizer",
    "SourceError",
    "Split",
    "YuNetDetector",
    "load_dataset",
    "load_model",
    "predict_proba",
    "prepare_face",
    "save_model",
]
