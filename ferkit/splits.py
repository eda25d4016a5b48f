"""Which faces a script holds out, and smaller samples of a split.

Data that names no splits of its own (a folder of class folders, a CSV without its Usage column,
a train/ folder without PublicTest_ files) has them drawn here. A face's split follows from its
pixels: each face gets a number in [0, 1) from a hash of its 48x48 grey levels, and the faces
below the held-out fraction are held out. So adding images to a dataset does not move an image
that was there before into another split (a model trained before and one trained after are tested
on faces neither trained on), identical faces share a split (a duplicate cannot carry a test face
into training), and the same faces get the same splits in every layout. The costs: the shares are
right on average, not to the face (10% of 200 faces is 20 give or take 4); a class none of whose
faces falls under the fraction has its lowest held out all the same (a split without the class
could not score it), and that face goes back to training once an added face of its class falls
under the fraction (likely only in small classes: 28% of classes of 12 faces need it, 4% of 30);
and a decoder that reads a face one grey level apart (another OpenCV build) draws that face anew.
"""

from __future__ import annotations

import hashlib

import numpy as np

from .errors import ParameterError

# Recorded by training runs whose data had its splits drawn here (checkpoints resume only onto the
# same held-out faces); a new rule gets a new name.
SPLIT_RULE = "face-hash-1"
# Faces hashed per read when the faces live on disk (store.FaceRows): memory stays at one chunk.
_KEY_CHUNK = 8192


def face_keys(x, purpose: str) -> np.ndarray:
    """A number in [0, 1) for each face of ``x`` ((N, 48, 48) uint8, or FaceRows), from a hash of
    its pixels and ``purpose`` (another purpose, another independent draw)."""
    person = purpose.encode()[:16]
    keys = np.empty(len(x), np.float64)
    for start in range(0, len(x), _KEY_CHUNK):
        chunk = np.ascontiguousarray(x[start : start + _KEY_CHUNK], dtype=np.uint8)
        for i, face in enumerate(chunk):
            digest = hashlib.blake2b(face.tobytes(), digest_size=8, person=person).digest()
            keys[start + i] = int.from_bytes(digest, "little") / 2.0**64
    return keys


def held_out(indices: np.ndarray, y: np.ndarray, keys: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Split ``indices`` into (rest, held) by ``keys`` (``face_keys`` of those faces, in their
    order): a face is held out when its key is below ``fraction``. A class of two or more distinct
    faces keeps at least one on each side (its lowest key held out, or its highest kept, with every
    copy of that face), so no split misses a class the data has twice; only such small classes
    depend on which other faces are there."""
    indices, labels = np.asarray(indices, np.int64), y[indices]
    held = keys < fraction
    for c in np.unique(labels):
        mine = np.flatnonzero(labels == c)
        if len(np.unique(keys[mine])) < 2:
            held[mine] = False
        elif not held[mine].any():
            held[mine[keys[mine] == keys[mine].min()]] = True
        elif held[mine].all():
            held[mine[keys[mine] == keys[mine].max()]] = False
    return indices[~held], indices[held]


def stratified_subset(y: np.ndarray, n: int, seed: int = 0, flag: str = "limit") -> np.ndarray:
    """Indices of n samples (all if n >= len(y)) keeping class proportions; every present class
    keeps >= 1 (so n must be at least the number of classes; ``flag`` names the option that set n
    in the error). Shares are rounded by largest remainder, so exactly n come back."""
    if n >= len(y):
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    classes, sizes = np.unique(y, return_counts=True)
    if n < len(classes):
        raise ParameterError(flag, f"({n}) must be at least the number of classes present ({len(classes)})")
    share = n * sizes / len(y)
    k = np.minimum(sizes, np.maximum(1, np.floor(share).astype(int)))
    while k.sum() != n:  # hand out (or take back) one face at a time by largest remainder
        room = share - k
        if k.sum() < n:
            i = np.argmax(np.where(k < sizes, room, -np.inf))
            k[i] += 1
        else:
            i = np.argmin(np.where(k > 1, room, np.inf))
            k[i] -= 1
    chosen = [rng.permutation(np.flatnonzero(y == c))[:size] for c, size in zip(classes, k)]
    return np.sort(np.concatenate(chosen))
