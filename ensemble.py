"""Average the predictions of several trained models in one model file.

    python ensemble.py models/a.keras models/b.keras --data ../shared/data/fer2013 --tta \\
        --out models/fer_cnn.keras

Prints each member's and the average's accuracy on the validation split (PublicTest), the split to
choose on; the test split stays untouched (evaluate the saved file with evaluate.py once). The
saved model takes the same faces and gives the same seven probabilities as a single model, so
realtime.py and evaluate.py use it unchanged; it costs the members' inference time together.
"""

from __future__ import annotations

from pathlib import Path

from ferkit import cli
from ferkit.classify import TTA_MODES, TTA_NAMES, accuracy, tta_options
from ferkit.data import load_dataset
from ferkit.ensemble import average_models
from ferkit.errors import ModelFileError
from ferkit.modelfile import load_model, save_model


def parse_args(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("models", type=Path, nargs="+", help="two or more saved .keras models")
    cli.add_common(p, "data")
    p.add_argument(
        "--tta",
        nargs="?",
        const="flip",
        choices=TTA_MODES,
        default=False,
        help="flip (the flag alone): average with the mirrored face; crops: 12 views (mirror x whole face and "
        "five 44-pixel crops)",
    )
    p.add_argument("--out", type=Path, help="save the averaged model here (class names inside)")
    cli.add_common(p, "cache_dir")
    args = p.parse_args(argv)
    if len(args.models) < 2:
        p.error("give at least two models to average")
    cli.check_output_file(p, "--out", args.out, {".keras"})
    cli.refuse_same(p, {"--out": args.out}, {f"member {i + 1}": m for i, m in enumerate(args.models)})
    onnx = [str(m) for m in args.models if m.suffix.lower() == ".onnx"]
    if onnx:
        p.error(f"{onnx[0]} is an ONNX export; average the .keras models, then export the average with export.py")
    return args


def compare(args) -> dict:
    cli.import_keras_quietly()
    loaded = [load_model(path) for path in args.models]
    names = {names for _, names in loaded}
    if len(names) != 1:
        raise ModelFileError(
            f"the models label different classes: {sorted(names)}; retrain them on one dataset before averaging."
        )
    class_names = names.pop()
    members = [model for model, _ in loaded]
    ensemble = average_models(members)
    data = load_dataset(args.data, cache_dir=args.cache_dir)

    candidates = {**{str(path): member for path, member in zip(args.models, members)}, "average": ensemble}
    scores = {name: accuracy(model, data.val, **tta_options(args.tta)) for name, model in candidates.items()}
    print(f"validation accuracy ({len(data.val)} faces, {data.val_note}, {TTA_NAMES[args.tta]}):")
    for name, value in scores.items():
        print(f"  {value:.4f}  {name}")
    if args.out:
        save_model(ensemble, args.out, class_names)
        print(f"saved {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    return scores


def main(argv=None) -> dict:
    return cli.run_main(compare, parse_args(argv))


if __name__ == "__main__":
    main()
