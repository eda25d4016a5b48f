"""Decoded faces on disk for datasets larger than memory: a plain, uncompressed ``.npy`` file of
uint8 (N, 48, 48) faces, written a chunk at a time, and ``FaceRows``, an array-like over some of
its rows that reads only the rows asked for. The file is an ordinary NumPy array file, so
``np.load(path, mmap_mode="r")`` maps it too.

Rows are read with ``os.pread`` rather than through a memory map: pages of a map that have been
read count toward the process' resident memory until the kernel needs them back, so an epoch
over a mapped 1 GB file shows 1 GB more RSS; read rows land in the page cache instead, which
the process does not own.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .atomic import replacing
from .errors import DatasetError
from .faces import IMAGE_SIZE

ROW_BYTES = IMAGE_SIZE * IMAGE_SIZE


def _header(count: int, width: int) -> bytes:
    """A version 1.0 .npy header for ``count`` faces, padded to ``width`` bytes (the width for the
    largest count the file may hold, so a shorter count can be written over it in place)."""
    text = repr({"descr": "|u1", "fortran_order": False, "shape": (count, IMAGE_SIZE, IMAGE_SIZE)})
    body = text.encode("latin1")
    pad = width - 10 - len(body) - 1
    return b"\x93NUMPY\x01\x00" + (width - 10).to_bytes(2, "little") + body + b" " * pad + b"\n"


def _header_width(count: int) -> int:
    text = repr({"descr": "|u1", "fortran_order": False, "shape": (count, IMAGE_SIZE, IMAGE_SIZE)})
    return -(-(10 + len(text) + 1) // 64) * 64


def write_faces(path: Path, chunks, most: int) -> int:
    """Write uint8 (n, 48, 48) chunks one after another into the .npy file ``path`` (atomically:
    complete or absent); ``most`` bounds the total. Returns the number of faces written."""
    width = _header_width(most)
    count = 0
    with replacing(Path(path), ".tmp.npy") as tmp, open(tmp, "wb") as f:
        f.write(_header(most, width))
        for chunk in chunks:
            chunk = np.ascontiguousarray(chunk, dtype=np.uint8)
            if chunk.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or count + len(chunk) > most:
                raise ValueError(f"chunk of shape {chunk.shape} does not fit the file")  # a caller's bug
            f.write(chunk.tobytes())
            count += len(chunk)
        f.seek(0)
        f.write(_header(count, width))
    return count


def face_checksum(path: Path, block: int = 1 << 24) -> int:
    """CRC-32 of a face file's faces (header excluded), read in blocks: memory stays flat. A bit
    flipped on disk changes it, so a damaged file is rebuilt instead of trained on."""
    import zlib

    rows = FaceRows(path)
    try:
        crc, size = 0, rows.total * ROW_BYTES
        for at in range(0, size, block):
            crc = zlib.crc32(rows._pread(min(block, size - at), at), crc)
    finally:
        rows.close()
    return crc


class FaceRows:
    """Faces ``rows`` of a .npy face file, read on demand. Indexing with an int, a slice or an
    integer array returns a uint8 NumPy array (as indexing an array would); ``subset`` returns
    another ``FaceRows``; ``np.asarray`` reads them all."""

    def __init__(self, path: str | os.PathLike, rows: np.ndarray | None = None):
        self.path = Path(path)
        with open(self.path, "rb") as f:
            major, _ = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            self.offset = f.tell()
        if dtype != np.uint8 or fortran or len(shape) != 3 or shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise DatasetError(
                f"{self.path} holds {dtype} {shape}, not uint8 (N, {IMAGE_SIZE}, {IMAGE_SIZE}) faces; delete it "
                f"and it is rebuilt from the images."
            )
        if os.path.getsize(self.path) < self.offset + shape[0] * ROW_BYTES:
            raise DatasetError(
                f"{self.path} is shorter than its header says (cut short?); delete it and it is rebuilt from "
                f"the images."
            )
        self.total = shape[0]
        self.rows = np.arange(self.total) if rows is None else np.asarray(rows, np.int64)
        self._fd = os.open(self.path, os.O_RDONLY)

    def close(self) -> None:
        fd, self._fd = getattr(self, "_fd", None), None
        if fd is not None:
            os.close(fd)

    __del__ = close

    def __getstate__(self):  # picklable (worker processes reopen the file)
        return {"path": self.path, "rows": self.rows}

    def __setstate__(self, state):
        self.__init__(state["path"], state["rows"])

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (len(self.rows), IMAGE_SIZE, IMAGE_SIZE)

    dtype = np.dtype(np.uint8)
    ndim = 3

    def subset(self, index) -> FaceRows:
        return FaceRows(self.path, self.rows[index])

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, (int, np.integer)):
            return self._read(self.rows[[index]])[0]
        return self._read(self.rows[index])

    def __array__(self, dtype=None, copy=None):
        faces = self._read(self.rows)
        return faces if dtype is None else faces.astype(dtype)

    def _pread(self, size: int, at: int) -> bytes:
        """``size`` bytes from ``at`` past the header; one pread may return less (Linux caps a call
        near 2 GiB), so read on until done."""
        parts, done = [], 0
        while done < size:
            part = os.pread(self._fd, size - done, self.offset + at + done)
            if not part:
                raise DatasetError(f"{self.path} ended early (changed while in use?); rerun to rebuild it.")
            parts.append(part)
            done += len(part)
        return b"".join(parts)

    def _read(self, file_rows: np.ndarray) -> np.ndarray:
        """Read the given rows of the file, one ``pread`` per run of consecutive rows."""
        file_rows = np.atleast_1d(file_rows)
        out = np.empty((len(file_rows), IMAGE_SIZE, IMAGE_SIZE), np.uint8)
        if not len(file_rows):
            return out
        order = np.argsort(file_rows, kind="stable")
        ordered = file_rows[order]
        breaks = np.flatnonzero(np.diff(ordered) != 1) + 1
        flat = out.reshape(len(out), ROW_BYTES)
        for run in np.split(np.arange(len(ordered)), breaks):
            first, n = int(ordered[run[0]]), len(run)
            flat[order[run]] = np.frombuffer(self._pread(n * ROW_BYTES, first * ROW_BYTES), np.uint8).reshape(
                n, ROW_BYTES
            )
        return out
