"""The public face of the package: a ``Recognizer`` (face detector + expression model) that turns
a BGR image into a list of ``Face`` results, and the ``Pipeline`` that runs it over a video with
detection every few frames and per-face smoothing. ``realtime.py`` uses exactly these objects.

    import cv2
    from ferkit import Recognizer

    recognizer = Recognizer()                      # models/fer_cnn.onnx + the YuNet detector
    for face in recognizer("photo.jpg"):           # a path, a PIL image or a numpy array
        print(face.box, face.label, f"{face.confidence:.0%}")
    recognizer(["a.jpg", "b.png"])                 # a list: a list of results, one model call
    cv2.imwrite("out.jpg", recognizer.annotate("photo.jpg"))  # boxes and labels drawn on a copy
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import cv2
import numpy as np

from .classify import ExpressionClassifier
from .detect import DETECTORS, YuNetDetector, check_counts
from .draw import draw
from .errors import ParameterError, SourceError
from .faces import as_image, crop_faces, read_image, to_grey, upright
from .paths import DEFAULT_MODEL_PATH
from .track import FaceSmoother


@dataclass(frozen=True)
class Face:
    """One face found in an image: its box (x, y, w, h) in image pixels, inside the image (a face
    at the edge has its box cut there), the most probable expression with its probability, and all
    seven probabilities by class name. A photo's faces (``recognizer(image)``) come left to right."""

    box: tuple[int, int, int, int]
    label: str
    confidence: float
    probabilities: dict[str, float] = field(hash=False)  # (a dict cannot be hashed; the rest can)
    track_id: int | None = None


