"""Which of tools/device_train.sh's models come back from a lent GPU machine: per run the model
that scores higher on validation (its best epoch or its weight average), best run first, while
they fit what the device tool returns beside what OUT already holds (at most 8 files of at most
16 MiB each, 64 MiB together; a model larger than a part takes several files).

    python tools/device_bring_back.py RUNDIR OUT NAME... [--part-bytes B] [--files 8] [--bytes 67108864] [--both]

--both (tools/device_longrun.sh, one run that ended on the machine) brings the other model of each
run too, after all the chosen ones and within the same limits, so the choice can be made here.

Prints one line per action for the shell, in a file the shell reads after this ends (so what was
chosen before an error still comes back): "bring<TAB>MODEL" (device_env.sh's bring_back copies or
splits it into OUT) and "say<TAB>MESSAGE" (for device.log), a run left out named with its reason.
Standard library only: the GPU machine's Python has no project packages installed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Iterator

# device.log is written to after this is decided (the lines printed here, "done").
LOG_GROWTH = 2**20


def chosen_models(rundir: str, names: list[str]) -> tuple[list[tuple], list[str]]:
    """([(score, name, model file, best epoch's accuracy, weight average's, epochs, the other file)],
    messages)."""
    runs, said = [], []
    for name in names:
        try:
            with open(os.path.join(rundir, "models", f"{name}_metrics.json")) as f:
                metrics = json.load(f)
            best = float(metrics["validation_accuracy"])
            swa = float((metrics.get("swa") or {}).get("validation_accuracy", -1))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            said.append(f"{name}: no model (logs/{name}.log in runs.tar.gz)")
            continue
        chosen, other = (f"{name}_swa", name) if swa > best else (name, f"{name}_swa")
        model, other = (os.path.join(rundir, "models", f"{n}.keras") for n in (chosen, other))
        runs.append((max(best, swa), name, model, best, swa, metrics.get("epochs_trained"), other))
    return sorted(runs, key=lambda run: run[:2], reverse=True), said


def plan(
    rundir: str, out: str, names: list[str], part: int, files: int, space: int, both: bool = False
) -> Iterator[tuple[str, str]]:
    held = os.listdir(out)
    files -= len(held)
    space -= sum(os.path.getsize(os.path.join(out, f)) for f in held) + LOG_GROWTH
    runs, said = chosen_models(rundir, names)
    for message in said:
        yield "say", message

    chosen_back = set()  # the runs whose chosen model comes back

    def take(model: str, name: str, what: str, role: str) -> Iterator[tuple[str, str]]:
        nonlocal files, space
        try:
            size = os.path.getsize(model)
        except OSError as exc:  # one run's missing file must not cost the others their turn
            yield "say", f"{name}: its {role} model {os.path.basename(model)} cannot be read ({exc.strerror})"
            return
        pieces = max(1, math.ceil(size / part))
        if pieces > files or size > space:
            left = f"{max(files, 0)} files and {max(space, 0) / 2**20:.1f} MiB were left"
            size_mib = f"{size / 2**20:.1f} MiB in {pieces} files"
            # Too many runs for one return, unless this is the other model of a run whose chosen model
            # came back: that one answers what the run is for.
            back = role == "other" and name in chosen_back
            advice = "the chosen model above is the one to compare" if back else "give fewer runs"
            yield "say", f"{what}: NOT brought back ({os.path.basename(model)}, {size_mib}; {left}): {advice}"
            return
        files, space = files - pieces, space - size
        if role == "chosen":
            chosen_back.add(name)
        yield "bring", model
        parts = f" in {pieces} parts" if pieces > 1 else ""
        yield "say", f"{what}: brought back {os.path.basename(model)}{parts}"

    for _, name, model, best, swa, epochs, _other in runs:
        what = f"{name}: {epochs} epochs; validation (WebP faces) best epoch {best:.4f}, weight average {swa:.4f}"
        yield from take(model, name, what, "chosen")
    # The other models only after every run's chosen one: they are for a second look here.
    for _, name, _model, _best, _swa, _epochs, other in runs if both else []:
        if os.path.exists(other):  # a run without a weight average has no other file
            yield from take(other, name, f"{name}: the other model", "other")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("rundir", help="device_train.sh's run folder (models/NAME_metrics.json, models/NAME.keras)")
    p.add_argument("out", help="the folder the device tool brings back ($OUT)")
    p.add_argument("names", nargs="+", help="the runs, in any order")
    p.add_argument("--part-bytes", type=int, default=15 * 2**20, help="largest part (default 15 MiB)")
    p.add_argument("--files", type=int, default=8, help="files the tool brings back (default 8)")
    p.add_argument("--bytes", type=int, default=64 * 2**20, help="bytes it brings back together (default 64 MiB)")
    p.add_argument("--both", action="store_true", help="also each run's other model (best epoch / average), last")
    args = p.parse_args(argv)
    for action, text in plan(args.rundir, args.out, args.names, args.part_bytes, args.files, args.bytes, args.both):
        print(f"{action}\t{text}", flush=True)  # each as it is decided
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
