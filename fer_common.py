"""Shared by every script: the class order, dataset loading, face preprocessing and model I/O.

Training, evaluation, feature extraction and the real-time demo all go through the functions
here, so a face is turned into model input in exactly one way everywhere.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sys
import tempfile
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

CLASS_NAMES: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
IMAGE_SIZE = 48
PROJECT_DIR = Path(__file__).resolve().parent
MODELS_DIR = PROJECT_DIR / "models"
PLOTS_DIR = PROJECT_DIR / "plots"
DEFAULT_DATA = PROJECT_DIR / "data" / "fer2013"
DEFAULT_CACHE_DIR = PROJECT_DIR / "data" / "cache"
DEFAULT_MODEL_PATH = MODELS_DIR / "fer_cnn.keras"

ALIASES = {
    "anger": "angry", "angry": "angry",
    "disgust": "disgust", "disgusted": "disgust",
    "fear": "fear", "fearful": "fear", "scared": "fear",
    "happy": "happy", "happiness": "happy", "joy": "happy",
    "neutral": "neutral",
    "sad": "sad", "sadness": "sad",
    "surprise": "surprise", "surprised": "surprise",
}
# fer2013.csv label codes (not alphabetical): 0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad,
# 5 Surprise, 6 Neutral.
CSV_CODE_TO_NAME = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}
CLASS_NAMES_ENTRY = "fer_class_names.json"
_CACHE_VERSION = 1

# Which split a decoded image belongs to before any split is made.
TRAIN, VAL, TEST, UNASSIGNED = 0, 1, 2, 3


class DatasetError(ValueError):
    """Bad dataset input; the message names the path and how to fix it."""


class ModelFileError(ValueError):
    """A model file that is missing or not one of ours; the message says what to do."""


@dataclass
class Split:
    """Images as uint8 (N, 48, 48) and integer labels indexing CLASS_NAMES."""

    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class Dataset:
    train: Split
    val: Split
    test: Split
    source: str
    layout: str
    val_note: str
    class_names: tuple[str, ...] = CLASS_NAMES


# --------------------------------------------------------------------------- preprocessing


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
        image = cv2.resize(image, (IMAGE_SIZE, IMAGE_SIZE),
                           interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return image


def to_model_input(faces) -> np.ndarray:
    """Stack face crops (a list of any-size crops, or a uint8 (N, 48, 48) array) into the
    float32 (N, 48, 48, 1) batch the CNN takes. Pixels stay 0-255; the model rescales."""
    if isinstance(faces, np.ndarray) and faces.ndim == 3 and faces.shape[1:] == (IMAGE_SIZE, IMAGE_SIZE):
        batch = faces
    else:
        batch = np.stack([prepare_face(f) for f in faces]) if len(faces) else np.zeros(
            (0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    return batch.astype(np.float32)[..., None]


# --------------------------------------------------------------------------- dataset loading


def canonical_class(name: str, where: Path) -> str:
    key = name.strip().lower()
    if key not in ALIASES:
        raise DatasetError(
            f"unknown class folder '{name}' in {where}. Class folders must be named one of "
            f"{', '.join(CLASS_NAMES)} (aliases such as anger, happiness, sadness, surprised "
            f"are accepted); rename or remove it.")
    return ALIASES[key]


def _class_dirs(folder: Path) -> list[tuple[str, Path]]:
    dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise DatasetError(
            f"no class folders in {folder}. Expected one sub-folder per expression "
            f"({', '.join(CLASS_NAMES)}) holding the face images.")
    return [(canonical_class(d.name, folder), d) for d in dirs]


def _image_files(folder: Path) -> list[os.DirEntry]:
    return sorted((e for e in os.scandir(folder)
                   if e.is_file() and Path(e.name).suffix.lower() in IMAGE_SUFFIXES),
                  key=lambda e: e.name)


def _group_from_name(filename: str, default: int) -> int:
    if filename.startswith("PublicTest_"):
        return VAL
    if filename.startswith("PrivateTest_"):
        return TEST
    if filename.startswith("Training_"):
        return TRAIN
    return default


def _collect_folder(folder: Path, default_group: int, require_all_nonempty: bool):
    """List (path, label, group, stat) for every image under folder/<class>/."""
    items = []
    for name, class_dir in _class_dirs(folder):
        files = _image_files(class_dir)
        if not files and require_all_nonempty:
            raise DatasetError(
                f"class folder {class_dir} has no images (.jpg/.png). Add images or remove "
                f"the empty folder.")
        label = CLASS_NAMES.index(name)
        for e in files:
            st = e.stat()
            items.append((e.path, label, _group_from_name(e.name, default_group),
                          st.st_size, st.st_mtime_ns))
    return items


def detect_layout(root: Path) -> tuple[str, dict[str, Path]]:
    """Return the layout name and the folders or file it reads."""
    if not root.exists():
        raise DatasetError(
            f"dataset path {root} does not exist. Download FER2013 (see README, 'Getting the "
            f"data') and pass its folder or fer2013.csv with --data.")
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise DatasetError(f"{root} is a file but not a .csv; pass a dataset folder or fer2013.csv.")
        return "csv", {"csv": root}
    subdirs = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    if "train" in subdirs:
        evaluation = {k: subdirs[k] for k in ("validation", "val", "test") if k in subdirs}
        if not evaluation:
            raise DatasetError(
                f"{root} has train/ but no test/ or validation/ folder. Add one, or pass "
                f"{subdirs['train']} itself to split it automatically.")
        return "folders", {"train": subdirs["train"], **evaluation}
    csvs = sorted(root.glob("*.csv"))
    if len(csvs) == 1 and not subdirs:
        return "csv", {"csv": csvs[0]}
    return "class_folders", {"all": root}


def _decode(path: str) -> np.ndarray | None:
    image = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    return None if image is None else prepare_face(image)


def _decode_files(items, progress: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    paths = [it[0] for it in items]
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        results = pool.map(_decode, paths, chunksize=64)
        if progress:
            from tqdm import tqdm
            results = tqdm(results, total=len(paths), desc="decoding images", unit="img")
        images = list(results)
    ok = [i for i, im in enumerate(images) if im is not None]
    skipped = len(images) - len(ok)
    if skipped:
        bad = [paths[i] for i, im in enumerate(images) if im is None][:3]
        warnings.warn(f"skipped {skipped} unreadable image(s), e.g. {', '.join(bad)}", stacklevel=3)
    x = np.stack([images[i] for i in ok]) if ok else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    y = np.array([items[i][1] for i in ok], np.int64)
    group = np.array([items[i][2] for i in ok], np.int64)
    return x, y, group, skipped


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    usage_group = {"training": TRAIN, "publictest": VAL, "privatetest": TEST}
    xs, ys, groups = [], [], []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns = {c.strip().lower(): c for c in (reader.fieldnames or [])}
        if "emotion" not in columns or "pixels" not in columns:
            raise DatasetError(
                f"{path} has columns {reader.fieldnames}; expected the fer2013.csv columns "
                f"'emotion,pixels,Usage' (Usage optional).")
        for line, row in enumerate(reader, start=2):
            try:
                code = int(row[columns["emotion"]])
                pixels = np.array(row[columns["pixels"]].split(), dtype=np.int64)
            except (TypeError, ValueError):
                raise DatasetError(f"{path}, line {line}: emotion must be an integer and pixels "
                                   f"space-separated integers; fix or remove that row.") from None
            if not 0 <= code < len(CSV_CODE_TO_NAME):
                raise DatasetError(f"{path}, line {line}: emotion code {code} is not in 0-6 "
                                   f"(0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral).")
            if pixels.size != IMAGE_SIZE * IMAGE_SIZE:
                raise DatasetError(
                    f"{path}, line {line}: {pixels.size} pixels, expected {IMAGE_SIZE * IMAGE_SIZE} "
                    f"({IMAGE_SIZE}x{IMAGE_SIZE} grey). Is this the FER2013 csv?")
            if pixels.min() < 0 or pixels.max() > 255:
                raise DatasetError(f"{path}, line {line}: pixel values must be 0-255.")
            usage = row.get(columns.get("usage", ""), "") or ""
            xs.append(pixels.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE))
            ys.append(CLASS_NAMES.index(CSV_CODE_TO_NAME[code]))
            groups.append(usage_group.get(usage.strip().lower(), UNASSIGNED))
    if not xs:
        raise DatasetError(f"{path} has a header but no rows.")
    return np.stack(xs), np.array(ys, np.int64), np.array(groups, np.int64)


def _fingerprint(parts) -> str:
    h = hashlib.sha256(f"v{_CACHE_VERSION}".encode())
    for part in parts:
        h.update(repr(part).encode())
    return h.hexdigest()[:20]


@contextmanager
def replacing(path: Path, suffix: str):
    """Yield a temporary file name beside ``path``; on success it atomically replaces ``path``,
    on failure it is removed, so readers only ever see a complete file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=suffix)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: Path, text: str) -> None:
    with replacing(path, ".tmp") as tmp:
        Path(tmp).write_text(text)


