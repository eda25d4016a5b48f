"""Training runs side by side, finished or still going: their validation (PublicTest) accuracy
against hours of training (or epochs) in one plot, and a line each in the terminal (epochs, hours,
best epoch, the learning rate now). A run is its checkpoint folder (train_cnn.py --checkpoint-dir;
readable while it trains, which is how to watch a run of many hours) or the NAME_metrics.json it
wrote into --models-dir when it ended.

    python tools/plot_runs.py ~/.cache/fer-train/ckpt-wide48g ~/.cache/fer-train/models/fer_wide48_metrics.json \\
        --line 0.6826 "shipped model" --out plots/runs.png
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from ferkit import cli
from ferkit.errors import CheckpointError
from ferkit.report import plot_runs


def read_run(path: Path) -> tuple[str, dict, int | None]:
    """(name, history, planned epochs) of a checkpoint folder, (name, history, None) of a metrics
    file (a finished run)."""
    running = path.is_dir()
    source = path / "state.json" if running else path
    try:
        record = json.loads(source.read_text())
        history = record["history"]
        settings = record.get("settings") or {}
        name = settings.get("name") or path.stem.removesuffix("_metrics")
        planned = settings.get("epochs") if running else None
        if not history.get("val_accuracy"):
            raise KeyError("val_accuracy")
    except FileNotFoundError:
        raise CheckpointError(
            f"{source} does not exist: give a checkpoint folder (train_cnn.py --checkpoint-dir) or a "
            "NAME_metrics.json from --models-dir"
        ) from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(
            f"{source} holds no training history with validation accuracy ({type(exc).__name__}: {exc}); "
            "give a checkpoint folder of train_cnn.py or a NAME_metrics.json it wrote"
        ) from None
    return name, history, planned


def summary_line(name: str, history: dict, planned: int | None) -> str:
    accuracy = history["val_accuracy"]
    best = max(range(len(accuracy)), key=accuracy.__getitem__)
    hours = sum(history.get("seconds", [])) / 3600
    rate = history.get("learning_rate") or history.get("lr") or [math.nan]
    done = f"epoch {len(accuracy)} of {planned} (checkpoint)" if planned else f"{len(accuracy)} epochs (finished)"
    return (
        f"{name}: {done}, {hours:.2f} h; best {accuracy[best]:.4f} at epoch "
        f"{best + 1}, last {accuracy[-1]:.4f}; learning rate {rate[-1]:.3g}"
    )


def main(argv=None) -> Path:
    p = cli.parser(__doc__)
    p.add_argument("runs", nargs="+", type=Path, help="checkpoint folders and/or NAME_metrics.json files")
    p.add_argument(
        "--line",
        nargs=2,
        action="append",
        default=[],
        metavar=("ACCURACY", "LABEL"),
        help="a reference accuracy drawn across (repeat for more)",
    )
    p.add_argument("--by", choices=("hours", "epoch"), default="hours", help="the x axis")
    p.add_argument("--title", default="Validation accuracy of training runs", help="the plot's title")
    p.add_argument("--out", type=Path, default=Path("plots/runs.png"), help="the plot to write (.png, .svg, .pdf)")
    args = p.parse_args(argv)
    lines = {}
    for value, label in args.line:
        try:
            lines[label] = float(value)
        except ValueError:
            p.error(f"--line {value} {label}: {value} is not an accuracy; write it as --line 0.68 'shipped model'")
    cli.check_output_file(p, "--out", args.out, suffixes={".png", ".svg", ".pdf"})
    cli.refuse_same(p, {"--out": args.out}, {f"run {r}": r for r in args.runs})

    def work() -> Path:
        runs = {}
        for path in args.runs:
            name, history, planned = read_run(path.expanduser())
            label = f"{name}, epoch {len(history['val_accuracy'])} of {planned}" if planned else name
            if args.by == "hours" and len(history.get("seconds", [])) != len(history["val_accuracy"]):
                raise CheckpointError(
                    f"{path} does not record the seconds of every epoch (a run from an older version); "
                    "plot it with --by epoch"
                )
            runs[label] = history
            print(summary_line(name, history, planned))
        return plot_runs(runs, lines, args.out, args.title, by=args.by)

    out = cli.run_main(work)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
