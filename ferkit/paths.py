"""Where the project keeps its files: the checkout's models/, plots/ and data/ folders, the
decoded-image cache and the shipped model. Every script's default paths come from here.

In a checkout (``pip install -e .``) everything is beside the package. Installed from a wheel
(``pip install .``), the shipped model and detector are package data (``ferkit/models``) and
what a user's runs write goes under the current folder instead of into site-packages."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PROJECT_DIR = PACKAGE_DIR.parent
IN_CHECKOUT = (PROJECT_DIR / "pyproject.toml").is_file() and (PROJECT_DIR / "models").is_dir()
WORK_DIR = PROJECT_DIR if IN_CHECKOUT else Path(".")
# The shipped files: models/ in the checkout; the same files as package data in a wheel.
SHIPPED_DIR = PROJECT_DIR / "models" if IN_CHECKOUT else PACKAGE_DIR / "models"
MODELS_DIR = WORK_DIR / "models"
PLOTS_DIR = WORK_DIR / "plots"
DEFAULT_DATA = WORK_DIR / "data" / "fer2013"
DEFAULT_CACHE_DIR = WORK_DIR / "data" / "cache"
# The shipped model: the Keras file training writes, and its ONNX export (export.py), which the
# live demo and the API run by default with ONNX Runtime (no TensorFlow needed, 3x faster).
KERAS_MODEL_PATH = SHIPPED_DIR / "fer_cnn.keras"
DEFAULT_MODEL_PATH = SHIPPED_DIR / "fer_cnn.onnx"
INT8_MODEL_PATH = SHIPPED_DIR / "fer_cnn.int8.onnx"
# OpenCV Zoo's YuNet face detector (MIT), shipped in the repo; see models/YUNET_NOTICE.md.
DEFAULT_YUNET = SHIPPED_DIR / "face_detection_yunet_2026may.onnx"


def portable(path: str | Path) -> str:
    """``path`` as a record kept beside a model should show it: inside the checkout relative to it
    (``data/cache``), in the home folder as ``~/...``, else as given. A metrics file that ships
    with the project held this machine's full paths (``/root/.cache/...``), which say nothing
    to anyone else and tell them where the trainer kept their files."""
    text = str(path)
    absolute = Path(text).expanduser()
    if not absolute.is_absolute():
        return text
    if IN_CHECKOUT and absolute.is_relative_to(PROJECT_DIR):
        return str(absolute.relative_to(PROJECT_DIR))
    try:
        home = Path.home()
    except RuntimeError:  # no HOME and no user entry (some containers)
        return text
    if absolute.is_relative_to(home) and home != Path("/"):
        return str(Path("~") / absolute.relative_to(home))
    return text