def atomic_savez(path: Path, **arrays) -> None:
    with replacing(path, ".tmp.npz") as tmp:
        np.savez(tmp, **arrays)


def _load_raw(layout: str, paths: dict[str, Path], cache_dir: Path | None, progress: bool):
    """Decode every image once; later calls with unchanged sources read the cache."""
    if layout == "csv":
        st = paths["csv"].stat()
        key = _fingerprint([layout, str(paths["csv"].resolve()), st.st_size, st.st_mtime_ns])
    else:
        items = []
        for role, folder in paths.items():
            default = {"train": TRAIN, "validation": VAL, "val": VAL, "test": TEST}.get(role, UNASSIGNED)
            if layout == "folders" and role in ("validation", "val") and "test" not in paths:
                default = TEST  # train/ + validation/ only: validation/ is the held-out set.
            items += _collect_folder(folder, default, require_all_nonempty=role in ("train", "all"))
        if not items:
            raise DatasetError(f"no images found under {', '.join(map(str, paths.values()))}.")
        key = _fingerprint([layout, sorted((str(Path(p).resolve()), s, m) for p, _, _, s, m in items),
                            [(i[1], i[2]) for i in items]])
    cache_file = cache_dir / f"fer-{key}.npz" if cache_dir else None
    if cache_file and cache_file.exists():
        try:
            with np.load(cache_file) as data:
                return data["x"], data["y"], data["group"]
        except (OSError, ValueError, KeyError, EOFError):
            warnings.warn(f"image cache {cache_file} is damaged; decoding the images again", stacklevel=3)
    if layout == "csv":
        x, y, group = _read_csv(paths["csv"])
    else:
        x, y, group, _ = _decode_files(items, progress)
    if cache_file:
        atomic_savez(cache_file, x=x, y=y, group=group)
    return x, y, group


