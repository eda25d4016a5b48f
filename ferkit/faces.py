"""What a face is to the model: the seven class names in output order, the 48x48 grey crop,
and the one way any image or box becomes model input. Training, evaluation, feature extraction
and the live demo all go through these functions, so they cannot drift apart."""

from __future__ import annotations

import cv2
import numpy as np

CLASS_NAMES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
IMAGE_SIZE = 48


def prepare_face(image: np.ndarray) -> np.ndarray:
    """Turn one face crop of any size, grey or colour, into the 48x48 uint8 grey image the
    model was trained on. Used for dataset images and for live crops alike."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3:
        code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
        image = cv2.cvtColor(image, code)
    if image.ndim != 2 or min(image.shape) < 1:
        raise ValueError(f"expected a grey or BGR image, got an array of shape {image.shape}")
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.shape != (IMAGE_SIZE, IMAGE_SIZE):
        shrinking = image.shape[0] > IMAGE_SIZE or image.shape[1] > IMAGE_SIZE
        image = cv2.resize(
            image,
            (IMAGE_SIZE, IMAGE_SIZE),
            interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR,
        )
    return image


def to_model_input(faces) -> np.ndarray:
    """Stack face crops (a list of any-size crops, or a uint8 (N, 48, 48) array) into the
    float32 (N, 48, 48, 1) batch the CNN takes. Pixels stay 0-255; the model rescales."""
    if isinstance(faces, np.ndarray) and faces.ndim == 3 and faces.shape[1:] == (IMAGE_SIZE, IMAGE_SIZE):
        batch = faces
    elif len(faces):
        batch = np.stack([prepare_face(f) for f in faces])
    else:
        batch = np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    return batch.astype(np.float32)[..., None]


def to_grey(frame: np.ndarray) -> np.ndarray:
    """A grey uint8 view of a grey, BGR or BGRA frame."""
    if frame.ndim == 2:
        return frame
    if frame.shape[2] == 1:
        return frame[:, :, 0]
    return cv2.cvtColor(frame, cv2.COLOR_BGRA2GRAY if frame.shape[2] == 4 else cv2.COLOR_BGR2GRAY)


def crop_faces(grey: np.ndarray, boxes: np.ndarray) -> list[np.ndarray]:
    """The pixels inside each (x, y, w, h) box, clipped to the frame."""
    height, width = grey.shape
    crops = []
    for x, y, w, h in boxes:
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
        crops.append(grey[y0:y1, x0:x1])
    return crops
