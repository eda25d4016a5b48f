"""Where the project keeps its files: the checkout's models/, plots/ and data/ folders, the
decoded-image cache and the shipped model. Every script's default paths come from here."""

from __future__ import annotations

from pathlib import Path

# The package sits at the top of the checkout (``pip install -e .`` keeps it there).
PROJECT_DIR = Path(__file__).resolve().parent.parent
MODELS_DIR = PROJECT_DIR / "models"
PLOTS_DIR = PROJECT_DIR / "plots"
DEFAULT_DATA = PROJECT_DIR / "data" / "fer2013"
DEFAULT_CACHE_DIR = PROJECT_DIR / "data" / "cache"
DEFAULT_MODEL_PATH = MODELS_DIR / "fer_cnn.keras"
# OpenCV Zoo's YuNet face detector (MIT), shipped in the repo; see models/YUNET_NOTICE.md.
DEFAULT_YUNET = MODELS_DIR / "face_detection_yunet_2026may.onnx"
