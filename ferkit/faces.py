"""What a face is to the model: the seven class names in output order, the 48x48 grey crop,
and the one way any image or box becomes model input. Training, evaluation, feature extraction
and the live demo all go through these functions, so they cannot drift apart."""

from __future__ import annotations

import cv2
import numpy as np

CLASS_NAMES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
IMAGE_SIZE = 48


def as_image(image, order: str = "BGR") -> np.ndarray:
    """Any image a user can reasonably hold as a uint8 grey, BGR or BGRA array: uint8; uint16
    (scaled by 1/257); other integers within 0-255; floats in [0, 1] (scaled by 255) or [0, 255].
    Anything else is one ``SourceError`` saying why (an empty array, two channels, booleans,
    NaN, values out of range), naming the colour ``order`` the caller takes ("RGB" for an
    ``Recognizer(channels="rgb")``; the channels are left as they are)."""
    from .errors import SourceError

    if isinstance(image, (bytes, bytearray, memoryview)):
        raise SourceError(
            "got the bytes of an encoded file, not pixels; decode them first: "
            "cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), or give the file's path"
        )
    if image is None or not hasattr(image, "shape"):
        raise SourceError(
            f"no image to look at (got {type(image).__name__}); give a path, a PIL image or a numpy array "
            f"(cv2.imread returns None for a missing or unreadable file: check the path)."
        )
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    channels_first = image.ndim in (3, 4) and image.shape[-3] in (1, 3, 4) and image.shape[-1] > 4
    if channels_first and (image.ndim == 3 or image.shape[0] == 1):  # (C, H, W) or (1, C, H, W): PyTorch's
        raise SourceError(
            f"an image of shape {image.shape} has its channels first; move them last "
            f"(np.moveaxis(image, -3, -1), and squeeze a batch of one) and give uint8 {order} pixels"
        )
    if image.size == 0:
        raise SourceError(f"the image is empty (shape {image.shape}); give one with pixels in it")
    if image.ndim == 4 and image.shape[0] == 1 and image.shape[-1] in (1, 3, 4):
        raise SourceError(
            f"an array of shape {image.shape} is a batch of one image; give the image itself (image[0]), "
            f"or a list of images for several"
        )
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise SourceError(
            f"an image of shape {image.shape} is not grey (H, W), {order} (H, W, 3) or {order}A (H, W, 4); "
            f"convert it (two channels, say, are not an image this model can read)."
        )
    if image.dtype == np.uint8:
        return image
    if image.dtype == np.bool_:
        raise SourceError("a boolean array is a mask, not an image; give grey or colour pixels (uint8 0-255)")
    if image.dtype == np.uint16:
        top = int(image.max())
        if top < 4096:  # read as 16-bit it would be near black: 8-, 10- or 12-bit values in uint16?
            import warnings

            from .errors import FerWarning

            bits = 8 if top < 256 else 10 if top < 1024 else 12
            warnings.warn(
                f"uint16 pixels reach only {top} of 65535, so they read as almost black; if these are "
                f"{bits}-bit values, give "
                + ("image.astype(np.uint8)" if bits == 8 else f"(image >> {bits - 8}).astype(np.uint8)")
                + " instead",
                FerWarning,
                stacklevel=3,
            )
        return (image.astype(np.uint32) // 257).astype(np.uint8)
    if np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all():
            raise SourceError("the image holds NaN or infinite values; give finite pixel values")
        low, high = float(image.min()), float(image.max())
        if low >= 0 and high <= 1:  # the [0, 1] convention of skimage, PIL's F mode, matplotlib
            return np.round(image * 255).astype(np.uint8)
        if low >= 0 and high <= 255:
            return np.round(image).astype(np.uint8)
        raise SourceError(f"float pixels range over [{low:g}, {high:g}]; give values in [0, 1] or [0, 255]")
    if np.issubdtype(image.dtype, np.integer):
        if image.min() >= 0 and image.max() <= 255:
            return image.astype(np.uint8)
        raise SourceError(
            f"{image.dtype} pixels range over [{image.min()}, {image.max()}]; give uint8 (0-255) or uint16 pixels"
        )
    raise SourceError(f"pixels of type {image.dtype} are not an image; give uint8, uint16 or float pixels")


def _tiff_orientation(tiff: bytes) -> int:
    """Tag 0x0112 of IFD0 of a TIFF structure (EXIF's), 1 where it is missing or damaged."""
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    ifd = int.from_bytes(tiff[4:8], order)
    count = int.from_bytes(tiff[ifd : ifd + 2], order)
    for entry in range(ifd + 2, min(ifd + 2 + 12 * count, len(tiff) - 11), 12):
        if int.from_bytes(tiff[entry : entry + 2], order) == 0x0112:
            value = int.from_bytes(tiff[entry + 8 : entry + 10], order)
            return value if 1 <= value <= 8 else 1
    return 1


def _jpeg_exif(data: bytes) -> bytes:
    at = 2
    while at + 4 <= len(data) and data[at] == 0xFF:
        marker, length = data[at + 1], int.from_bytes(data[at + 2 : at + 4], "big")
        if marker == 0xE1 and data[at + 4 : at + 10] == b"Exif\x00\x00":
            return data[at + 10 : at + 2 + length]
        if marker in (0xD9, 0xDA):  # end of image, start of the pixels: no EXIF before them
            return b""
        at += 2 + length
    return b""


def _png_exif(data: bytes) -> bytes:
    at = 8
    while at + 12 <= len(data):  # chunks: length, type, data, CRC
        length, kind = int.from_bytes(data[at : at + 4], "big"), data[at + 4 : at + 8]
        if kind == b"eXIf":
            return data[at + 8 : at + 8 + length]
        if kind == b"IEND":
            return b""
        at += 12 + length
    return b""


def _webp_exif(data: bytes) -> bytes:
    at = 12
    while at + 8 <= len(data):  # RIFF chunks: fourcc, little-endian size, data padded to even
        kind, size = data[at : at + 4], int.from_bytes(data[at + 4 : at + 8], "little")
        if kind == b"EXIF":
            block = data[at + 8 : at + 8 + size]
            return block[6:] if block.startswith(b"Exif\x00\x00") else block
        at += 8 + size + (size & 1)
    return b""


def exif_orientation(data: bytes | np.ndarray) -> int:
    """The EXIF orientation (1-8; 1 when there is none) of an encoded JPEG, PNG or WebP:
    phones and editors store photos as the sensor saw them and this tag says how to turn them
    upright. OpenCV applies it to JPEG only when it converts the pixels, not for the unchanged
    decode ``read_image`` needs (alpha, 16 bits), and never to PNG or WebP, so it is read here:
    the TIFF block of the JPEG's APP1 segment, the PNG's eXIf chunk or the WebP's EXIF chunk, then
    tag 0x0112 of its IFD0. (OpenCV turns a TIFF file upright itself, in every mode.)"""
    head = bytes(data[:16])
    if head[:2] == b"\xff\xd8":
        return _tiff_orientation(_jpeg_exif(bytes(data[:65536])))  # the EXIF segment comes first, <= 64 KiB
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return _tiff_orientation(_png_exif(bytes(data)))  # eXIf may follow the pixels: the whole file
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _tiff_orientation(_webp_exif(bytes(data)))
    return 1


def upright(image: np.ndarray, orientation: int) -> np.ndarray:
    """The image turned as its EXIF ``orientation`` says (2-8 flip and/or rotate; 1 leaves it)."""
    if orientation in (5, 6, 7, 8):  # the stored image lies on its side
        image = np.swapaxes(image, 0, 1)
        orientation = {5: 1, 6: 2, 7: 3, 8: 4}[orientation]
    if orientation == 2:
        image = image[:, ::-1]
    elif orientation == 3:
        image = image[::-1, ::-1]
    elif orientation == 4:
        image = image[::-1]
    return np.ascontiguousarray(image)


def read_image(path) -> np.ndarray:
    """An image file (any format OpenCV decodes; any file name, non-ASCII too) as ``as_image``
    gives it: uint8 grey, BGR or BGRA (OpenCV reads a grey + alpha PNG as BGRA; a two-channel
    TIFF is its first channel). One ``SourceError`` naming the file when it is missing or cannot
    be read as an image (pixels ``as_image`` refuses, float ones beyond 255 say, included)."""
    from pathlib import Path

    from .errors import SourceError

    if str(path).lower().startswith(("http://", "https://")):
        raise SourceError(f"{path} is a web address; images are read from files: download it first")
    path = Path(path).expanduser()
    if path.is_dir():
        raise SourceError(f"{path} is a folder, not an image; give one image file (analyze.py reads folders)")
    if not path.is_file():
        raise SourceError(f"image {path} not found; check the path")
    data = None
    try:
        data = np.fromfile(path, np.uint8)
        image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    except (OSError, cv2.error):
        image = None
    if data is not None and data.size == 0:  # a copy or download cut short, most likely
        raise SourceError(f"{path} is empty (0 bytes); copy or download it again")
    if image is None or image.size == 0:
        raise SourceError(f"{path} is not an image OpenCV can read (JPEG, PNG, BMP, TIFF, WebP, ...)")
    if image.ndim == 3 and image.shape[2] == 2:  # a file's two channels are grey and alpha
        image = image[:, :, 0]
    image = upright(image, exif_orientation(data))
    try:
        return as_image(image)
    except SourceError as exc:
        raise SourceError(f"{path}: {exc}") from None


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
    if image.dtype != np.uint8:  # a float face in [0, 1] would otherwise turn black
        image = as_image(image)
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


def eye_angle(eyes: np.ndarray) -> float:
    """Degrees the face is tilted: the angle of the line from one eye to the other, (2, 2) as
    (x, y) of the eye on the image's left, then the other."""
    (x0, y0), (x1, y1) = sorted(map(tuple, np.asarray(eyes, float)))
    return float(np.degrees(np.arctan2(y1 - y0, x1 - x0)))


def upright_crop(grey: np.ndarray, box, eyes) -> np.ndarray:
    """The face in ``box`` rotated about the box centre so that its eyes are level: one affine
    warp straight into a box-sized crop (pixels outside the frame repeat the border)."""
    x, y, w, h = (float(v) for v in box)
    centre = (x + w / 2, y + h / 2)
    matrix = cv2.getRotationMatrix2D(centre, eye_angle(eyes), 1.0)
    matrix[:, 2] += (w / 2 - centre[0], h / 2 - centre[1])
    size = (max(int(round(w)), 1), max(int(round(h)), 1))
    return cv2.warpAffine(grey, matrix, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def crop_faces(grey: np.ndarray, boxes: np.ndarray, eyes: np.ndarray | None = None) -> list[np.ndarray]:
    """The pixels inside each (x, y, w, h) box, clipped to the frame; with ``eyes`` ((N, 2, 2)
    eye positions) each face is rotated upright first (``upright_crop``)."""
    if eyes is not None:
        return [upright_crop(grey, box, e) for box, e in zip(boxes, eyes)]
    height, width = grey.shape
    crops = []
    for x, y, w, h in boxes:
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
        crops.append(grey[y0:y1, x0:x1])
    return crops
