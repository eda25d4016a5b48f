"""Average several trained models into one model file: their predictions (any models), or their
weights (checkpoints of one network: stochastic weight averaging).

    python ensemble.py models/a.keras models/b.keras --data data/fer2013 --tta \\
        --out models/average.keras
    python ensemble.py snapshots/epoch00*.keras --average weights --data data/fer2013 \\
        --out models/fer_swa.keras

Prints each member's and the average's accuracy on the validation split (PublicTest), the split to
choose on; the test split stays untouched (evaluate the saved file with evaluate.py once). The
saved model takes the same faces and gives the same seven probabilities as a single model, so
realtime.py and evaluate.py use it unchanged. Averaged predictions cost the members' inference time
together; averaged weights cost one model's (their BatchNorm statistics are measured again on the
training faces, which takes about a third of a training epoch).
"""

from __future__ import annotations

from pathlib import Path

from ferkit import cli
from ferkit.classify import TTA_MODES, TTA_NAMES, accuracy, tta_options
from ferkit.data import load_dataset
from ferkit.ensemble import average_models
from ferkit.errors import ModelFileError
from ferkit.modelfile import inference_copy, load_model, read_calibration, read_training, save_model
from ferkit.networks import network_of
from ferkit.provenance import average_record, recorded_val_fraction
from ferkit.weightavg import average_weights, averaged_model


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
        "five 44-pixel crops) (default off)",
    )
    p.add_argument(
        "--average",
        choices=("predictions", "weights"),
        default="predictions",
        help="predictions: any models, the mean of their probabilities (costs every member's time); weights: "
        "checkpoints of one network (e.g. a run's last epochs), one model's cost, BatchNorm re-measured",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="save the averaged model here (class names inside); without it only the accuracies are printed",
    )
    p.add_argument("--overwrite", action="store_true", help="allow --out to replace an existing file")
    cli.add_common(p, "cache_dir")
    args = p.parse_args(argv)
    if len(args.models) < 2:
        p.error("give at least two models to average")
    seen = set()
    for model in args.models:
        key = model.expanduser().resolve()
        if key in seen:
            p.error(f"{model} is given twice; a model averaged with itself adds nothing: give different models")
        seen.add(key)
    cli.check_output_file(p, "--out", args.out, {".keras"})
    ordinal = {1: "1st", 2: "2nd", 3: "3rd"}
    models = {f"{ordinal.get(i, f'{i}th')} model to average": m for i, m in enumerate(args.models, start=1)}
    cli.refuse_same(p, {"--out": args.out}, models)
    cli.refuse_existing(p, [args.out], args.overwrite, "Give --out another name")
    onnx = [str(m) for m in args.models if m.suffix.lower() == ".onnx"]
    if onnx:
        p.error(f"{onnx[0]} is an ONNX export; average the .keras models, then export the average with export.py")
    return args


def weight_average(paths, members, train_faces):
    """The members' averaged weights with BatchNorm statistics measured on the training faces."""
    calibrated = [str(p) for p in paths if read_calibration(p) is not None]
    if calibrated:
        raise ModelFileError(
            f"{calibrated[0]} is calibrated (a temperature is folded into its last layer); average the "
            f"uncalibrated checkpoints, then calibrate the average with evaluate.py --calibrate."
        )
    from ferkit.progress import bar as progress_bar

    weights = average_weights(members)
    with progress_bar(total=None, desc="BatchNorm statistics", unit="batch", leave=False) as bar:

        def progress(done, total):
            bar.total = total
            bar.update(1)

        model, batches = averaged_model(members[0], weights, train_faces, progress)
    print(f"averaged the weights of {len(members)} models; BatchNorm statistics over {batches} training batches")
    # Checkpoints carry the augmentation layers and the bf16 policy of training: ship a float32 copy.
    return inference_copy(model) if network_of(model.name) else model


def compare(args) -> dict:
    cli.check_inputs(args.data, args.models, keras_only=True)
    cli.import_keras_quietly("averaging Keras models")
    loaded = [load_model(path) for path in args.models]
    names = {names for _, names in loaded}
    if len(names) != 1:
        raise ModelFileError(
            f"the models label different classes: {sorted(names)}; retrain them on one dataset before averaging."
        )
    class_names = names.pop()
    members = [model for model, _ in loaded]
    # Members that held out the same faces give the average their record (and their validation
    # faces: their run's --val-fraction, where it drew them); others leave it without one
    # (evaluate.py then says it cannot tell which faces it was trained on).
    shared, differ = average_record([read_training(path) for path in args.models])
    data = load_dataset(args.data, cache_dir=args.cache_dir, val_fraction=recorded_val_fraction(shared))
    if args.average == "weights":
        ensemble = weight_average(args.models, members, data.train.x)
    else:
        ensemble = average_models(members)

    candidates = {**{str(path): member for path, member in zip(args.models, members)}, "average": ensemble}
    scores = {
        name: accuracy(model, data.val, **tta_options(args.tta), progress=Path(name).name)
        for name, model in candidates.items()
    }
    print(f"validation accuracy ({len(data.val)} faces, {data.val_note}, {TTA_NAMES[args.tta]}):")
    for name, value in scores.items():
        print(f"  {value:.4f}  {name}")
    if args.out:
        if shared is None and differ:
            print(
                f"note: the members differ in {', '.join(differ)}, so the average records no training data: "
                "evaluate.py cannot then tell which faces it was trained on"
            )
        elif differ:
            print(
                f"note: the members differ in {', '.join(differ)} but held out the same faces; the average "
                "records their data and each member's record"
            )
        save_model(ensemble, args.out, class_names, training=shared)
        print(f"saved {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    else:
        print("not saved: give --out FILE.keras to keep the average")
    return scores


def main(argv=None) -> dict:
    return cli.run_main(compare, parse_args(argv))


if __name__ == "__main__":
    main()
