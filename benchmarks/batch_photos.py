"""A folder of photos into a table: ``analyze.py`` on N generated photos (the demo photo, one or
two faces at different sizes on 640x480 and 1280x720 backgrounds, in nested folders), images per
second and rows written, with one image per model call against 32, side by side in one run; and
the small faces of 1280x720 stills found by the video detector settings against the photo search.

    python benchmarks/batch_photos.py --photos 1000
"""

from __future__ import annotations

import argparse
import csv
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from ferkit import analyze, cli, clips
from ferkit.detect import YuNetDetector


def make_photos(folder: Path, n: int) -> int:
    """``n`` photos in ten sub-folders; returns the number of faces placed."""
    rng = np.random.default_rng(0)
    photo = clips.demo_photo()
    faces = 0
    for i in range(n):
        size = (1280, 720) if i % 3 == 0 else (640, 480)
        frame = clips._background(rng, size)
        count = 1 + (i % 4 == 0)
        for j in range(count):
            side = rng.uniform(60, 200) if count == 1 else rng.uniform(60, 120)
            x = size[0] * (j + 0.5) / count + rng.uniform(-20, 20)
            clips._place(frame, photo, side, (x, size[1] / 2 + rng.uniform(-30, 30)), rng.uniform(-8, 8))
        faces += count
        sub = folder / f"set{i % 10}"
        sub.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(sub / f"photo_{i:04d}.jpg"), frame)
    return faces


def run(folder: Path, log: Path, batch: int) -> dict:
    args = analyze.parse_args([str(folder), "--log", str(log), "--batch", str(batch), "--quiet"])
    started = time.perf_counter()
    summary = analyze.analyze(args)
    summary["wall"] = time.perf_counter() - started
    with open(log) as f:
        summary["rows"] = sum(1 for _ in csv.reader(f)) - 1
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--photos", type=int, default=1000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "photos"
        placed = make_photos(folder, args.photos)
        print(f"{args.photos} photos (640x480 and 1280x720, JPEG, in 10 folders), {placed} faces placed")
        for batch in (1, 32):
            s = run(folder, Path(tmp) / f"rows{batch}.csv", batch)
            print(
                f"  --batch {batch:>2}: {s['images']} images, {s['rows']} rows in {s['wall']:.1f} s, "
                f"{s['images'] / s['wall']:.1f} images/s"
            )
    stills = list(clips.small_face_stills(48, size=(1280, 720), sides=(32, 46)))
    detector = YuNetDetector()
    video = clips.score_detector(detector, stills)
    photo = clips.score_detector(lambda frame: detector.detect_still(frame)[0], stills)
    print(
        f"faces of 32-46 px in 48 stills of 1280x720: video settings (detection at half size) found "
        f"{video['recall']:.1%}; the photo search (several scales) {photo['recall']:.1%}, "
        f"{photo['false_per_frame']:.3f} false boxes per still"
    )


if __name__ == "__main__":
    cli.run_main(main)