def stratified_subset(y: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of about n samples keeping class proportions (every present class keeps >= 1)."""
    if n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        k = max(1, int(round(n * len(idx) / len(y))))
        chosen.append(rng.permutation(idx)[:k])
    return np.sort(np.concatenate(chosen))


def _stratified_split(indices: np.ndarray, y: np.ndarray, fraction: float, seed: int):
    """Split indices into (rest, held_out) with `fraction` of each class held out."""
    rng = np.random.default_rng(seed)
    held = []
    for c in np.unique(y[indices]):
        idx = rng.permutation(indices[y[indices] == c])
        k = int(round(fraction * len(idx)))
        if len(idx) >= 2:
            k = min(max(k, 1), len(idx) - 1)
        else:
            k = 0
        held.append(idx[:k])
    held = np.sort(np.concatenate(held)) if held else np.array([], np.int64)
    rest = np.setdiff1d(indices, held)
    return rest, held


def load_dataset(root: str | os.PathLike, *, val_fraction: float = 0.1, test_fraction: float = 0.1,
                 seed: int = 0, cache_dir: str | os.PathLike | None = DEFAULT_CACHE_DIR,
                 progress: bool = True) -> Dataset:
    """Load FER-style data from any supported layout into train / validation / test splits.

    Layouts: ``ROOT/train`` + ``ROOT/test`` (Kaggle; ``PublicTest_`` files become validation and
    ``PrivateTest_`` files the test set), ``ROOT/train`` + ``ROOT/validation``, ``fer2013.csv``
    (the Usage column gives the splits), or a folder of class folders (stratified split).
    Where no validation split exists, ``val_fraction`` of the training images (per class) are
    held out for it; the test split is never used for validation.
    """
    root = Path(root).expanduser()
    if not 0 < val_fraction < 1 or not 0 < test_fraction < 1:
        raise DatasetError("val_fraction and test_fraction must be between 0 and 1.")
    layout, paths = detect_layout(root)
    x, y, group = _load_raw(layout, paths, Path(cache_dir) if cache_dir else None, progress)
    if len(y) == 0:
        raise DatasetError(f"no readable images in {root}.")

    train_idx = np.flatnonzero(group == TRAIN)
    val_idx = np.flatnonzero(group == VAL)
    test_idx = np.flatnonzero(group == TEST)
    spare = np.flatnonzero(group == UNASSIGNED)
    if len(spare) and not len(train_idx):
        train_idx, test_idx = _stratified_split(spare, y, test_fraction, seed)
    elif len(spare):
        train_idx = np.sort(np.concatenate([train_idx, spare]))
    if not len(train_idx):
        raise DatasetError(f"{root} has no training images; add a train/ folder or Training rows.")
    if not len(test_idx):
        raise DatasetError(
            f"{root} has no test images. Add a test/ folder (or PrivateTest rows) or pass a plain "
            f"folder of class folders to split it automatically.")
    if len(val_idx):
        val_note = "validation: the dataset's own validation split"
    else:
        train_idx, val_idx = _stratified_split(train_idx, y, val_fraction, seed + 1)
        val_note = f"validation: {val_fraction:.0%} of the training images, stratified"
    return Dataset(train=Split(x[train_idx], y[train_idx]), val=Split(x[val_idx], y[val_idx]),
                   test=Split(x[test_idx], y[test_idx]), source=str(root), layout=layout,
                   val_note=val_note)


# --------------------------------------------------------------------------- model files


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


def load_model(path: str | os.PathLike = DEFAULT_MODEL_PATH):
    """Load a saved classifier and its class names; clear errors for missing or foreign files."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(
            f"model file {path} not found. Train one with `python train_cnn.py --data "
            f"PATH/TO/fer2013` (it writes {DEFAULT_MODEL_PATH.relative_to(PROJECT_DIR)}), or pass "
            f"--model PATH to a saved .keras model.")
    if not zipfile.is_zipfile(path):
        raise ModelFileError(f"{path} is not a Keras 3 .keras file; re-save it with model.save('x.keras').")
    import keras

    try:
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # keras raises many types for foreign or corrupt files
        raise ModelFileError(f"could not load {path}: {exc}") from None
    return model, read_class_names(path)


