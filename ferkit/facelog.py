"""The per-face log of a video: one row per face per frame, as CSV or JSON lines."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from .atomic import finish, partial_name
from .errors import SourceError

# A face log is a table: CSV, or JSON lines (one object per face) for these suffixes. Not .json:
# json.load cannot read JSON lines whole, so the scripts refuse that name (cli.check_log_file).
JSONL_SUFFIXES = (".jsonl", ".ndjson")
LOG_SUFFIXES = (".csv", *JSONL_SUFFIXES)


def check_log_name(path) -> bool:
    """Whether the log at ``path`` is JSON lines (else CSV); ``SourceError`` for another suffix."""
    suffix = Path(path).suffix.lower()
    if suffix not in LOG_SUFFIXES:
        raise SourceError(f"a face log {path} must be named {' or '.join(LOG_SUFFIXES)} (JSON lines for the last two)")
    return suffix in JSONL_SUFFIXES


class TableFile:
    """Where a table of faces goes: a file (CSV, or JSON lines by its extension) written under a
    partial name and moved onto its own by ``end`` (also after Ctrl-C), or, for the path ``"-"``,
    a stream (standard output) taking CSV rows as they come. Shared by the video's ``FaceLog`` and
    analyze.py's table of photos."""

    def __init__(self, path: str | Path, stream=None):
        if str(path) == "-":
            self.path, self.partial, self.jsonl, self.file = None, None, False, stream or sys.stdout
        else:
            self.path = Path(path)
            self.jsonl = check_log_name(self.path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.partial = partial_name(self.path)
            self.file = open(self.partial, "w", newline="")  # noqa: SIM115 (open for the whole run)

    def end(self, keep: bool = True) -> None:
        """Move the file onto its name (``keep``) or remove it; a stream is flushed, not closed."""
        if self.partial is None:
            self.file.flush()
        elif not self.file.closed:
            self.file.close()
            if keep:
                finish(self.partial, self.path)
            else:
                Path(self.partial).unlink(missing_ok=True)


class FaceLog(TableFile):
    """One row per face per frame, as CSV or JSON lines (chosen by the file's extension). Rows go
    to a partial file, flushed every frame; ``close()`` (also after an interruption) moves it
    onto its name. ``"-"``: CSV rows on standard output as each frame comes, for a program that
    reads them live."""

    def __init__(self, path: str | Path, class_names):
        super().__init__(path)
        self.class_names = class_names
        if not self.jsonl:
            self.writer = csv.writer(self.file)
            self.writer.writerow(
                ["frame", "time", "face", "x", "y", "w", "h", "label", "confidence", *self.class_names]
            )

    def write(self, frame_index: int, seconds: float, faces) -> None:
        """One row per ``Face`` (from ``Recognizer.faces``) of this frame."""
        for face in faces:
            probabilities = {n: round(p, 4) for n, p in face.probabilities.items()}
            confidence = round(face.confidence, 4)
            if self.jsonl:
                row = {
                    "frame": frame_index,
                    "time": round(seconds, 4),
                    "face": face.track_id,
                    "box": list(face.box),
                    "label": face.label,
                    "confidence": confidence,
                    "probabilities": probabilities,
                }
                self.file.write(json.dumps(row) + "\n")
            else:
                self.writer.writerow(
                    [
                        frame_index,
                        round(seconds, 4),
                        face.track_id,
                        *face.box,
                        face.label,
                        confidence,
                        *probabilities.values(),
                    ]
                )
        self.file.flush()

    def close(self) -> None:
        self.end()
