"""FER datasets: the four layouts on disk, the decoded-image cache, and the train / validation /
test splits every script uses (those the data does not name are drawn by ``splits``).

Layouts: ``ROOT/train`` + ``ROOT/test`` (Kaggle; ``PublicTest_`` files become validation and
``PrivateTest_`` files the test set), ``ROOT/train`` + ``ROOT/validation``, ``fer2013.csv``
(the Usage column gives the splits), a folder of class folders (split automatically), or an
``.npz`` of decoded faces written by ``export_npz`` (to carry a dataset to another machine).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import os
import re
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .atomic import atomic_savez, set_aside, try_cache_write
from .errors import DatasetError, FerWarning, ParameterError
from .faces import CLASS_NAMES, IMAGE_SIZE, exif_orientation, prepare_face, upright
from .npzfile import read_faces_npz, write_faces_npz
from .paths import DEFAULT_CACHE_DIR
from .progress import bar as progress_bar
from .splits import face_keys, held_out
from .store import FaceRows, face_checksum, write_faces

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
_CACHE_VERSION = 1
# Where the data names no test split, about this share of its faces is held out for testing, and
# where it names no validation split, this share of the rest for validation (the defaults of
# load_dataset; a model records those its run used, see ferkit/provenance.py).
TEST_FRACTION = 0.1
VAL_FRACTION = 0.1
# Images decoded per step when the faces go straight to disk (stream=True): memory stays at one chunk.
STREAM_CHUNK = 8192

# Which split a decoded image belongs to before any split is made.
TRAIN, VAL, TEST, UNASSIGNED = 0, 1, 2, 3
# The splits by the names scripts give them (export_npz's ``splits``, dataset folders' names).
SPLIT_GROUPS = {"train": TRAIN, "val": VAL, "test": TEST}


@dataclass
class Split:
    """Images as uint8 (N, 48, 48) and integer labels indexing CLASS_NAMES. ``x`` is an array,
    or ``store.FaceRows`` (read from disk on demand) when the data was loaded with stream=True."""

    x: np.ndarray | FaceRows
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, index) -> Split:
        return Split(self.x.subset(index) if isinstance(self.x, FaceRows) else self.x[index], self.y[index])


@dataclass
class Dataset:
    train: Split
    val: Split
    test: Split
    source: str
    layout: str
    val_note: str
    class_names: tuple[str, ...] = CLASS_NAMES
    test_note: str = "test: the dataset's own test split"

    val_drawn: bool = False  # the validation split was drawn here from the training images

    @property
    def test_drawn(self) -> bool:
        """Whether the test split was drawn at random here (the data names none of its own)."""
        return self.test_note != Dataset.test_note


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


def _decode_files(items, progress: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
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


def _decode_to_disk(items, path: Path, progress: bool) -> tuple[np.ndarray, np.ndarray]:
    """Decode images a chunk at a time straight into the face file ``path``; returns the labels
    and groups of the faces written (unreadable images skipped, as in memory)."""
    ys, groups = [], []

    def chunks():
        bar = None
        if progress:
            bar = progress_bar(total=len(items), desc="decoding images to disk", unit="img")
        for start in range(0, len(items), STREAM_CHUNK):
            x, y, group, _ = _decode_files(items[start : start + STREAM_CHUNK], progress=False)
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


def _read_csv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decoded faces in one file (``export_npz``): x uint8 (N, 48, 48), y (class indices), group."""
    x, y, group = read_faces_npz(path)
    group = np.full(len(y), UNASSIGNED) if group is None else group
    if len(y) and (y.min() < 0 or y.max() >= len(CLASS_NAMES) or group.min() < TRAIN or group.max() > UNASSIGNED):
        raise DatasetError(f"{path}: labels must be 0-{len(CLASS_NAMES) - 1} and groups 0-{UNASSIGNED}.")
    return x, y.astype(np.int64), group.astype(np.int64)


