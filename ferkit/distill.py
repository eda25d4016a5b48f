"""Knowledge distillation into one network: the soft targets a teacher (one saved model or
several averaged, read with test-time augmentation) gives each training face, blended with the
true labels. The student learns what the slower teacher sees in twelve views and several
networks, and runs in one pass."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .atomic import atomic_savez
from .classify import predict_proba, tta_options
from .errors import CheckpointError
from .modelfile import load_model, require_classes


def teacher_probabilities(teachers, x, class_names, tta="crops") -> np.ndarray:
    """The mean class probabilities of the saved models ``teachers`` for the uint8 faces ``x``,
    each model read with ``tta`` (None / False, "flip" or "crops"). Refuses teachers whose
    classes are not ``class_names``."""
    total = np.zeros((len(x), len(class_names)))
    for path in teachers:
        model, names = load_model(path)
        require_classes(names, class_names, path)
        print(f"teacher {path}: reading {len(x)} training faces", flush=True)
        total += predict_proba(model, x, **tta_options(tta))
    return (total / len(teachers)).astype(np.float32)


def cached_teacher_probabilities(cache: Path, teachers, x, class_names, tta="crops") -> np.ndarray:
    """``teacher_probabilities``, kept in ``cache`` (an .npz in the run's checkpoint folder) so a
    resumed run does not read the training set through the teachers again. The cache records what
    it was made from; another teacher, TTA or face count makes it stale and it is rebuilt."""
    key = json.dumps({"teachers": [str(Path(t).resolve()) for t in teachers], "tta": tta, "faces": len(x)})
    if cache.exists():
        try:
            with np.load(cache) as stored:
                if str(stored["key"]) == key:
                    return stored["proba"]
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointError(
                f"teacher cache {cache} is damaged ({type(exc).__name__}); delete it (it is rebuilt) or start "
                f"over with train_cnn.py --fresh."
            ) from None
    proba = teacher_probabilities(teachers, x, class_names, tta)
    atomic_savez(cache, proba=proba, key=np.array(key))
    return proba


def blend_targets(one_hot: np.ndarray, soft: np.ndarray, weight: float) -> np.ndarray:
    """Training targets: ``weight`` of the teacher's probabilities, the rest the true label."""
    return ((1 - weight) * one_hot + weight * soft).astype(np.float32)
