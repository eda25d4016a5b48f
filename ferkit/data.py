"""FER datasets as every script uses them: the train / validation / test splits (those the data
does not name are drawn by ``splits``), all faces of a dataset to score, and an ``.npz`` of them to
carry to another machine. The layouts it reads (FER2013's folders, ``fer2013.csv``, class
folders, such an ``.npz``) and their decoding are ``layouts``; the cache of decoded faces is
``imagecache``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DatasetError, ParameterError
from .faces import CLASS_NAMES
from .imagecache import load_raw
from .layouts import SPLIT_GROUPS, TEST, TRAIN, UNASSIGNED, VAL, detect_layout
from .npzfile import write_faces_npz
from .paths import DEFAULT_CACHE_DIR
from .splits import face_keys, held_out
from .store import FaceRows

# Where the data names no test split, about this share of its faces is held out for testing, and
# where it names no validation split, this share of the rest for validation (the defaults of
# load_dataset; a model records those its run used, see ferkit/provenance.py).
TEST_FRACTION = 0.1
VAL_FRACTION = 0.1


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
    x, y, group = load_raw(layout, paths, Path(cache_dir) if cache_dir else None, progress=True)
    keep = np.flatnonzero(np.isin(group, [SPLIT_GROUPS[name] for name in splits]))
    if not len(keep):
        raise DatasetError(f"{root} has no faces in the splits {', '.join(splits)}.")
    return write_faces_npz(path, np.asarray(x)[keep], y[keep], group[keep], quality)


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
    x, y, group = load_raw(layout, paths, Path(cache_dir) if cache_dir else None, progress)
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

    x, y, group = load_raw(layout, paths, Path(cache_dir) if cache_dir else None, progress, stream, check=usable)
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
