"""A video's expressions per tracked face: the seven probabilities over time, kept per track id
(the smoother's, stable over the video), written as one timeline plot per face and a summary CSV
(frames seen, seconds, share of time in each expression, mean confidence)."""

from __future__ import annotations

import csv
import io
import os
from collections import defaultdict
from pathlib import Path

import numpy as np

from .atomic import atomic_write_text
from .report import plot_timeline


class ExpressionTimeline:
    def __init__(self, class_names):
        self.class_names = tuple(class_names)
        self.tracks: dict[int, list] = defaultdict(list)

    def add(self, seconds: float, ids, probabilities) -> None:
        """Record one frame: each face's track id and (smoothed) probabilities at ``seconds``."""
        for track_id, proba in zip(ids, probabilities):
            self.tracks[int(track_id)].append((float(seconds), np.asarray(proba, float)))

    def summary(self) -> list[dict]:
        """One row per track: frames, first / last second, share of frames in each expression
        (by the most probable class), mean confidence of that class."""
        rows = []
        for track_id, samples in sorted(self.tracks.items()):
            times = np.array([t for t, _ in samples])
            proba = np.stack([p for _, p in samples])
            labels = proba.argmax(1)
            row = {
                "face": track_id,
                "frames": len(samples),
                "first_second": round(float(times[0]), 3),
                "last_second": round(float(times[-1]), 3),
                "main_expression": self.class_names[int(np.bincount(labels, minlength=len(self.class_names)).argmax())],
                "mean_confidence": round(float(proba.max(1).mean()), 4),
            }
            for i, name in enumerate(self.class_names):
                row[f"share_{name}"] = round(float(np.mean(labels == i)), 4)
            rows.append(row)
        return rows

    def write(self, folder: str | os.PathLike) -> list[Path]:
        """``folder/summary.csv`` and ``folder/face_<id>.png`` per track; returns the paths."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        rows = self.summary()
        text = io.StringIO()
        columns = list(rows[0]) if rows else ["face", "frames"]
        writer = csv.DictWriter(text, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_text(folder / "summary.csv", text.getvalue())
        written = [folder / "summary.csv"]
        for track_id, samples in sorted(self.tracks.items()):
            times = np.array([t for t, _ in samples])
            proba = np.stack([p for _, p in samples])
            written.append(
                plot_timeline(times, proba, self.class_names, folder / f"face_{track_id}.png", f"face {track_id}")
            )
        return written