def export_npz(
    root: str | os.PathLike,
    path: str | os.PathLike,
    cache_dir: Path | None = DEFAULT_CACHE_DIR,
    *,
    splits: tuple[str, ...] = ("train", "val", "test"),
    quality: int | None = None,
) -> Path:
    """Write the decoded faces of a dataset, with their labels and splits, into one compressed
    .npz that ``load_dataset`` reads as a dataset: the way to carry the data to a GPU machine.

    Faces are stored losslessly as differences from the row above (FER2013: 62 MiB, against 75 MiB
    as they are), or with ``quality`` (1-100) as lossy WebP images, about half that size (FER2013's
    training faces at 90: 25 MiB, about 2 grey levels RMS from the originals). ``splits`` keeps
    only those of train, val and test (leave test behind when its faces need not travel)."""
    unknown = set(splits) - set(SPLIT_GROUPS)
    if unknown or not splits:
        raise ParameterError(
            "splits", f"must be one or more of {', '.join(SPLIT_GROUPS)}, not {', '.join(sorted(unknown)) or 'none'}"
        )
    if quality is not None and not 1 <= quality <= 100:
        raise ParameterError("quality", f"must be between 1 and 100 (WebP quality), not {quality}")
    layout, paths = detect_layout(Path(root).expanduser())
    x, y, group = _load_raw(layout, paths, Path(cache_dir) if cache_dir else None, progress=True)
    keep = np.flatnonzero(np.isin(group, [SPLIT_GROUPS[name] for name in splits]))
    if not len(keep):
        raise DatasetError(f"{root} has no faces in the splits {', '.join(splits)}.")
    return write_faces_npz(path, np.asarray(x)[keep], y[keep], group[keep], quality)


def _fingerprint(parts) -> str:
    h = hashlib.sha256(f"v{_CACHE_VERSION}".encode())
    for part in parts:
        h.update(repr(part).encode())
    return h.hexdigest()[:20]


def _load_raw(
    layout: str, paths: dict[str, Path], cache_dir: Path | None, progress: bool, stream: bool = False, check=None
):
    """Decode every image once; later calls with unchanged sources read the cache. With
    ``stream`` the faces go to (and come back as) a face file read on demand (``FaceRows``).
    ``check(group)``: called on image folders' groups (known from file and folder names) before
    any image is decoded, so a dataset that cannot be used is refused in seconds, not minutes."""
    if layout in ("csv", "npz"):
        st = paths[layout].stat()
        # (a CSV's groups follow the Usage rules: "usage-2" since unknown values are refused)
        key = _fingerprint([layout, str(paths[layout].resolve()), st.st_size, st.st_mtime_ns, "usage-2"])
        source = [layout, str(paths[layout].resolve())]
        if layout == "npz" and not stream:
            return _read_npz(paths["npz"])  # as fast as a cache of it would be
    else:
        items = []
        for role, folder in paths.items():
            default = {**SPLIT_GROUPS, "validation": VAL}.get(role, UNASSIGNED)
            if layout == "folders" and role in ("validation", "val") and "test" not in paths:
                default = TEST  # train/ + validation/ only: validation/ is the held-out set.
            items += _collect_folder(folder, default, require_all_nonempty=role in ("train", "all"))
        if not items:
            raise DatasetError(f"no images found under {', '.join(map(str, paths.values()))}.")
        if check is not None:
            check(np.array([item[2] for item in items]))
        files = sorted((str(Path(p).resolve()), s, m) for p, _, _, s, m in items)
        # "upright-1": files are turned by their EXIF tag here (_decode), not by some OpenCV versions
        key = _fingerprint([layout, files, [(i[1], i[2]) for i in items], "upright-1"])
        source = [layout, sorted((role, str(folder.resolve())) for role, folder in paths.items())]
    # The name leads with the source (which file or folders), then what was in it: a cache this
    # one replaces (the same source, other files, sizes or times) can be found and removed.
    key = f"{_fingerprint(source)[:8]}-{key}"
    if stream:
        return _load_raw_on_disk(layout, paths, None if layout in ("csv", "npz") else items, key, cache_dir, progress)
    cache_file = cache_dir / f"fer-{key}.npz" if cache_dir else None
    if cache_file and cache_file.exists():
        try:
            with np.load(cache_file) as data:
                x, y, group = data["x"], data["y"], data["group"]
            if x.ndim == 3 and x.shape[1:] == (IMAGE_SIZE, IMAGE_SIZE) and len(x) == len(y) == len(group):
                return x, y, group
            set_aside(cache_file, "image cache")
        except Exception:  # truncated or bit-flipped: BadZipFile, OSError, ValueError, zlib.error, ...
            set_aside(cache_file, "image cache")
    if layout == "csv":
        x, y, group = _read_csv(paths["csv"])
    else:
        x, y, group, _ = _decode_files(items, progress)
    if cache_file and try_cache_write(atomic_savez, cache_file, x=x, y=y, group=group):
        _drop_superseded(cache_dir, key)
    return x, y, group