def fail(message: str, code: int = 2) -> None:
    """Print one clear error line and exit (scripts use this instead of a traceback)."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


# --------------------------------------------------------------------------- evaluation


def predict_proba(model, x: np.ndarray, *, flip_tta: bool = False, batch_size: int = 256) -> np.ndarray:
    """Class probabilities for uint8 (N, 48, 48) faces; flip_tta also averages the mirror image."""
    batch = to_model_input(x)
    proba = model.predict(batch, batch_size=batch_size, verbose=0)
    if flip_tta:
        proba = (proba + model.predict(batch[:, :, ::-1], batch_size=batch_size, verbose=0)) / 2
    return np.asarray(proba, dtype=np.float64)


def accuracy(model, split: Split, *, flip_tta: bool = False) -> float:
    """Share of a split's faces whose most probable class is the true one."""
    return float(np.mean(predict_proba(model, split.x, flip_tta=flip_tta).argmax(1) == split.y))


def classification_summary(y_true: np.ndarray, y_pred: np.ndarray, class_names=CLASS_NAMES) -> dict:
    """Accuracy, per-class precision/recall/F1 and the confusion matrix, as plain JSON types."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    labels = list(range(len(class_names)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0)
    return {
        "accuracy": float(np.mean(y_true == y_pred)),
        "macro_f1": float(np.mean(f1)),
        "per_class": {name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                      for name, p, r, f, s in zip(class_names, precision, recall, f1, support)},
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }


def format_report(summary: dict) -> str:
    lines = [f"{'class':>10} {'precision':>9} {'recall':>7} {'f1':>6} {'support':>8}"]
    for name, row in summary["per_class"].items():
        lines.append(f"{name:>10} {row['precision']:9.3f} {row['recall']:7.3f} {row['f1']:6.3f} "
                     f"{row['support']:8d}")
    lines.append(f"{'accuracy':>10} {summary['accuracy']:24.4f}   macro F1 {summary['macro_f1']:.4f}")
    return "\n".join(lines)


def plot_confusion(matrix, class_names, path: str | os.PathLike, title: str) -> Path:
    """Row-normalised confusion matrix with counts, saved as PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(matrix)
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(7, 6))
    im = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            ax.text(j, i, f"{rates[i, j]:.2f}\n({matrix[i, j]})", ha="center", va="center", fontsize=7,
                    color="white" if rates[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, label="fraction of true class")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
