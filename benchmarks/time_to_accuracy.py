"""Time to accuracy, as DAWNBench measured it: wall-clock minutes from nothing (raw FER2013
images, no cache, no model) to a model at or above a target PrivateTest accuracy, here with
``train_cnn.py --preset fast`` on this machine's CPUs.

    python benchmarks/time_to_accuracy.py --data ../shared/data/fer2013            # preset fast, target 0.65
    python benchmarks/time_to_accuracy.py --data ../shared/data/fer2013 --epochs 20  # a shorter variant

The clock starts before train_cnn.py starts (imports and image decoding count) and stops when
the model, its metrics and plots are written. The model is the epoch with the best PublicTest
(validation) accuracy; PrivateTest is evaluated once, at the end, with the preset's test-time
augmentation (its time counts). Prints the validation curve against minutes and writes it to
plots/time_to_accuracy.png. Keep the machine otherwise idle: this is a wall-clock measurement.
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

from ferkit import cli
from ferkit.classify import TTA_NAMES
from ferkit.paths import DEFAULT_DATA, PLOTS_DIR
from ferkit.report import plot_time_to_accuracy


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--preset", default="fast")
    p.add_argument("--target", type=float, default=0.65)
    p.add_argument("--budget-minutes", type=float, default=45.0)
    p.add_argument("--work-dir", type=Path, help="the run's model, checkpoints and cache (default: a temp folder)")
    p.add_argument("--plot", type=Path, default=PLOTS_DIR / "time_to_accuracy.png")
    args, extra = p.parse_known_args(argv)  # anything else goes to train_cnn.py (e.g. --epochs 20)

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="fer-tta-"))
    shutil.rmtree(work / "cache", ignore_errors=True)  # from nothing: the images are decoded in the timed run
    started = time.time()
    script = Path(__file__).resolve().parent.parent / "train_cnn.py"
    subprocess.run(
        [
            sys.executable, str(script), "--data", args.data, "--preset", args.preset,
            "--name", "tta", "--fresh", "--overwrite",
            "--cache-dir", str(work / "cache"), "--models-dir", str(work / "models"),
            "--plots-dir", str(work / "plots"), "--checkpoint-dir", str(work / "checkpoint"), *extra,
        ],
        check=True,
    )  # fmt: skip
    total = (time.time() - started) / 60
    metrics = json.loads((work / "models" / "tta_metrics.json").read_text())
    history = metrics["history"]
    minutes = [(t - started) / 60 for t in history["ended_at"]]
    val = history["val_accuracy"]
    test = metrics["test_accuracy"]
    print(f"\ntime to accuracy: train_cnn.py --preset {args.preset} {' '.join(extra)}".rstrip())
    print("  epoch  minutes  validation accuracy")
    for epoch, (m, a) in enumerate(zip(minutes, val), start=1):
        print(f"  {epoch:5d}  {m:7.1f}  {a:.4f}")
    first = next((m for m, a in zip(minutes, val) if a >= args.target), None)
    print(f"  validation first >= {args.target:.2f} at minute: {'never' if first is None else f'{first:.1f}'}")
    print(f"  whole run (decode, train, evaluate, write): {total:.1f} minutes; budget {args.budget_minutes:.0f}")
    views = TTA_NAMES[metrics["tta"]]
    print(f"  PrivateTest accuracy of the chosen epoch ({views}, once): {test:.4f}; target {args.target:.2f}")
    met = test >= args.target and total <= args.budget_minutes
    print(f"  target met: {'yes' if met else 'no'}")
    plot = plot_time_to_accuracy(
        {f"--preset {args.preset}": (minutes, val, test, total)},
        args.target,
        args.plot,
        f"Time to accuracy on this machine: PrivateTest {test:.3f} after {total:.0f} min",
    )
    result = {"preset": args.preset, "extra": extra, "tta": metrics["tta"], "minutes": minutes, "val_accuracy": val,
              "test_accuracy": test, "total_minutes": total, "target": args.target, "met": met}  # fmt: skip
    (work / "time_to_accuracy.json").write_text(json.dumps(result, indent=1))
    print(f"  curve: {plot}; figures: {work / 'time_to_accuracy.json'}")
    return result


if __name__ == "__main__":
    cli.run_main(main)
