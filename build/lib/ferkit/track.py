"""Following faces from frame to frame: boxes are matched by overlap (IoU) into tracks with
stable ids, and each track's class probabilities are averaged over its last frames."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np


def iou(a, b) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    inter_w = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    inter_h = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = inter_w * inter_h
    union = aw * ah + bw * bh - inter
    return inter / union if union else 0.0


@dataclass
class Track:
    box: tuple
    history: deque
    track_id: int
    missed: int = 0


@dataclass
class FaceSmoother:
    """Average each face's probabilities over its last ``window`` frames; faces are matched
    between frames by box overlap (IoU). window <= 1 turns smoothing off."""

    window: int = 5
    min_iou: float = 0.3
    max_missed: int = 5
    tracks: list = field(default_factory=list)
    next_id: int = 0

    def update(self, boxes, probabilities) -> tuple[np.ndarray, list[int]]:
        pairs = sorted(
            ((iou(t.box, b), ti, bi) for ti, t in enumerate(self.tracks) for bi, b in enumerate(boxes)), reverse=True
        )
        matched_tracks, assignment = set(), {}
        for overlap, ti, bi in pairs:
            if overlap < self.min_iou:
                break
            if ti not in matched_tracks and bi not in assignment:
                matched_tracks.add(ti)
                assignment[bi] = self.tracks[ti]
        for ti, track in enumerate(self.tracks):
            if ti not in matched_tracks:
                track.missed += 1
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        smoothed, ids = [], []
        for bi, (box, proba) in enumerate(zip(boxes, probabilities)):
            track = assignment.get(bi)
            if track is None:
                track = Track(tuple(box), deque(maxlen=max(self.window, 1)), self.next_id)
                self.next_id += 1
                self.tracks.append(track)
            track.box, track.missed = tuple(box), 0
            track.history.append(np.asarray(proba, float))
            smoothed.append(np.mean(track.history, axis=0))
            ids.append(track.track_id)
        if not smoothed:
            return np.zeros((0, np.shape(probabilities)[-1] if np.ndim(probabilities) == 2 else 0)), ids
        return np.array(smoothed), ids