class Recognizer:
    """Finds faces in an image and classifies each one's expression.

    ``model`` is a saved ``.onnx`` (ONNX Runtime, no Keras needed) or ``.keras`` file (default:
    the shipped model's ONNX export, ``models/fer_cnn.onnx``) or an ``ExpressionClassifier``;
    ``detector`` a ``YuNetDetector`` (default), a ``FaceDetector`` (Haar) or any callable from a
    frame to (x, y, w, h) boxes. With ``align`` (default) and a detector that finds eyes, each face
    is rotated upright before it is classified. ``channels``: the order of the colour arrays given
    and of the images ``annotate`` returns: "bgr" (OpenCV's, the default) or "rgb" (PIL's
    ``np.asarray``, imageio, matplotlib); paths and PIL images are read right either way. An RGB
    array read as BGR is another picture to the detector and the model (probabilities 0.06-0.17
    apart on the demo clip). ``tta``:
    "flip" averages each face with its mirror image, "crops" with five 44-pixel crops as well
    (12 views); more accurate, slower (see the README's speed table).
    """

    def __init__(
        self,
        model: str | os.PathLike | ExpressionClassifier | None = DEFAULT_MODEL_PATH,
        detector=None,
        align: bool = True,
        tta: str | None = None,
        channels: str = "bgr",
    ):
        if model is None:
            model = DEFAULT_MODEL_PATH
        if not isinstance(align, (bool, np.bool_)):
            raise ParameterError("align", f"is {align!r}; give True (faces turned upright by their eyes) or False")
        if channels not in ("bgr", "rgb"):
            raise ParameterError(
                "channels", f"is {channels!r}; give 'bgr' (OpenCV's arrays) or 'rgb' (PIL's, imageio's, matplotlib's)"
            )
        self.channels = channels
        if isinstance(model, ExpressionClassifier):
            if tta is not None and tta != model.tta:
                raise ParameterError(
                    "tta",
                    f"is {tta!r} beside an ExpressionClassifier built with tta={model.tta!r}; give it to one "
                    "of them: ExpressionClassifier(path, tta=...) or Recognizer(path, tta=...)",
                )
            self.classifier = model
        elif isinstance(model, (str, os.PathLike)):
            self.classifier = ExpressionClassifier(model, tta=tta)
        else:
            raise ParameterError(
                "model",
                f"is a {type(model).__name__}; give the path of a saved .onnx or .keras model, an "
                f"ExpressionClassifier, or None for the shipped one",
            )
        self.detector = _detector(detector)
        self.align = bool(align)
        self.class_names = self.classifier.class_names

    @property
    def tta(self) -> str | None:
        """The views each face is averaged over: None (one), "flip" or "crops"."""
        return self.classifier.tta

    def detect(self, frame: np.ndarray, still: bool = False):
        """(boxes, eyes or None) for a frame; eyes only when aligning and the detector finds them.
        ``still``: a single image, searched at several scales where the detector can, its faces
        ordered left to right (by the box's left edge, then its top)."""
        return self._detect(self._load(frame), still)

    def _load(self, image) -> np.ndarray:
        """An image as given to the public methods, as the uint8 grey, BGR or BGRA array they work on."""
        return load_image(image, self.channels)

    def _detect(self, frame: np.ndarray, still: bool):
        if still and hasattr(self.detector, "detect_still"):
            boxes, eyes = self.detector.detect_still(frame)
        elif hasattr(self.detector, "detect"):
            boxes, eyes = self.detector.detect(frame)
        else:
            boxes, eyes = _checked_boxes(self.detector(frame), frame.shape), None
        eyes = eyes if self.align else None
        if still and len(boxes) > 1:
            # The detector's order (scale by scale, then by its anchors) means nothing to a reader
            # of a table or an annotated photo: face 0 is the leftmost. Video keeps the detector's
            # order, where faces are told apart by their track ids instead.
            boxes = np.asarray(boxes)
            order = np.lexsort((boxes[:, 1], boxes[:, 0]))
            boxes, eyes = boxes[order], (None if eyes is None else np.asarray(eyes)[order])
        return boxes, eyes

    def classify(self, frame: np.ndarray, boxes: np.ndarray, eyes: np.ndarray | None = None) -> np.ndarray:
        """Class probabilities (N, 7) for the faces in these boxes of a frame (grey or colour, as
        ``__call__`` takes it), in one call."""
        return self._classify(self._load(frame), boxes, eyes)

    def _classify(self, frame: np.ndarray, boxes, eyes) -> np.ndarray:
        boxes = _checked_boxes(boxes, frame.shape, drop=False)  # one answer per box given
        return self.classifier(crop_faces(to_grey(frame), boxes, eyes))

    def faces(self, boxes, probabilities, ids=None, shape=None) -> list[Face]:
        """``Face`` results from boxes and their probabilities. With the image's ``shape`` each box
        is cut at the image's edges (the detector's square around a face at the edge reaches
        beyond it; the crop the model saw is padded, the box people crop with must not)."""
        ids = ids if ids is not None else [None] * len(boxes)
        results = []
        for box, proba, track_id in zip(boxes, probabilities, ids):
            best = int(np.argmax(proba))
            x, y, w, h = (int(v) for v in box)
            if shape is not None:
                left, top = max(x, 0), max(y, 0)
                x, y, w, h = left, top, max(min(x + w, shape[1]) - left, 0), max(min(y + h, shape[0]) - top, 0)
            results.append(
                Face(
                    box=(x, y, w, h),
                    label=self.class_names[best],
                    confidence=float(proba[best]),
                    probabilities={n: float(p) for n, p in zip(self.class_names, proba)},
                    track_id=track_id,
                )
            )
        return results

    def __call__(self, image):
        """Every face in an image with its expression. ``image``: a path, a PIL image, or an array
        (grey, or colour in the recognizer's ``channels`` order, with alpha or without; uint8,
        uint16 or float); or a list of those, for a list of results
        with the faces of all the images classified in one model call."""
        if isinstance(image, (list, tuple)):
            return self.batch(image)
        return self.batch([image])[0]

    def batch(self, images) -> list[list[Face]]:
        images, frames = list(images), []
        for index, image in enumerate(images):
            try:
                frames.append(self._load(image))
            except SourceError as exc:
                if len(images) == 1:
                    raise
                raise SourceError(f"image {index} of the {len(images)} given: {exc}") from None
        return self._batch_loaded(frames)

    def _batch_loaded(self, frames: list[np.ndarray]) -> list[list[Face]]:
        found = [self._detect(frame, still=True) for frame in frames]
        crops = [c for frame, (boxes, eyes) in zip(frames, found) for c in crop_faces(to_grey(frame), boxes, eyes)]
        proba = self.classifier(crops)
        results, start = [], 0
        for frame, (boxes, _) in zip(frames, found):
            results.append(self.faces(boxes, proba[start : start + len(boxes)], shape=frame.shape))
            start += len(boxes)
        return results

    def annotate(self, image, faces: list[Face] | None = None, bars: bool = False, numbered: bool = False):
        """A copy of the image with each face's box and expression drawn as the demo draws them:
        what to show or save (``cv2.imwrite("out.jpg", recognizer.annotate("photo.jpg"))``); BGR,
        or RGB for a recognizer made with ``channels="rgb"`` (``PIL.Image.fromarray`` takes it).
        ``faces``: this image's results from an earlier call, so it is not searched again;
        ``bars``: all seven probabilities beside each face; ``numbered``: #0, #1, ... before the
        labels, the faces' order in the results (``analyze.py``'s face column)."""
        if isinstance(image, (list, tuple)):
            raise ParameterError(
                "image", "is a list; annotate draws one image: [recognizer.annotate(i) for i in images]"
            )
        frame = self._load(image)
        if faces is None:
            faces = self._batch_loaded([frame])[0]
        faces = self._check_faces(faces, frame.shape)
        proba = np.array([[f.probabilities[n] for n in self.class_names] for f in faces], np.float32)
        ids = range(len(faces)) if numbered else None
        boxes = [tuple(int(round(v)) for v in f.box) for f in faces]  # a Face made by hand may hold floats
        drawn = draw(frame, boxes, proba, self.class_names, None, bars, ids)
        return _to_channels(drawn, self.channels)

    def _check_faces(self, faces, shape) -> list[Face]:
        """``faces`` as one image's list of ``Face`` that fits an image of this shape; one
        ``ParameterError`` saying what was given instead."""
        faces = [faces] if isinstance(faces, Face) else list(faces) if isinstance(faces, (list, tuple)) else faces
        if not isinstance(faces, list) or not all(isinstance(f, Face) for f in faces):
            if isinstance(faces, list) and faces and all(isinstance(f, list) for f in faces):
                given = "a list of lists (the results of a list of images)"
            elif isinstance(faces, list):
                given = "a list that holds something other than Face results"
            else:
                given = f"a {type(faces).__name__}"
            raise ParameterError("faces", f"is {given}; give one image's results, recognizer(image), or None")
        for face in faces:
            if list(face.probabilities) != list(self.class_names):
                raise ParameterError(
                    "faces", "come from a model with other classes; give the results of this recognizer, or None"
                )
            x, y, w, h = face.box
            if x < 0 or y < 0 or x + w > shape[1] or y + h > shape[0]:
                raise ParameterError(
                    "faces",
                    f"do not fit this image: box {face.box} reaches beyond its {shape[1]}x{shape[0]} pixels; give "
                    "the faces found in this image (recognizer(image)), or None",
                )
        return faces


