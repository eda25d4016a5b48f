"""The per-face log of a video: one row per face per frame, as CSV or JSON lines."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

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
        self.jsonl = self.path.suffix.lower() in (".jsonl", ".json", ".ndjson")
        if not self.jsonl:
            self.writer = csv.writer(self.file)
            self.writer.writerow(
                ["frame", "time", "face", "x", "y", "w", "h", "label", "confidence", *self.class_names]
            )

    def write(self, frame_index: int, seconds: float, boxes, probabilities, ids) -> None:
        for box, proba, face_id in zip(boxes, probabilities, ids):
            best = int(np.argmax(proba))
            row = {
                "frame": frame_index,
                "time": round(seconds, 4),
                "face": int(face_id),
                "box": [int(v) for v in box],
                "label": self.class_names[best],
                "confidence": round(float(proba[best]), 4),
                "probabilities": {n: round(float(p), 4) for n, p in zip(self.class_names, proba)},
            }
            if self.jsonl:
                self.file.write(json.dumps(row) + "\n")
            else:
                self.writer.writerow(
                    [
                        frame_index,
                        row["time"],
                        face_id,
                        *row["box"],
                        row["label"],
                        row["confidence"],
                        *row["probabilities"].values(),
                    ]
                )

        self.file.flush()

    def close(self) -> None:
        if not self.file.closed:
            self.file.close()
            finish(self.partial, self.path)
