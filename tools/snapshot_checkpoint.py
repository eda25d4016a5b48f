"""A consistent copy of a training run's checkpoint folder taken while the run goes on, written as
one tar in parts of at most --part-bytes into OUT (NAME.ckpt.tar.00, .01, ...), replacing the
parts of the previous snapshot: tools/device_longrun.sh brings a run's checkpoint back from a lent
GPU machine this way (the device tool returns files of at most 16 MiB). Here:
``cat NAME.ckpt.tar.* | tar -x -C FOLDER`` gives FOLDER/NAME, which train_cnn.py resumes.

    python tools/snapshot_checkpoint.py CKPT_DIR OUT NAME [--part-bytes 15728640]

Consistent: the files are hard links taken to state.json and to the files it names (the epoch's
model, the weight average), so the run's atomic replacements cannot change them underneath; a
snapshot that a new epoch overtook (a named file already removed, or a best.keras newer than
state.json, which an epoch writes before it) is taken again. Prints the epoch, the number of
parts and the best validation accuracy so far; exits 1, leaving
OUT as it was, when the folder holds no finished epoch or no consistent copy could be taken.
Needs only the standard library: it runs beside the training without loading Keras.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tarfile
import time
from pathlib import Path

MARKER = ".ferkit-checkpoint"  # ferkit.checkpoint_folder.MARKER (not imported: no Keras, no NumPy here)


def link_consistent(checkpoint: Path, snap: Path, tries: int = 5) -> dict | None:
    """Hard-link one epoch's checkpoint files into ``snap``; return its state.json, or None."""
    for _ in range(tries):
        shutil.rmtree(snap, ignore_errors=True)
        snap.mkdir(parents=True)
        try:
            os.link(checkpoint / "state.json", snap / "state.json")
            state = json.loads((snap / "state.json").read_text())
            names = [state["model_file"], *([state["swa"]["file"]] if state.get("swa") else [])]
            for name in names:
                os.link(checkpoint / name, snap / name)
            for name in ("best.keras", MARKER):  # present from the first epoch on; a missing one is not fatal
                if (checkpoint / name).exists():
                    os.link(checkpoint / name, snap / name)
        except FileNotFoundError:  # state.json not written yet, or an epoch removed what it named
            if not (checkpoint / "state.json").exists():
                return None
            time.sleep(0.5)
            continue
        except (ValueError, KeyError, TypeError):
            return None  # not a checkpoint that train_cnn.py wrote
        best = snap / "best.keras"
        if best.exists() and best.stat().st_mtime_ns > (snap / "state.json").stat().st_mtime_ns:
            time.sleep(0.5)  # a later epoch's best model: take the whole snapshot again
            continue
        return state
    return None


def write_parts(snap: Path, out: Path, name: str, part_bytes: int, staging: Path) -> list[Path]:
    """The tar of ``snap`` (as NAME/...) in parts: written beside, then moved into ``out`` in
    place of the previous snapshot's parts, so ``out`` holds one whole set but for that moment."""
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    whole = staging / "whole.tar"
    with tarfile.open(whole, "w") as archive:
        archive.add(snap, arcname=name)
    parts = []
    with open(whole, "rb") as source:
        while chunk := source.read(part_bytes):
            parts.append(staging / f"{name}.ckpt.tar.{len(parts):02d}")
            parts[-1].write_bytes(chunk)
    whole.unlink()
    for old in out.glob(f"{name}.ckpt.tar.*"):
        old.unlink()
    return [Path(shutil.move(part, out / part.name)) for part in parts]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="the run's checkpoint folder")
    p.add_argument("out", type=Path, help="where the parts go")
    p.add_argument("name", help="the run's name: the folder's name in the tar, and the parts' prefix")
    p.add_argument("--part-bytes", type=int, default=15 * 2**20, help="largest part (default 15 MiB)")
    p.add_argument("--work", type=Path, help="a folder for the copy and the parts before they move (default OUT/..)")
    args = p.parse_args(argv)
    work = args.work or args.out.parent / f"{args.name}.snapshot"
    state = link_consistent(args.checkpoint, work / "snap" / args.name)
    if state is None:
        print(f"no consistent snapshot of {args.checkpoint}", file=sys.stderr)
        return 1
    parts = write_parts(work / "snap" / args.name, args.out, args.name, args.part_bytes, work / "parts")
    print(state["epoch"], len(parts), round(state.get("best_val_accuracy", -1), 4))
    return 0


if __name__ == "__main__":
    sys.exit(main())
