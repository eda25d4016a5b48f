"""FER2013 faces pasted into larger frames, where the right crop is known: (1) YuNet's box framing
measured against the FER crop on PublicTest faces, (2) the value of upright crops on PrivateTest
faces rotated by +-20 degrees.

    python benchmarks/faces_in_frames.py --data ../shared/data/fer2013 [--limit 1000]

(1) prints the median (dx, dy, side) that maps YuNet's tight box onto the pasted FER crop
    (``ferkit.detect.FER_FRAMING`` holds the result; only validation faces are used for it).
(2) prints shipped-model accuracy on PrivateTest faces: the 48x48 crops as given; pasted
    upright and found by YuNet; rotated +-20 degrees and found by YuNet, cropped without and
    with the eye alignment that realtime.py uses. A face YuNet misses counts as wrong.
    ``--split val`` measures (2) on PublicTest instead: the split to compare candidate models on;
    ``--tta flip|crops`` classifies as ``realtime.py --tta`` does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from ferkit import cli
from ferkit.classify import TTA_MODES, TTA_NAMES, ExpressionClassifier
from ferkit.data import load_dataset
from ferkit.detect import YuNetDetector
from ferkit.faces import crop_faces
from ferkit.paths import DEFAULT_DATA, DEFAULT_MODEL_PATH
from ferkit.splits import stratified_subset

FRAME = 320
SIDE = 144  # the pasted face: 48 px upscaled 3x


def paste(face: np.ndarray, angle: float, rng: np.random.Generator):
    """The face upscaled to SIDE px, rotated by ``angle`` degrees about its centre, on a grey
    frame at a random place. Returns (frame, box of the unrotated face, its centre)."""
    big = cv2.resize(face, (SIDE, SIDE), interpolation=cv2.INTER_CUBIC)
    frame = np.full((FRAME, FRAME), 110, np.uint8)
    x, y = (int(v) for v in rng.integers(30, FRAME - SIDE - 30, 2))
    frame[y : y + SIDE, x : x + SIDE] = big
    if angle:
        centre = (x + SIDE / 2, y + SIDE / 2)
        frame = cv2.warpAffine(frame, cv2.getRotationMatrix2D(centre, angle, 1.0), (FRAME, FRAME), borderValue=110)
    return frame, (x, y, SIDE, SIDE)


def framing(faces, rng) -> tuple[float, float, float, float]:
    detector = YuNetDetector(scale=1.0, framing=(0.0, 0.0, 1.0), min_face=10)
    rows = []
    for face in faces:
        frame, (x, y, s, _) = paste(face, 0, rng)
        boxes, _ = detector.detect(frame)
        if len(boxes) != 1:
            continue
        bx, by, bw, bh = boxes[0]
        rows.append(((x + s / 2 - (bx + bw / 2)) / bw, (y + s / 2 - (by + bh / 2)) / bw, s / bw))
    dx, dy, side = np.median(np.array(rows), axis=0)
    return float(dx), float(dy), float(side), len(rows) / len(faces)


def rotation_table(faces, labels, classifier, rng) -> dict:
    """Accuracy and share of faces found, upright and rotated by +-20 degrees (alternating),
    cropped from YuNet's box without and with eye alignment."""
    detector = YuNetDetector(scale=1.0, min_face=10)
    table = {}
    for tilt in (0.0, 20.0):
        crops = {False: [], True: []}
        for i, face in enumerate(faces):
            frame, _ = paste(face, tilt if i % 2 else -tilt, rng)
            boxes, eyes = detector.detect(frame)
            for aligned in (False, True):
                if len(boxes) == 0:
                    crops[aligned].append(None)
                    continue
                best = int(np.argmax(boxes[:, 2]))
                crops[aligned] += crop_faces(frame, boxes[best : best + 1], eyes[best : best + 1] if aligned else None)
        for aligned, found in crops.items():
            present = [c for c in found if c is not None]
            predicted = np.full(len(found), -1)
            predicted[[c is not None for c in found]] = np.argmax(classifier(present), axis=1)
            name = f"{'upright' if not tilt else 'rotated +-20 deg'}, {'aligned' if aligned else 'not aligned'}"
            table[name] = (float(np.mean(predicted == labels)), len(present) / len(found))
    return table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL_PATH)
    p.add_argument("--limit", type=int, default=0, help="stratified subset of each split (0 = all)")
    p.add_argument("--framing-only", action="store_true", help="measure (1) only")
    p.add_argument(
        "--split", choices=("test", "val"), default="test", help="faces for (2): val (PublicTest) to choose models on"
    )
    p.add_argument("--tta", choices=TTA_MODES, help="classify with test-time augmentation, as realtime.py --tta does")
    args = p.parse_args()
    data = load_dataset(args.data, progress=False)
    val, test = data.val, data.test if args.split == "test" else data.val
    if args.limit:
        idx = stratified_subset(val.y, args.limit)
        val_x = val.x[idx]
        idx = stratified_subset(test.y, args.limit)
        test_x, test_y = test.x[idx], test.y[idx]
    else:
        val_x, test_x, test_y = val.x, test.x, test.y
    rng = np.random.default_rng(0)
    dx, dy, side, rate = framing(val_x, rng)
    print(
        f"(1) YuNet box -> FER crop on {len(val_x)} PublicTest faces (found {rate:.1%}): "
        f"FER_FRAMING = ({dx:.3f}, {dy:.3f}, {side:.3f})"
    )
    if args.framing_only:
        return
    classifier = ExpressionClassifier(args.model, tta=args.tta)
    plain = float(np.mean(np.argmax(classifier(test_x), axis=1) == test_y))
    views = f", {TTA_NAMES[args.tta]}" if args.tta else ""
    split = "PrivateTest" if args.split == "test" else "PublicTest"
    print(f"(2) {args.model.name}{views} on {len(test_x)} {split} faces")
    print(f"    48x48 crops as given:                       accuracy {plain:.4f}")
    for name, (accuracy, found) in rotation_table(test_x, test_y, classifier, rng).items():
        print(
            f"    pasted, {name + ',':<32} YuNet: accuracy {accuracy:.4f} (faces found {found:.1%}; "
            f"{accuracy / found:.4f} of those found)"
        )


if __name__ == "__main__":
    cli.run_main(main)