_CACHE_NAME = re.compile(r"fer-([0-9a-f]{8})-([0-9a-f]{20})(\.npz|\.faces\.npy|\.labels\.npz)")


def _drop_superseded(cache_dir: Path, key: str) -> None:
    """Remove the caches of this source's earlier contents, once its new one is written: the same
    file or folders with other files, sizes or times (a dataset edited, or copied again) can never
    be read from them again, and each of FER2013's costs 83 MB. Only names this module gives are
    touched: other sources' caches, and damaged files set aside (``NAME.damaged``), stay."""
    source = key.split("-", 1)[0]
    for path in cache_dir.glob(f"fer-{source}-*"):
        match = _CACHE_NAME.fullmatch(path.name)
        if match and f"{match[1]}-{match[2]}" != key:
            # in use (Windows) or read-only: left, harmless; it is only never read
            with contextlib.suppress(OSError):
                path.unlink()


def _load_raw_on_disk(layout, paths, items, key: str, cache_dir: Path | None, progress: bool):
    """The stream=True cache: faces in ``fer-KEY.faces.npy``, labels in ``fer-KEY.labels.npz``."""
    if cache_dir is None:
        raise DatasetError("reading faces from disk (--stream) needs a cache folder; give --cache-dir.")
    faces_file, labels_file = cache_dir / f"fer-{key}.faces.npy", cache_dir / f"fer-{key}.labels.npz"
    if faces_file.exists() and labels_file.exists():
        try:
            with np.load(labels_file) as data:
                y, group = data["y"], data["group"]
                crc = int(data["crc"]) if "crc" in data.files else None
            x = FaceRows(faces_file)
            if len(x) == len(y) == len(group) and crc in (None, face_checksum(faces_file)):
                return x, y, group
            x.close()
            set_aside(faces_file, "face file")
        except Exception:  # cut short, or labels damaged
            set_aside(faces_file, "face file")
    cache_dir.mkdir(parents=True, exist_ok=True)
    if layout in ("csv", "npz"):
        x, y, group = _read_csv(paths["csv"]) if layout == "csv" else _read_npz(paths["npz"])
        write_faces(faces_file, [x], most=len(x))
    else:
        y, group = _decode_to_disk(items, faces_file, progress)
    atomic_savez(labels_file, y=y, group=group, crc=np.int64(face_checksum(faces_file)))
    _drop_superseded(cache_dir, key)
    return FaceRows(faces_file), y, group


def _rows(x, index: np.ndarray):
    """Rows ``index`` of the faces, read on demand where they live on disk."""
    return x.subset(index) if isinstance(x, FaceRows) else x[index]


def _require_splits(
    root: Path, layout: str, train: bool, val: bool, test: bool, need_test: bool, need_train: bool = True
) -> None:
    if not train and not need_train:  # scoring a split the data names (evaluate.py): none is drawn
        if not (val or test):
            raise DatasetError(f"{root} has no validation or test images to score.")
        return
    if not train and layout == "class_folders":  # every file named for FER2013's held-out splits
        raise DatasetError(
            f"{root} has no training images: its files are named PublicTest_* or PrivateTest_*, which keep "
            f"FER2013's own validation and test splits in any layout, so none is left to train on or to draw "
            f"splits from. evaluate.py scores it (--split test, val or all); to have it split here, rename the files."
        )
    if not train:
        raise DatasetError(f"{root} has no training images; add a train/ folder or Training rows.")
    if not test and (need_test or not val):
        raise DatasetError(
            f"{root} has no test images. Add a test/ folder (or PrivateTest rows), or pass a plain "
            f"folder of class folders to split it automatically (files named Training_* always count as "
            f"training images, so a FER2013 train/ folder alone cannot be split)."
            + (" An .npz exported without its test faces serves train_cnn.py only." if layout == "npz" else "")
        )


def load_all_faces(
    root: str | os.PathLike, *, cache_dir: str | os.PathLike | None = DEFAULT_CACHE_DIR, progress: bool = True
) -> tuple[Split, str, int]:
    """Every face of a dataset in any layout ``load_dataset`` reads, whatever split it belongs to,
    the layout, and how many of the faces a model trained on this data may have seen (those of its
    training split, and those of no named split, which ``load_dataset`` draws mostly for
    training): to score a model on labelled faces it never trained on (a test folder alone, or
    one's own class folders), where no training split need exist."""
    root = Path(root).expanduser()
    layout, paths = detect_layout(root)
    x, y, group = _load_raw(layout, paths, Path(cache_dir) if cache_dir else None, progress)
    if len(y) == 0:
        raise DatasetError(f"no readable images in {root}.")
    return Split(x, y), layout, int(np.sum((group == TRAIN) | (group == UNASSIGNED)))


