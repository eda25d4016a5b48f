"""Evaluate a saved model on a dataset's test split (or its validation split) and print the report.

    python evaluate.py --model models/fer_cnn.keras --data ../shared/data/fer2013 --tta
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import fer_common as fc


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=fc.DEFAULT_MODEL_PATH)
    p.add_argument("--data", default=fc.DEFAULT_DATA,
                   help="dataset folder or fer2013.csv, any layout train_cnn.py takes (default data/fer2013)")
    p.add_argument("--split", choices=("test", "val"), default="test",
                   help="test: PrivateTest / the test folder (default); val: PublicTest / validation")
    p.add_argument("--tta", action="store_true", help="average with the mirrored face")
    p.add_argument("--confusion", type=Path, help="also save the confusion matrix as this PNG")
    p.add_argument("--json", type=Path, help="also save the report as JSON")
    p.add_argument("--cache-dir", type=Path, default=fc.DEFAULT_CACHE_DIR)
    args = p.parse_args(argv)
    try:
        model, class_names = fc.load_model(args.model)
        data = fc.load_dataset(args.data, cache_dir=args.cache_dir)
    except (fc.DatasetError, fc.ModelFileError) as exc:
        fc.fail(str(exc))
    split = data.test if args.split == "test" else data.val
    proba = fc.predict_proba(model, split.x, flip_tta=args.tta)
    summary = fc.classification_summary(split.y, proba.argmax(1), class_names)
    name = {"test": "test", "val": "validation"}[args.split]
    print(f"{args.model} on {data.source} {name} split ({len(split)} faces){' with flip TTA' if args.tta else ''}")
    print(fc.format_report(summary))
    if args.confusion:
        fc.plot_confusion(summary["confusion_matrix"], class_names, args.confusion,
                          f"{args.model.stem}, {name} accuracy {summary['accuracy']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
