"""Knowledge distillation into one network: the soft targets a teacher (one saved model or
several averaged, read with test-time augmentation) gives each training face, blended with the
true labels. The student learns what the slower teachers see in twelve views and several
networks, and runs in one pass."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from .atomic import atomic_savez, set_aside, try_cache_write
from .classify import predict_proba, tta_options
from .errors import CheckpointError
from .modelfile import load_model, require_classes


def teacher_probabilities(teachers, x, class_names, tta) -> np.ndarray:
    """The mean class probabilities of the saved models ``teachers`` for the uint8 faces ``x``,
    each model read with ``tta`` (None / False, "flip" or "crops"). Refuses teachers whose
    classes are not ``class_names``."""
    total = np.zeros((len(x), len(class_names)))
    for path in teachers:
        model, names = load_model(path)
        require_classes(names, class_names, path, "distil from models trained on this data's classes")
        print(f"teacher {path}: reading {len(x)} training faces", flush=True)
        total += predict_proba(model, x, **tta_options(tta))
    return (total / len(teachers)).astype(np.float32)


def _identity(teachers, x, y, tta, chunk: int = 8192) -> str:
    """What the targets depend on: each teacher file (path, size, time), the TTA, and the faces
    and labels themselves (a hash, so another subset of the same size does not pass)."""
    h = hashlib.sha256(np.asarray(y, np.int64).tobytes())
    for start in range(0, len(x), chunk):
        h.update(np.ascontiguousarray(x[start : start + chunk]).tobytes())
    files = []
    for teacher in map(Path, teachers):
        st = teacher.stat()
        files.append((str(teacher.resolve()), st.st_size, st.st_mtime_ns))
    return json.dumps({"teachers": files, "tta": tta, "faces": h.hexdigest()})


def cached_teacher_probabilities(
    cache: Path, teachers, x, y, class_names, tta, *, resuming: bool = False, write: bool = True
) -> np.ndarray:
    """``teacher_probabilities``, kept in ``cache`` (an .npz in the run's checkpoint folder) so a
    resumed run does not read the training set through the teachers again. The cache records what
    it was made from (``_identity``); when that changed, a new run rebuilds it, while a resumed
    run refuses (its first epochs learnt other targets). A damaged cache is set aside and rebuilt
    (same teachers, same faces: the same targets). ``write=False`` (hosts other than the writer of
    a multi-host run) reads the cache if it matches and otherwise computes in memory."""
    identity = _identity(teachers, x, y, tta)
    if cache.exists():
        try:
            with np.load(cache) as stored:
                same, proba = str(stored["identity"]) == identity, stored["proba"]
            intact = proba.shape == (len(x), len(class_names)) and np.isfinite(proba).all()
        except Exception:  # truncated or bit-flipped: BadZipFile, EOFError, OSError, KeyError, ...
            same = intact = False
            if write:
                set_aside(cache, "teacher targets")
        if same and intact:
            return proba
        if intact and resuming:
            raise CheckpointError(
                f"the teachers or the training faces changed since the checkpoint in {cache.parent} was made "
                f"(its targets no longer match); restore them, or start over with train_cnn.py --fresh."
            )
    proba = teacher_probabilities(teachers, x, class_names, tta)
    if write:
        try_cache_write(atomic_savez, cache, proba=proba, identity=np.array(identity))
    return proba


def blend_targets(one_hot: np.ndarray, soft: np.ndarray, weight: float) -> np.ndarray:
    """Training targets: ``weight`` of the teacher's probabilities, the rest the true label."""
    return ((1 - weight) * one_hot + weight * soft).astype(np.float32)
