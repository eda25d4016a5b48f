"""Evaluate a saved model on a dataset's test split (or its validation split) and print the report,
with the expected calibration error of its confidence; optionally calibrate it.

    python evaluate.py --model models/fer_cnn.keras --data data/fer2013 --tta
    python evaluate.py --model models/fer_cnn.onnx --data data/fer2013   # on the light runtime too
    python evaluate.py --model models/fer_cnn.keras --data data/fer2013 \\
        --calibrate models/fer_cnn_calibrated.keras --reliability plots/reliability_calibrated.png

``--calibrate`` fits a temperature on the validation split (PublicTest), never the test split,
folds it into the model's last layer and saves the result: the labels stay the same, the
percentages the demo shows become honest.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

from ferkit import cli
from ferkit.atomic import atomic_write_text
from ferkit.calibration import (
    TEMPERATURE_RANGE,
    expected_calibration_error,
    fit_temperature,
    fold_temperature,
    reliability,
    with_temperature,
)
from ferkit.classify import TTA_MODES, TTA_NAMES, tta_options, view_probabilities
from ferkit.data import TEST_FRACTION, load_all_faces, load_dataset
from ferkit.faces import CLASS_NAMES
from ferkit.modelfile import load_model, read_calibration, read_training, require_classes, save_model
from ferkit.provenance import held_out_note, recorded_val_fraction
from ferkit.report import classification_summary, format_report, plot_confusion, plot_reliability

ECE_BINS = 15


def parse_args(argv=None):
    p = cli.parser(__doc__)
    cli.add_common(p, "model", "data")
    p.add_argument(
        "--split",
        choices=("test", "val", "all"),
        default="test",
        help="test: PrivateTest / the test folder (default); val: PublicTest / validation; all: every face "
        "of --data whatever its split, for labelled faces the model never trained on (a test folder alone, "
        "your own class folders)",
    )
    p.add_argument(
        "--tta",
        nargs="?",
        const="flip",
        choices=TTA_MODES,
        help="flip (the flag alone): average with the mirrored face; crops: also five 44-pixel crops "
        "(centre, corners) of each, 12 views",
    )
    p.add_argument("--confusion", type=Path, help="also save the confusion matrix as this PNG")
    p.add_argument("--json", type=Path, help="also save the report as JSON")
    p.add_argument(
        "--calibrate", type=Path, help="fit a temperature on the validation split and save the calibrated model here"
    )
    p.add_argument("--reliability", type=Path, help="save reliability diagrams (before / after --calibrate) here")
    p.add_argument("--overwrite", action="store_true", help="allow the files above to replace existing ones")
    cli.add_common(p, "cache_dir")
    args = p.parse_args(argv)
    cli.check_output_file(p, "--confusion", args.confusion, {".png", ".jpg", ".pdf", ".svg"})
    cli.check_output_file(p, "--json", args.json, {".json"})
    cli.check_output_file(p, "--calibrate", args.calibrate, {".keras"})
    cli.check_output_file(p, "--reliability", args.reliability, {".png", ".jpg", ".pdf", ".svg"})
    if args.calibrate and args.split == "all":
        p.error(
            "--calibrate fits its temperature on the validation faces, which --split all also scores; "
            "evaluate --split test (the default) when calibrating"
        )
    if args.calibrate and args.model.suffix.lower() == ".onnx":
        p.error(
            "--calibrate folds a temperature into a .keras model; calibrate models/fer_cnn.keras (say), then "
            "export it again with export.py (the temperature travels into the .onnx file)"
        )
    outputs = {
        "--confusion": args.confusion,
        "--json": args.json,
        "--calibrate": args.calibrate,
        "--reliability": args.reliability,
    }
    cli.refuse_same(p, outputs, {"--model": args.model, "--data": args.data})
    cli.refuse_duplicates(p, outputs)
    cli.refuse_inside_data(p, args.data, {"--confusion": args.confusion, "--reliability": args.reliability})
    cli.refuse_existing(p, outputs.values(), args.overwrite, "Choose other file names")
    cli.require_plotting(p, {"--confusion": args.confusion, "--reliability": args.reliability})
    return args


def evaluate(args) -> dict:
    cli.check_inputs(args.data, [args.model])
    if args.model.suffix.lower() != ".onnx":
        cli.import_keras_quietly(f"evaluating {args.model} (a Keras model; the light runtime evaluates .onnx models)")
    model, class_names = load_model(args.model)
    record = read_training(args.model)
    val_fraction = recorded_val_fraction(record)  # the run's own --val-fraction, where it drew one
    if args.split == "all":
        split, layout, trainable = load_all_faces(args.data, cache_dir=args.cache_dir)
        data = SimpleNamespace(source=str(Path(args.data).expanduser()), layout=layout, test_drawn=False)
    else:
        # No training faces are needed to score a split the data names: FER2013's test/ folder
        # alone (PublicTest_ and PrivateTest_ files) is enough for --split val or test.
        data = load_dataset(
            args.data,
            cache_dir=args.cache_dir,
            need_test=args.split == "test",
            need_train=False,
            val_fraction=val_fraction,
        )
        split = data.test if args.split == "test" else data.val
        wanted = "test" if args.split == "test" else "validation"
        if not len(data.train):  # named held-out faces only (FER2013's test/ folder alone)
            if not len(split):
                other = "val" if args.split == "test" else "test"
                named = "PrivateTest_" if args.split == "test" else "PublicTest_"
                cli.fail(
                    f"{args.data} has no {wanted} faces (FER2013 names them {named}*); score its other faces "
                    f"with --split {other}"
                )
            if args.calibrate and not len(data.val):
                cli.fail(
                    f"{args.data} has no validation faces to fit --calibrate's temperature on (FER2013 names them "
                    f"PublicTest_*); calibrate on data that has them, e.g. the full dataset"
                )
        elif not len(split) or args.calibrate and not len(data.val):  # drawn from classes of a few faces
            cli.fail(
                f"the {wanted if not len(split) else 'validation'} split drawn from {args.data} holds no faces: its "
                f"classes are too small to hold any out; add faces, or score them all with --split all"
            )
    require_classes(class_names, CLASS_NAMES, args.model)
    tta = tta_options(args.tta)
    # Each view's (and, when calibrating, each ensemble member's) probabilities: the temperature
    # scales them one by one in the saved file, so it is fitted on them, not on their average.
    parts = view_probabilities(model, split.x, **tta, members=bool(args.calibrate), progress=f"{args.split} split")
    proba = parts.mean(0)
    summary = classification_summary(split.y, proba.argmax(1), class_names)
    summary["ece"] = expected_calibration_error(proba, split.y, ECE_BINS)
    summary.update(model=str(args.model), data=data.source, split=args.split, tta=args.tta, faces=len(split))
    name = {"test": "test", "val": "validation", "all": "all-faces"}[args.split]
    views = f" with {TTA_NAMES[args.tta]}" if args.tta else ""
    what = f"all {len(split)} faces, every split" if args.split == "all" else f"{name} split ({len(split)} faces)"
    print(f"{args.model} on {data.source}: {what}{views}")
    drawn = data.test_drawn if args.split == "test" else args.split == "val" and data.val_drawn
    if drawn:
        print(f"note: {data.test_note if args.split == 'test' else data.val_note}")
        fractions = {"test": TEST_FRACTION, "validation": val_fraction}
        total = len(data.train) + len(data.val) + len(data.test)
        note = held_out_note(record, args.model.name, name, fractions, total)
        print(f"note: {note}")
    if args.split == "all" and trainable:
        print(
            f"note: {trainable} of these {len(split)} faces are training faces of this data, or of no split of "
            f"its own (drawn mostly for training): if {args.model.name} was trained on it, this is no test figure"
        )
    print(format_report(summary))
    calibrated = read_calibration(args.model)
    note = ""
    if calibrated:
        fitted = calibrated["fitted_on"]
        if " of " not in fitted:  # a record from before it named the data: not the --data given now
            fitted += ", of the data it was calibrated on"
        note = f" (temperature {calibrated['temperature']:.3f} inside the model, fitted when calibrated: {fitted})"
    print(f"{'ECE':>10} {summary['ece']:24.4f}   expected calibration error, {ECE_BINS} bins{note}")
    curves = {"as saved": (reliability(proba, split.y, ECE_BINS), summary["ece"])}
    if args.calibrate:
        temperature = fit_temperature(view_probabilities(model, data.val.x, **tta, members=True), data.val.y)
        after = with_temperature(parts, temperature)
        # On a model calibrated before, the new temperature divides the old one's logits again: the
        # record keeps the product, the model's temperature against its training.
        inside = calibrated["temperature"] if calibrated else 1.0
        summary["calibration"] = {
            "temperature": inside * temperature,
            **({"temperature_before": inside, "temperature_this_fit": temperature} if calibrated else {}),
            "fitted_on": f"{data.val_note.split(': ', 1)[-1]} of {Path(data.source).name} ({len(data.val)} faces)",
            "ece_before": summary["ece"],
            f"ece_after_on_{name}": expected_calibration_error(after, split.y, ECE_BINS),
            "bins": ECE_BINS,
        }
        fold_temperature(model, temperature)
        save_model(model, args.calibrate, class_names, summary["calibration"], record)
        curves[f"temperature {temperature:.2f}"] = (
            reliability(after, split.y, ECE_BINS),
            summary["calibration"][f"ece_after_on_{name}"],
        )
        low, high = TEMPERATURE_RANGE
        print(
            f"calibrated: temperature {temperature:.3f} fitted on the validation split"
            + (f" (on top of the {inside:.3f} inside: {inside * temperature:.3f} in all)" if calibrated else "")
            + f"; {name} ECE "
            f"{summary['ece']:.4f} -> {summary['calibration'][f'ece_after_on_{name}']:.4f}; saved {args.calibrate}"
        )
        if not low * 1.01 < temperature < high * 0.99:  # the search ran out of room
            meaning = (
                "its probabilities say next to nothing about being right on these faces"
                if temperature > 1
                else "it is far less sure of itself than its accuracy allows"
            )
            print(
                f"warning: the temperature is at the end of the range searched ({low:g}-{high:g}): {meaning}; "
                f"check the model and the data",
                file=sys.stderr,
            )
    if args.reliability:
        plot_reliability(curves, args.reliability, f"{args.model.name} on the {name} split ({len(split)} faces)")
    if args.confusion:
        plot_confusion(
            summary["confusion_matrix"],
            class_names,
            args.confusion,
            f"{args.model.stem}, {name} accuracy {summary['accuracy']:.3f}",
        )
    if args.json:
        atomic_write_text(args.json, json.dumps(summary, indent=1))
    saved = [str(path) for path in (args.reliability, args.confusion, args.json) if path]
    if saved:
        print(f"saved {', '.join(saved)}")
    return summary


def main(argv=None) -> dict:
    return cli.run_main(evaluate, parse_args(argv))


if __name__ == "__main__":
    main()