def load_dataset(
    root: str | os.PathLike,
    *,
    val_fraction: float = VAL_FRACTION,
    test_fraction: float = TEST_FRACTION,
    cache_dir: str | os.PathLike | None = DEFAULT_CACHE_DIR,
    progress: bool = True,
    stream: bool = False,
    need_test: bool = True,
    need_train: bool = True,
) -> Dataset:
    """Load FER-style data from any supported layout into train / validation / test splits.

    Layouts: ``ROOT/train`` + ``ROOT/test`` (Kaggle; ``PublicTest_`` files become validation and
    ``PrivateTest_`` files the test set), ``ROOT/train`` + ``ROOT/validation``, ``fer2013.csv``
    (the Usage column gives the splits), or a folder of class folders (split here).
    Where no validation split exists, about ``val_fraction`` of the training images are held out
    for it; the test split is never used for validation. Splits drawn here follow from each face's
    pixels (``splits.held_out``): images added later do not move the earlier ones, save in classes of a few
    faces (see ``splits``). With ``stream`` the decoded
    faces stay on disk (in the cache folder) and each split's ``x`` reads its rows on demand, so
    memory does not grow with the dataset (image folders are decoded a chunk at a time; a CSV or
    .npz, one file already, is read whole once to write the face file). Without ``need_test`` a
    dataset with its own validation split may lack a test split (training only: an .npz exported
    without its test faces). Without ``need_train`` data that names its own validation or test
    faces and holds nothing else (FER2013's test/ folder alone) loads with an empty training split
    and whichever of those it has: to score a named split, which needs no training faces.
    """
    root = Path(root).expanduser()
    if not 0 < val_fraction < 1 or not 0 < test_fraction < 1:
        raise DatasetError("val_fraction and test_fraction must be between 0 and 1.")
    layout, paths = detect_layout(root)

    def usable(group):  # the groups as named; spare images without training ones are split here
        spare, train = np.any(group == UNASSIGNED), np.any(group == TRAIN)
        _require_splits(
            root,
            layout,
            spare or train,
            np.any(group == VAL),
            np.any(group == TEST) or spare and not train,
            need_test,
            need_train,
        )

    x, y, group = _load_raw(layout, paths, Path(cache_dir) if cache_dir else None, progress, stream, check=usable)
    if len(y) == 0:
        raise DatasetError(f"no readable images in {root}.")

    train_idx = np.flatnonzero(group == TRAIN)
    val_idx = np.flatnonzero(group == VAL)
    test_idx = np.flatnonzero(group == TEST)
    spare = np.flatnonzero(group == UNASSIGNED)
    test_note = Dataset.test_note
    if len(spare) and not len(train_idx):
        train_idx, test_idx = held_out(spare, y, face_keys(_rows(x, spare), "test"), test_fraction)
        # Said wherever the test split is reported: a CSV without its Usage column may well hold
        # the very faces a model trained on, and its "test" accuracy would then mean nothing.
        test_note = (
            f"test: about {test_fraction:.0%} of the images, held out at random by a hash of each face (the data "
            "names no test split: a Usage column or a test/ folder would)"
        )
    elif len(spare):
        train_idx = np.sort(np.concatenate([train_idx, spare]))
    _require_splits(root, layout, len(train_idx) > 0, len(val_idx) > 0, len(test_idx) > 0, need_test, need_train)
    val_drawn = not len(val_idx) and len(train_idx) > 0
    if len(val_idx):
        val_note = "validation: the dataset's own validation split"
        if not len(test_idx) and len(train_idx):  # e.g. an .npz exported without its test faces, to train elsewhere
            val_note += "; no test split (the test report is left to evaluate.py on the full dataset)"
    elif not len(train_idx):  # only named test faces (need_train=False): nothing to draw from
        val_note = "no validation split"
    else:
        train_idx, val_idx = held_out(train_idx, y, face_keys(_rows(x, train_idx), "validation"), val_fraction)
        val_note = f"validation: about {val_fraction:.0%} of the training images, by a hash of each face"
    everything = Split(x, y)
    return Dataset(
        train=everything.subset(train_idx),
        val=everything.subset(val_idx),
        test=everything.subset(test_idx),
        source=str(root),
        layout=layout,
        val_note=val_note,
        test_note=test_note,
        val_drawn=val_drawn,
    )
