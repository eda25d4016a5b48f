"""Atomic file writes: a file is written under a temporary name beside its target and renamed
over it only when complete, so a reader (or a resumed run) never sees half a file."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import FerWarning


@contextmanager
def replacing(path: Path, suffix: str):
    """Yield a temporary file name beside ``path``; on success it atomically replaces ``path``,
    on failure it is removed, so readers only ever see a complete file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(path.parent, f".{path.name}.tmp-*")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-{os.getpid()}-", suffix=suffix)
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


def partial_name(path: Path) -> Path:
    """Where a file being written goes until it is complete: a hidden name beside ``path`` with
    the same extension (video writers and image encoders choose their format by it)."""
    path = Path(path)
    remove_stale(path.parent, f".{path.stem}.partial-*{path.suffix}")
    return path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def remove_stale(folder: Path, pattern: str) -> None:
    """Remove the temporary files matching ``pattern`` that a killed process of ours left behind
    (their name carries the writer's process id; a live writer's files are left alone)."""
    for leftover in Path(folder).glob(pattern):
        tail = (
            leftover.name.split(".partial-")[-1] if ".partial-" in leftover.name else leftover.name.split(".tmp-")[-1]
        )
        pid = tail.split("-")[0].split(".")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            leftover.unlink(missing_ok=True)


def finish(partial: Path, path: Path) -> Path:
    """Move a completed partial file onto its final name in one step."""
    os.replace(partial, path)
    return Path(path)


def set_aside(path: Path, why: str) -> Path | None:
    """Move a damaged cache file out of the way (``NAME.damaged``) and warn, naming it; the caller
    then rebuilds it. Returns the new name (None if even the move failed)."""
    import warnings

    path = Path(path)
    aside = path.with_name(path.name + ".damaged")
    try:
        os.replace(path, aside)
    except OSError:
        aside = None
    warnings.warn(
        f"{why}: {path} is damaged" + (f"; moved to {aside.name}" if aside else "") + ", rebuilding it",
        FerWarning,
        stacklevel=3,
    )
    return aside


def try_cache_write(write, path: Path, **arrays) -> bool:
    """Write a cache file; on a read-only or full disk, warn and go on without the cache."""
    import warnings

    try:
        write(path, **arrays)
        return True
    except OSError as exc:
        warnings.warn(
            f"cannot write the cache {path} ({exc.strerror or exc}); going on without it", FerWarning, stacklevel=3
        )
        return False
