"""Memory of the training input: faces held in memory (the default) against faces read from disk
per batch (``train_cnn.py --stream``), for FER2013 and for a synthetic dataset of 500,000 faces.

    python benchmarks/input_memory.py --data ../shared/data/fer2013
    python benchmarks/input_memory.py --data ../shared/data/fer2013 --synthetic 500000

Each measurement is a fresh process that loads the dataset (``ferkit.data.load_dataset``), then
runs one epoch of the training batches (``ferkit.training.EpochBatches``: shuffled, converted a
batch at a time) through ``model.fit`` with a one-layer model, so what grows is the input, not
the network. Two phases per mode: the first run decodes the images (empty cache), the second
reads the cache. Peak RSS is the kernel's high-water mark (VmHWM). The synthetic faces are
FER2013 training faces, mirrored and shifted in brightness, written once as PNGs in the Kaggle
layout (about 1 GB for 500,000).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ferkit import cli
from ferkit.paths import DEFAULT_DATA


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(data: str, cache: str, stream: bool) -> None:
    """One measurement: load, then one epoch of batches through a tiny model; prints JSON."""
    import keras

    from ferkit.data import load_dataset
    from ferkit.training import EpochBatches

    started = time.time()
    after_imports = peak_rss_mb()
    dataset = load_dataset(data, cache_dir=cache, stream=stream, progress=False)
    loaded = time.time()
    train = dataset.train
    one_hot = np.eye(len(dataset.class_names), dtype=np.float32)
    batches = EpochBatches(train.x, one_hot[train.y], 512, seed=0)
    model = keras.Sequential(
        [keras.Input((48, 48, 1)), keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(len(dataset.class_names))]
    )
    model.compile("sgd", keras.losses.CategoricalCrossentropy(from_logits=True))
    model.fit(batches, epochs=1, verbose=0)
    print(
        json.dumps(
            {
                "faces": len(train) + len(dataset.val) + len(dataset.test),
                "train": len(train),
                "baseline_mb": after_imports,
                "peak_mb": peak_rss_mb(),
                "load_s": loaded - started,
                "epoch_s": time.time() - loaded,
            }
        )
    )


def measure(data: str, cache: Path, stream: bool) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", data, str(cache), "stream" if stream else "memory"],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        sys.exit(f"measurement failed ({data}, {'from disk' if stream else 'in memory'}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def make_synthetic(source: str, folder: Path, n: int) -> Path:
    """n faces in the Kaggle layout (90% Training_, 5% PublicTest_, 5% PrivateTest_), made from
    FER2013 training faces (mirrored, brightness shifted); written once, reused later."""
    import cv2

    from ferkit.data import load_dataset
    from ferkit.faces import CLASS_NAMES

    root = folder / f"synthetic-{n}"
    done = root / ".complete"
    if done.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    base = load_dataset(source, progress=False).train
    rng = np.random.default_rng(0)
    pick = rng.integers(0, len(base), n)
    for name in CLASS_NAMES:
        (root / "train" / name).mkdir(parents=True, exist_ok=True)
        (root / "test" / name).mkdir(parents=True, exist_ok=True)
    print(f"writing {n} synthetic faces to {root} (once)", flush=True)
    for i, j in enumerate(pick):
        face = base.x[j][:, ::-1] if rng.random() < 0.5 else base.x[j]
        face = np.clip(face.astype(np.int16) + int(rng.integers(-30, 31)), 0, 255).astype(np.uint8)
        share = i % 20
        prefix, folder_name = (
            ("Training", "train")
            if share < 18
            else (("PublicTest", "test") if share == 18 else ("PrivateTest", "test"))
        )
        cv2.imwrite(str(root / folder_name / CLASS_NAMES[base.y[j]] / f"{prefix}_{i:07d}.png"), face)
    done.touch()
    return root


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--synthetic", type=int, default=0, help="also measure a synthetic dataset of N faces")
    p.add_argument("--synthetic-dir", type=Path, default=Path("~/.cache/fer-synth").expanduser())
    p.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        data, cache, mode = args.child
        return child(data, cache, mode == "stream")

    datasets = [("FER2013", args.data)]
    if args.synthetic:
        datasets.append(
            (f"synthetic {args.synthetic:,}", str(make_synthetic(args.data, args.synthetic_dir, args.synthetic)))
        )
    print("peak RSS of load + one shuffled epoch of training batches (fresh process each; MB)")
    print(
        f"  {'dataset':<20} {'input':<16} {'phase':<12} {'faces':>9} {'baseline':>9} {'peak':>8} "
        f"{'load s':>7} {'epoch s':>8}"
    )
    results = []
    for label, data in datasets:
        for stream in (False, True):
            cache = Path(tempfile.mkdtemp(prefix="fer-mem-"))
            try:
                for phase in ("decode", "from cache"):
                    r = measure(data, cache, stream)
                    r.update(dataset=label, input="from disk" if stream else "in memory", phase=phase)
                    results.append(r)
                    print(
                        f"  {label:<20} {r['input']:<16} {phase:<12} {r['faces']:>9,} {r['baseline_mb']:>9.0f} "
                        f"{r['peak_mb']:>8.0f} {r['load_s']:>7.1f} {r['epoch_s']:>8.1f}",
                        flush=True,
                    )
            finally:
                shutil.rmtree(cache, ignore_errors=True)
    for label, _ in datasets:
        rows = {(r["input"], r["phase"]): r["peak_mb"] - r["baseline_mb"] for r in results if r["dataset"] == label}
        print(
            f"  {label}: peak above baseline from cache, in memory {rows[('in memory', 'from cache')]:.0f} MB, "
            f"from disk {rows[('from disk', 'from cache')]:.0f} MB"
        )


if __name__ == "__main__":
    cli.run_main(main)
