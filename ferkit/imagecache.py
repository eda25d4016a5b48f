"""The decoded-image cache: a dataset's faces are decoded once (``layouts``) and kept in the cache
folder under a name made of where they came from and what was there (files, sizes, times), so a
later run reads them in a second and an edited dataset is decoded again (an ``.npz`` of faces, as
fast to read as its cache, is cached only to be read on demand with ``stream``). A cache found
damaged is set aside, never trusted; one superseded by a newer read of the same source is removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from pathlib import Path

import numpy as np

from .atomic import atomic_savez, set_aside, try_cache_write
from .errors import DatasetError
from .faces import IMAGE_SIZE
from .layouts import decode_files, decode_to_disk, list_images, read_csv, read_npz
from .store import FaceRows, face_checksum, write_faces

_CACHE_VERSION = 1


def _fingerprint(parts) -> str:
    h = hashlib.sha256(f"v{_CACHE_VERSION}".encode())
    for part in parts:
        h.update(repr(part).encode())
    return h.hexdigest()[:20]


def load_raw(
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
            return read_npz(paths["npz"])  # as fast as a cache of it would be
    else:
        items = list_images(layout, paths)
        if check is not None:
            check(np.array([item[2] for item in items]))
        files = sorted((str(Path(p).resolve()), s, m) for p, _, _, s, m in items)
        # "upright-1": files are turned by their EXIF tag (layouts._decode), not by some OpenCV versions
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
        x, y, group = read_csv(paths["csv"])
    else:
        x, y, group, _ = decode_files(items, progress)
    if cache_file and try_cache_write(atomic_savez, cache_file, x=x, y=y, group=group):
        _drop_superseded(cache_dir, key)
    return x, y, group


_CACHE_NAME = re.compile(r"fer-([0-9a-f]{8})-([0-9a-f]{20})(\.npz|\.faces\.npy|\.labels\.npz)")
# The names caches had before they led with their source (until d49fe9e): no version since reads
# them, and nothing tells whose data they hold, so the first new cache written removes them all.
_OLD_CACHE_NAME = re.compile(r"fer-[0-9a-f]{20}(\.npz|\.faces\.npy|\.labels\.npz)")


def _drop_superseded(cache_dir: Path, key: str) -> None:
    """Remove the caches of this source's earlier contents, once its new one is written: the same
    file or folders with other files, sizes or times (a dataset edited, or copied again) can never
    be read from them again, and each of FER2013's costs 83 MB. Only names this module gives are
    touched: other sources' caches, and damaged files set aside (``NAME.damaged``), stay. Caches
    named the old way (``_OLD_CACHE_NAME``), which can never be read again, go too."""
    source = key.split("-", 1)[0]
    for path in cache_dir.glob("fer-*"):
        match = _CACHE_NAME.fullmatch(path.name)
        superseded = bool(match) and match[1] == source and f"{match[1]}-{match[2]}" != key
        if superseded or _OLD_CACHE_NAME.fullmatch(path.name):
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
        x, y, group = read_csv(paths["csv"]) if layout == "csv" else read_npz(paths["npz"])
        write_faces(faces_file, [x], most=len(x))
    else:
        y, group = decode_to_disk(items, faces_file, progress)
    atomic_savez(labels_file, y=y, group=group, crc=np.int64(face_checksum(faces_file)))
    _drop_superseded(cache_dir, key)
    return FaceRows(faces_file), y, group
