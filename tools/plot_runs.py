"""Training runs side by side, finished or still going: their validation (PublicTest) accuracy
against hours of training (or epochs) in one plot, and a line each in the terminal (epochs, hours,
best epoch, the learning rate now). A run is its checkpoint folder (train_cnn.py --checkpoint-dir;
readable while it trains, which is how to watch a run of many hours) or the NAME_metrics.json it
wrote into --models-dir when it ended (or stopped at its --max-minutes).

    python tools/plot_runs.py ~/.cache/fer-train/ckpt-wide48g ~/.cache/fer-train/models/fer_wide48_metrics.json \\
        --line 0.6826 "shipped model" --out plots/runs.png     # add --overwrite to redraw it
"""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import dataclass
from pathlib import Path

from ferkit import cli
from ferkit.errors import CheckpointError
from ferkit.paths import PLOTS_DIR


@dataclass
class Run:
    name: str
    history: dict
    state: str  # "checkpoint", "stopped" (at its time limit) or "finished"
    planned: int | None  # the epochs the run was given

    @property
    def timed(self) -> bool:
        """Whether the seconds of every epoch were recorded (runs of older versions did not)."""
        return len(self.history.get("seconds") or []) == len(self.history["val_accuracy"])

    def summary(self) -> str:
        accuracy = self.history["val_accuracy"]
        best = max(range(len(accuracy)), key=accuracy.__getitem__)
        hours = f"{sum(self.history['seconds']) / 3600:.2f} h" if self.timed else "hours not recorded"
        rate = self.history.get("learning_rate") or self.history.get("lr") or [math.nan]
        done = {
            "checkpoint": f"epoch {len(accuracy)} of {self.planned} (checkpoint)",
            "stopped": f"epoch {len(accuracy)} of {self.planned} (stopped at its time limit)",
            "finished": f"{len(accuracy)} epochs (finished)",
        }[self.state]
        return (
            f"{self.name}: {done}, {hours}; best {accuracy[best]:.4f} at epoch {best + 1}, "
            f"last {accuracy[-1]:.4f}; learning rate {rate[-1]:.3g}"
        )


def read_run(path: Path) -> Run:
    """A run from its checkpoint folder or its metrics file."""
    folder = path.is_dir()
    source = path / "state.json" if folder else path
    if folder and not source.exists():
        raise CheckpointError(
            f"{path} holds no checkpoint: its run has finished (a finished run removes its checkpoint; plot "
            "its models/NAME_metrics.json) or has not finished its first epoch yet"
        )
    if not source.exists():
        raise CheckpointError(
            f"{source} does not exist: give a checkpoint folder (train_cnn.py --checkpoint-dir) or a "
            "NAME_metrics.json from --models-dir"
        )
    try:
        record = json.loads(source.read_text())
        history = record["history"]
        settings = record.get("settings") or {}
        if not history.get("val_accuracy"):
            raise KeyError("val_accuracy")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(
            f"{source} holds no training history with validation accuracy ({type(exc).__name__}: {exc}); "
            "give a checkpoint folder of train_cnn.py or a NAME_metrics.json it wrote"
        ) from None
    name = settings.get("name") or path.stem.removesuffix("_metrics")
    state = "checkpoint" if folder else "stopped" if record.get("stopped_after_epoch") else "finished"
    return Run(name, history, state, settings.get("epochs"))


def main(argv=None) -> Path:
    p = cli.parser(__doc__)
    p.add_argument("runs", nargs="+", type=Path, help="checkpoint folders and/or NAME_metrics.json files")
    p.add_argument(
        "--line",
        nargs=2,
        action="append",
        default=[],
        metavar=("ACCURACY", "LABEL"),
        help="a reference accuracy (0-1) drawn across (repeat for more)",
    )
    p.add_argument("--by", choices=("hours", "epoch"), default="hours", help="the x axis")
    p.add_argument("--title", default="Validation accuracy of training runs", help="the plot's title")
    p.add_argument("--out", type=Path, default=PLOTS_DIR / "runs.png", help="the plot to write (.png, .svg, .pdf)")
    p.add_argument("--overwrite", action="store_true", help="allow replacing an existing --out (e.g. to redraw a run)")
    args = p.parse_args(argv)
    lines = {}
    for value, label in args.line:
        try:
            accuracy = cli.finite_float(value)
        except Exception:
            accuracy = math.nan
        if not 0 <= accuracy <= 1:
            p.error(f"--line {value} {label}: {value} is not an accuracy between 0 and 1; e.g. --line 0.68 'shipped'")
        lines[label] = accuracy
    args.out = args.out.expanduser()
    cli.check_output_file(p, "--out", args.out, suffixes={".png", ".svg", ".pdf"})
    cli.refuse_same(p, {"--out": args.out}, {f"run {r}": r for r in args.runs})
    # A redraw while a run trains is the everyday use, but --out may be a plot that ships (the
    # model card's curves): replacing it is asked for, as in the other scripts.
    cli.refuse_existing(p, [args.out], args.overwrite, "Give another --out")
    if importlib.util.find_spec("matplotlib") is None:
        p.error("the plot is drawn with matplotlib, which is not installed: pip install matplotlib")

    def work() -> Path:
        from ferkit.report import plot_runs

        runs = {}
        for path in args.runs:
            run = read_run(path.expanduser())
            if args.by == "hours" and not run.timed:
                raise CheckpointError(
                    f"{path} does not record the seconds of every epoch (a run from an older version); "
                    "plot it with --by epoch"
                )
            label = run.name if run.state == "finished" else f"{run.name}, epoch {len(run.history['val_accuracy'])}"
            if label in runs:  # two runs of one name (two machines, two sessions): both drawn
                label = f"{label} ({path})"
            if label in runs:
                label += f" #{len(runs) + 1}"
            runs[label] = run.history
            print(run.summary())
        return plot_runs(runs, lines, args.out, args.title, by=args.by)

    out = cli.run_main(work)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
