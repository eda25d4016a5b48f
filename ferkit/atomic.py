"""Atomic file writes: a file is written under a temporary name beside its target and renamed
over it only when complete, so a reader (or a resumed run) never sees half a file."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np


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
