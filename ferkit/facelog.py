"""The per-face log of a video: one row per face per frame, as CSV or JSON lines."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from .atomic import finish, partial_name


class FaceLog:
    """One row per face per frame, as CSV or JSON lines (chosen by the file's extension). Rows go
    to a partial file, flushed every frame; ``close()`` (also after an interruption) moves it
    onto its name."""

    def __init__(self, path: str | Path, class_names):
        self.path, self.class_names = Path(path), class_names
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.partial = partial_name(self.path)
        self.file = open(self.partial, "w", newline="")  # noqa: SIM115 (open for the whole video)
        self.jsonl = self.path.suffix.lower() in (".jsonl", ".ndjson")
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
        if not self.file.closed:
            self.file.close()
            finish(self.partial, self.path)
