"""Where a dataset's faces are on disk and how each file becomes a face: the four layouts
(Kaggle's ``train/`` + ``test/``, ``train/`` + ``validation/``, ``fer2013.csv``, a folder of class
folders, or an ``.npz`` written by ``data.export_npz``), the split each image belongs to by its
file or folder name, and the decoding of images, CSV rows and ``.npz`` files into 48x48 faces.
``imagecache`` keeps what is decoded here; ``data`` assembles the splits from it.
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from .errors import DatasetError, FerWarning
from .faces import CLASS_NAMES, IMAGE_SIZE, exif_orientation, prepare_face, upright
from .npzfile import read_faces_npz
from .progress import bar as progress_bar
from .store import write_faces

ALIASES = {
    "anger": "angry",
    "angry": "angry",
    "disgust": "disgust",
    "disgusted": "disgust",
    "fear": "fear",
    "fearful": "fear",
    "scared": "fear",
    "happy": "happy",
    "happiness": "happy",
    "joy": "happy",
    "neutral": "neutral",
    "sad": "sad",
    "sadness": "sad",
    "surprise": "surprise",
    "surprised": "surprise",
}
# fer2013.csv label codes (not alphabetical): 0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad,
# 5 Surprise, 6 Neutral.
CSV_CODE_TO_NAME = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".pgm", ".tif", ".tiff", ".webp"}
# Images decoded per step when the faces go straight to disk (stream=True): memory stays at one chunk.
STREAM_CHUNK = 8192

# Which split a decoded image belongs to before any split is made.
TRAIN, VAL, TEST, UNASSIGNED = 0, 1, 2, 3
# The splits by the names scripts give them (export_npz's ``splits``, dataset folders' names).
SPLIT_GROUPS = {"train": TRAIN, "val": VAL, "test": TEST}


def canonical_class(name: str, where: Path) -> str:
    key = name.strip().lower()
    if key not in ALIASES:
        raise DatasetError(
            f"unknown class folder '{name}' in {where}. Class folders must be named one of "
            f"{', '.join(CLASS_NAMES)} (aliases such as anger, happiness, sadness, surprised "
            f"are accepted); rename or remove it."
        )
    return ALIASES[key]


def _class_dirs(folder: Path) -> list[tuple[str, Path]]:
    for entry in folder.iterdir():  # a class that cannot be read must not vanish from training silently
        if entry.is_symlink() and not entry.name.startswith(".") and not entry.exists():
            raise DatasetError(
                f"{entry} is a link that leads nowhere (broken, or a loop); fix or remove it: a class folder "
                f"that cannot be read would leave its class out of the data."
            )
    dirs = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise DatasetError(
            f"no class folders in {folder}. Expected one sub-folder per expression "
            f"({', '.join(CLASS_NAMES)}) holding the face images."
        )
    named = [(canonical_class(d.name, folder), d) for d in dirs]
    for name in CLASS_NAMES:  # Happy/ and happiness/ side by side: one class, or a slip?
        same = [d.name for n, d in named if n == name]
        if len(same) > 1:
            raise DatasetError(
                f"{folder} has {len(same)} folders for the class {name} ({', '.join(same)}); "
                f"move their images into one folder."
            )
    return named


def _image_files(folder: Path) -> list[os.DirEntry]:
    """The images in a class folder and in the folders inside it (a class sorted further, e.g. by
    session), in a fixed order; hidden files and folders are left out."""
    found, pending, visited = [], [folder], {os.path.realpath(folder)}
    while pending:
        for entry in os.scandir(pending.pop()):
            if entry.name.startswith("."):
                continue
            if entry.is_symlink() and not os.path.exists(entry.path):
                raise DatasetError(
                    f"{entry.path} is a link that leads nowhere (broken, or a loop); fix or remove it: its "
                    f"images would be left out of the data."
                )
            if entry.is_dir():  # a linked folder too, each folder once (a link back up is no loop)
                real = os.path.realpath(entry.path)
                if real not in visited:
                    visited.add(real)
                    pending.append(Path(entry.path))
            elif entry.is_file() and Path(entry.name).suffix.lower() in IMAGE_SUFFIXES:
                found.append(entry)
    return sorted(found, key=lambda e: os.path.relpath(e.path, folder))


def _group_from_name(filename: str, default: int) -> int:
    if filename.startswith("PublicTest_"):
        return VAL
    if filename.startswith("PrivateTest_"):
        return TEST
    if filename.startswith("Training_"):
        return TRAIN
    return default


def list_images(layout: str, paths: dict[str, Path]) -> list[tuple]:
    """(path, label, group, size, mtime) of every image in the folders ``detect_layout`` found,
    each image's group from its file name, else from the folder it is in."""
    items = []
    for role, folder in paths.items():
        default = {**SPLIT_GROUPS, "validation": VAL}.get(role, UNASSIGNED)
        if layout == "folders" and role in ("validation", "val") and "test" not in paths:
            default = TEST  # train/ + validation/ only: validation/ is the held-out set.
        items += _collect_folder(folder, default, require_all_nonempty=role in ("train", "all"))
    if not items:
        raise DatasetError(f"no images found under {', '.join(map(str, paths.values()))}.")
    return items


