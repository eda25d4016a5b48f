"""Evaluate a saved model on a dataset's test split (or its validation split) and print the report.

python evaluate.py --model models/fer_cnn.keras --data ../shared/data/fer2013 --tta
"""

from __future__ import annotations

import json
from pathlib import Path

from ferkit import cli
from ferkit.atomic import atomic_write_text
from ferkit.classify import predict_proba
from ferkit.data import load_dataset
from ferkit.modelfile import load_model, require_classes
from ferkit.report import classification_summary, format_report, plot_confusion


def parse_args(argv=None):
    p = cli.parser(__doc__)
    cli.add_common(p, "model", "data")
    p.add_argument(
        "--split",
        choices=("test", "val"),
        default="test",
        help="test: PrivateTest / the test folder (default); val: PublicTest / validation",
    )
    p.add_argument("--tta", action="store_true", help="average with the mirrored face")
    p.add_argument("--confusion", type=Path, help="also save the confusion matrix as this PNG")
    p.add_argument("--json", type=Path, help="also save the report as JSON")
    cli.add_common(p, "cache_dir")
    args = p.parse_args(argv)
    cli.check_output_file(p, "--confusion", args.confusion, {".png", ".jpg", ".pdf", ".svg"})
    cli.check_output_file(p, "--json", args.json, {".json"})
    cli.refuse_same(
        p, {"--confusion": args.confusion, "--json": args.json}, {"--model": args.model, "--data": args.data}
    )
    return args


def evaluate(args) -> dict:
    model, class_names = load_model(args.model)
    data = load_dataset(args.data, cache_dir=args.cache_dir)
    require_classes(class_names, data.class_names, args.model)
    split = data.test if args.split == "test" else data.val
    proba = predict_proba(model, split.x, flip_tta=args.tta)
    summary = classification_summary(split.y, proba.argmax(1), class_names)
    name = {"test": "test", "val": "validation"}[args.split]
    print(f"{args.model} on {data.source} {name} split ({len(split)} faces){' with flip TTA' if args.tta else ''}")
    print(format_report(summary))
    if args.confusion:
        plot_confusion(
            summary["confusion_matrix"],
            class_names,
            args.confusion,
            f"{args.model.stem}, {name} accuracy {summary['accuracy']:.3f}",
        )
    if args.json:
        atomic_write_text(args.json, json.dumps(summary, indent=1))
    return summary


def main(argv=None) -> dict:
    return cli.run_main(evaluate, parse_args(argv))


if __name__ == "__main__":
    main()