def _checked_boxes(boxes, shape, drop: bool = True) -> np.ndarray:
    """A detector's answer as int (N, 4) boxes (x, y, w, h): what a callable detector gives may be
    float, one box, a list or None (no face); anything else is one ``SourceError``. Boxes of no
    size or wholly outside the image are dropped, or with ``drop=False`` (boxes to classify, one
    answer each) refused."""
    if boxes is None:
        return np.zeros((0, 4), int)
    try:
        array = np.asarray(boxes, dtype=float)
    except (TypeError, ValueError):
        array = None
    if array is not None and array.size == 0:
        return np.zeros((0, 4), int)
    if array is not None and array.ndim == 1 and array.size == 4:
        array = array[None]  # one box
    if array is None or array.ndim != 2 or array.shape[1] != 4 or not np.isfinite(array).all():
        raise SourceError(
            f"the face detector gave {type(boxes).__name__} {getattr(array, 'shape', '')}; a detector returns "
            f"(x, y, w, h) boxes: an (N, 4) array or a list of 4-tuples (None or [] for no face)"
        )
    array = np.round(array).astype(int)
    x, y, w, h = array.T
    inside = (w > 0) & (h > 0) & (x < shape[1]) & (y < shape[0]) & (x + w > 0) & (y + h > 0)
    if not drop and not inside.all():
        bad = int(np.flatnonzero(~inside)[0])
        raise SourceError(
            f"box {bad} {tuple(array[bad].tolist())} holds no pixel of the {shape[1]}x{shape[0]} image; give boxes "
            f"(x, y, w, h) found in this image"
        )
    return array if not drop else array[inside]