def _collect_folder(folder: Path, default_group: int, require_all_nonempty: bool):
    """List (path, label, group, stat) for every image under folder/<class>/."""
    items = []
    for name, class_dir in _class_dirs(folder):
        files = _image_files(class_dir)
        if not files and require_all_nonempty:
            raise DatasetError(
                f"class folder {class_dir} has no images (.jpg/.png). Add images or remove the empty folder."
            )
        label = CLASS_NAMES.index(name)
        for e in files:
            st = e.stat()
            items.append((e.path, label, _group_from_name(e.name, default_group), st.st_size, st.st_mtime_ns))
    return items


def detect_layout(root: Path) -> tuple[str, dict[str, Path]]:
    """Return the layout name and the folders or file it reads."""
    if not root.exists():
        raise DatasetError(
            f"dataset path {root} does not exist. Download FER2013 (see README, 'Getting the "
            f"data') and pass its folder or fer2013.csv with --data."
        )
    if root.is_file():
        if root.suffix.lower() == ".npz":
            return "npz", {"npz": root}
        if root.suffix.lower() != ".csv":
            raise DatasetError(
                f"{root} is a file but not a .csv or .npz; pass a dataset folder, fer2013.csv or an .npz "
                f"written by tools/export_npz.py."
            )
        return "csv", {"csv": root}
    subdirs = {p.name.lower(): p for p in root.iterdir() if p.is_dir()}
    if "train" in subdirs:
        evaluation = {k: subdirs[k] for k in ("validation", "val", "test") if k in subdirs}
        if not evaluation:
            raise DatasetError(
                f"{root} has train/ but no test/ or validation/ folder. Add one, or pass "
                f"{subdirs['train']} itself to split it automatically."
            )
        return "folders", {"train": subdirs["train"], **evaluation}
    csvs = sorted(root.glob("*.csv"))
    if len(csvs) == 1 and not subdirs:
        return "csv", {"csv": csvs[0]}
    return "class_folders", {"all": root}


def disturbs_dataset(root, target, kind: str = "picture") -> str | None:
    """Why writing ``target`` would change what the next run reads from the dataset folder
    ``root``, or None where the loader never looks (beside the split folders of the Kaggle layout,
    a file at the top of any, a hidden folder). ``kind``: "picture" (a plot file), "pictures" (a
    folder of plots) or "files" (a folder of models or checkpoints: no images, so harmless inside
    a class folder, but a new folder where folders are read as classes)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        return None
    try:
        layout, read = detect_layout(root)
    except DatasetError:
        return None  # refused on its own when loaded
    root, target = root.resolve(), Path(target).expanduser().resolve()
    inside = lambda folder: target == folder or folder in target.parents  # noqa: E731
    if layout == "folders":
        holder = next((f.resolve() for f in read.values() if inside(f.resolve())), None)
    elif not inside(root) or target.parent == root and kind == "picture":  # a file at the top is never read
        return None
    elif layout == "csv":
        return f"a new folder in {root}, which would make the next run take it for class folders, not its CSV"
    else:
        holder = root
    if holder is None:
        return None
    parts = target.relative_to(holder).parts
    if any(part.startswith(".") for part in parts):  # hidden files and folders are never read
        return None
    if kind == "files":  # no images: harmful only as a folder that is no class (a new class)
        if not parts or (holder / parts[0]).is_dir() and parts[0].strip().lower() in ALIASES:
            return None
        return f"a new folder in {holder}, whose folders the next run reads as classes of faces"
    if layout == "folders":
        return f"inside {holder}, whose pictures the next run reads as faces"
    return f"inside {root}, whose folders the next run reads as classes of faces"


def _decode(path: str) -> np.ndarray | None:
    # Turned upright by the file's EXIF orientation as the photo path does it (faces.read_image),
    # not by OpenCV: whether imread applies it to PNG and WebP depends on OpenCV's version, so a
    # phone's sideways face trained upright on one machine and sideways on another.
    try:
        data = np.fromfile(path, np.uint8)  # also reads non-ASCII paths, which imread cannot on Windows
        image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION) if data.size else None
    except (OSError, cv2.error):  # a header claiming a gigapixel image, say: skipped like any unreadable file
        return None
    return None if image is None else prepare_face(upright(image, exif_orientation(data)))


def decode_files(items, progress: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    paths = [it[0] for it in items]
    with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 2) * 2)) as pool:
        results = pool.map(_decode, paths, chunksize=64)
        if progress:
            results = progress_bar(results, total=len(paths), desc="decoding images", unit="img")
        images = list(results)
    ok = [i for i, im in enumerate(images) if im is not None]
    skipped = len(images) - len(ok)
    if skipped:
        bad = [paths[i] for i, im in enumerate(images) if im is None][:3]
        warnings.warn(f"skipped {skipped} unreadable image(s), e.g. {', '.join(bad)}", FerWarning, stacklevel=3)
    x = np.stack([images[i] for i in ok]) if ok else np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.uint8)
    y = np.array([items[i][1] for i in ok], np.int64)
    group = np.array([items[i][2] for i in ok], np.int64)
    return x, y, group, skipped


def decode_to_disk(items, path: Path, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """Decode images a chunk at a time straight into the face file ``path``; returns the labels
    and groups of the faces written (unreadable images skipped, as in memory)."""
    ys, groups = [], []

    def chunks():
        bar = None
        if progress:
            bar = progress_bar(total=len(items), desc="decoding images to disk", unit="img")
        for start in range(0, len(items), STREAM_CHUNK):
            x, y, group, _ = decode_files(items[start : start + STREAM_CHUNK], progress=False)
            ys.append(y)
            groups.append(group)
            if bar:
                bar.update(min(STREAM_CHUNK, len(items) - start))
            yield x
        if bar:
            bar.close()

    write_faces(path, chunks(), most=len(items))
    return np.concatenate(ys), np.concatenate(groups)


# A CSV's Usage values: FER2013's names, and the folder layouts' (train/, validation/ or val/,
# test/), read with spaces, _ and - left out ("Private Test"); an empty value leaves the row to
# the splits drawn here, and any other is refused.
CSV_USAGE_GROUPS = {
    "training": TRAIN,
    "publictest": VAL,
    "privatetest": TEST,
    "train": TRAIN,
    "validation": VAL,
    "val": VAL,
    "test": TEST,
}


def read_csv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        return _read_csv_rows(path, CSV_USAGE_GROUPS)
    except UnicodeDecodeError as exc:
        raise DatasetError(
            f"{path} is not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); save it as "
            f"UTF-8 CSV (the FER2013 csv is plain ASCII)."
        ) from None


def _read_csv_rows(path: Path, usage_group: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    xs, ys, groups = [], [], []
    # utf-8-sig: spreadsheet programs' "CSV UTF-8" starts with a byte-order mark.
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        columns = {c.strip().lower(): c for c in (reader.fieldnames or [])}
        if "emotion" not in columns or "pixels" not in columns:
            raise DatasetError(
                f"{path} has columns {reader.fieldnames}; expected the fer2013.csv columns "
                f"'emotion,pixels,Usage' (Usage optional)."
            )
        for line, row in enumerate(reader, start=2):
            try:
                code = int(row[columns["emotion"]])
                pixels = np.array(row[columns["pixels"]].split(), dtype=np.int64)
            except (TypeError, ValueError, AttributeError):  # AttributeError: a row with no pixels column
                raise DatasetError(
                    f"{path}, line {line}: emotion must be an integer and pixels "
                    f"space-separated integers; fix or remove that row."
                ) from None
            if not 0 <= code < len(CSV_CODE_TO_NAME):
                raise DatasetError(
                    f"{path}, line {line}: emotion code {code} is not in 0-6 "
                    f"(0 Angry, 1 Disgust, 2 Fear, 3 Happy, 4 Sad, 5 Surprise, 6 Neutral)."
                )
            if pixels.size != IMAGE_SIZE * IMAGE_SIZE:
                raise DatasetError(
                    f"{path}, line {line}: {pixels.size} pixels, expected {IMAGE_SIZE * IMAGE_SIZE} "
                    f"({IMAGE_SIZE}x{IMAGE_SIZE} grey). Is this the FER2013 csv?"
                )
            if pixels.min() < 0 or pixels.max() > 255:
                raise DatasetError(f"{path}, line {line}: pixel values must be 0-255.")
            usage = re.sub(r"[\s_-]", "", row.get(columns.get("usage", ""), "") or "").lower()
            if usage and usage not in usage_group:
                # A typo must not carry test faces into training unseen.
                raise DatasetError(
                    f"{path}, line {line}: Usage {row[columns['usage']]!r} is not a split; use Training, PublicTest "
                    f"(validation) or PrivateTest (test), or leave it empty for the loader to draw that row's split."
                )
            xs.append(pixels.astype(np.uint8).reshape(IMAGE_SIZE, IMAGE_SIZE))
            ys.append(CLASS_NAMES.index(CSV_CODE_TO_NAME[code]))
            groups.append(usage_group.get(usage, UNASSIGNED))
    if not xs:
        raise DatasetError(f"{path} has a header but no rows.")
    return np.stack(xs), np.array(ys, np.int64), np.array(groups, np.int64)


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decoded faces in one file (``export_npz``): x uint8 (N, 48, 48), y (class indices), group."""
    x, y, group = read_faces_npz(path)
    group = np.full(len(y), UNASSIGNED) if group is None else group
    if len(y) and (y.min() < 0 or y.max() >= len(CLASS_NAMES) or group.min() < TRAIN or group.max() > UNASSIGNED):
        raise DatasetError(f"{path}: labels must be 0-{len(CLASS_NAMES) - 1} and groups 0-{UNASSIGNED}.")
    return x, y.astype(np.int64), group.astype(np.int64)