def _detector(detector):
    """The face detector a ``Recognizer`` is given: None (YuNet), a name ("yunet", "haar"), a
    detector class (built with its defaults) or any callable from a frame to boxes."""
    if detector is None:
        return YuNetDetector()
    if isinstance(detector, str):
        if detector not in DETECTORS:
            raise ParameterError("detector", f"is {detector!r}; use one of {', '.join(sorted(DETECTORS))}")
        return DETECTORS[detector]()
    if isinstance(detector, type):
        detector = detector()
    if not callable(detector) and not hasattr(detector, "detect"):
        raise ParameterError(
            "detector",
            f"is a {type(detector).__name__}; give YuNetDetector(...), FaceDetector(...), 'yunet', 'haar', or a "
            "function from a frame to (x, y, w, h) boxes",
        )
    return detector


def load_image(image, channels: str = "bgr") -> np.ndarray:
    """An array for a path (any format OpenCV reads), a PIL image (as BGR) or an array (colour
    ones in ``channels`` order: "bgr" or "rgb"), grey, BGR or BGRA; one ``SourceError`` for
    anything else."""
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    if hasattr(image, "convert") and hasattr(image, "mode"):  # a PIL image, without importing PIL
        rgb = np.asarray(image.convert("RGBA" if "A" in image.mode else "RGB"))
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGBA2BGRA if rgb.shape[2] == 4 else cv2.COLOR_RGB2BGR)
        # Image.open keeps a phone photo as stored; its EXIF orientation says how to turn it upright
        exif = image.getexif() if hasattr(image, "getexif") else {}
        return upright(bgr, int(exif.get(0x0112, 1) or 1))
    return _to_channels(as_image(image, channels.upper()), channels)


def _to_channels(image: np.ndarray, channels: str) -> np.ndarray:
    """A colour image turned from BGR(A) to RGB(A) or back where ``channels`` is "rgb" (the swap is
    its own inverse); grey images and "bgr" as they are."""
    if channels == "rgb" and image.ndim == 3:
        return np.ascontiguousarray(image[:, :, [2, 1, 0, 3][: image.shape[2]]])
    return image


@dataclass
class Pipeline:
    """A video's frames through a ``Recognizer``: detect every ``detect_every`` frames (boxes are
    reused in between), classify all faces in one call, smooth per face."""

    recognizer: Recognizer
    smoother: FaceSmoother = field(default_factory=FaceSmoother)
    detect_every: int = 2
    still: bool = False  # single images: detection at several scales (Recognizer.detect)
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), int))
    eyes: np.ndarray | None = None
    frame_index: int = 0
    frame_shape: tuple | None = None  # of the frame the boxes were found in

    def __post_init__(self):
        check_counts(self, detect_every=1)

    def process(self, frame):
        """(boxes, smoothed probabilities, face ids) for one frame (an array, a path or a PIL
        image, as ``Recognizer`` takes): arrays of N boxes (x, y, w, h), N x 7 probabilities in
        the model's class order (``recognizer.class_names``), N ids that follow each face from
        frame to frame. ``recognizer.faces(boxes, probabilities, ids, frame.shape)`` makes
        ``Face`` results of them; calling the pipeline gives those at once."""
        return self._step(self.recognizer._load(frame))

    def __call__(self, frame) -> list[Face]:
        """The faces of one frame as ``Recognizer`` gives them (boxes cut at the frame's edges),
        with smoothed probabilities and a ``track_id`` that follows each face from frame to frame."""
        frame = self.recognizer._load(frame)
        boxes, probabilities, ids = self._step(frame)
        return self.recognizer.faces(boxes, probabilities, ids, shape=frame.shape)

    def _step(self, frame: np.ndarray):
        # A frame of another size (a new source, a resized window): boxes from the old one do not fit.
        if self.frame_index % self.detect_every == 0 or frame.shape[:2] != self.frame_shape:
            self.boxes, self.eyes = self.recognizer._detect(frame, self.still)
            self.frame_shape = frame.shape[:2]
        self.frame_index += 1
        proba = self.recognizer._classify(frame, self.boxes, self.eyes)  # (classify reads it grey)
        smoothed, ids = self.smoother.update(self.boxes, proba)
        return self.boxes, smoothed, ids
