"""Export a trained .keras model to ONNX, the light runtime of the live demo and the Python API
(ONNX Runtime, no TensorFlow), and check the export against Keras on a dataset's test split.

    python export.py models/fer_cnn.keras                                   # -> models/fer_cnn.onnx
    python export.py models/fer_cnn.keras --int8 --data data/fer2013
        # also models/fer_cnn.int8.onnx (int8, calibrated on 1,024 training faces); with --data both
        # files are checked against Keras on the test split: accuracy and the largest difference
        # in any probability

The class names and the calibration (temperature) travel inside the files. Run the result with
``realtime.py --model models/fer_cnn.onnx`` or ``Recognizer("models/fer_cnn.onnx")``.
"""

from __future__ import annotations

import json
from pathlib import Path

from ferkit import cli
from ferkit.paths import KERAS_MODEL_PATH

# Below this share of test faces labelled as Keras labels them, an int8 file is said to be unfit
# (the shipped one agrees on 98.4% of PrivateTest; a broken export agreed on 86%, one calibrated on
# 70 faces on 80%).
INT8_AGREEMENT = 0.95


def parse_args(argv=None):
    p = cli.parser(__doc__)
    p.add_argument("model", type=Path, nargs="?", default=KERAS_MODEL_PATH, help="the .keras model to export")
    p.add_argument("--out", type=Path, help="the float32 ONNX file (default: beside the model, MODEL.onnx)")
    p.add_argument(
        "--int8", action="store_true", help="also write MODEL.int8.onnx, calibrated on training faces of --data"
    )
    p.add_argument("--data", help="a dataset (as train_cnn.py takes) for the int8 calibration and the check")
    p.add_argument("--json", type=Path, help="also save the check's table as JSON")
    p.add_argument("--overwrite", action="store_true", help="allow the ONNX files and --json to replace existing ones")
    cli.add_common(p, "cache_dir")
    args = p.parse_args(argv)
    args.model = args.model.expanduser()  # (a quoted ~ reaches us unexpanded)
    if args.model.is_dir():  # "is not a .keras model" read as if the files in it were wrong
        found = sorted(args.model.glob("*.keras"))
        if found:
            p.error(f"{args.model} is a folder; give the .keras model file in it, e.g. export.py {found[0]}")
        p.error(f"{args.model} is a folder with no .keras model in it; give the .keras file train_cnn.py wrote")
    if args.model.suffix.lower() != ".keras":
        p.error(f"{args.model} is not a .keras model; export.py reads the .keras file train_cnn.py writes")
    args.out = args.out or args.model.with_suffix(".onnx")
    if args.out.name.lower().endswith(".int8.onnx"):  # --int8 would write NAME.int8.int8.onnx beside it
        p.error(
            f"--out names the float32 file, and {args.out.name} reads as an int8 one; give --out "
            f"{args.out.name[: -len('.int8.onnx')]}.onnx (--int8 writes the int8 file beside it as "
            f"{args.out.name})"
        )
    cli.check_output_file(p, "--out", args.out, {".onnx"})
    cli.check_output_file(p, "--json", args.json, {".json"})
    if args.int8 and not args.data:
        p.error("--int8 needs --data: the int8 ranges are measured on training faces of a dataset")
    if args.json and not args.data:
        p.error("--json saves the check against Keras, which needs --data (its test split is what is checked)")
    args.int8_out = args.out.with_name(args.out.stem + ".int8.onnx") if args.int8 else None
    cli.refuse_same(p, {"--out": args.out, "int8 file": args.int8_out}, {"model": args.model})
    outputs = [args.out, args.int8_out, args.json]
    elsewhere = (
        "Give --out" + (" or --json" if args.json and Path(args.json).expanduser().exists() else "") + " another name"
    )
    cli.refuse_existing(p, outputs, args.overwrite, elsewhere)
    return args


def export(args) -> dict:
    import numpy as np

    cli.check_inputs(args.data, [args.model], keras_only=True)  # before Keras loads (8 s)
    cli.import_keras_quietly("exporting a Keras model")
    from ferkit.classify import predict_proba
    from ferkit.data import load_dataset
    from ferkit.errors import Interrupted
    from ferkit.export import CALIBRATION_FACES, export_onnx, quantize_int8
    from ferkit.modelfile import load_model, require_classes
    from ferkit.splits import stratified_subset

    written = {"float32": export_onnx(args.model, args.out)}
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    if not args.data:
        return {"files": {k: str(v) for k, v in written.items()}}
    try:
        data = load_dataset(args.data, cache_dir=args.cache_dir)
        if args.int8:
            faces = np.asarray(data.train.x[stratified_subset(data.train.y, CALIBRATION_FACES, seed=0)])
            written["int8"] = quantize_int8(args.out, args.int8_out, faces, args.model)
            print(
                f"wrote {args.int8_out} ({args.int8_out.stat().st_size / 1e6:.1f} MB; {len(faces)} calibration faces)"
            )
            if len(faces) < CALIBRATION_FACES:
                print(
                    f"note: the int8 ranges were measured on {len(faces)} training faces, fewer than the "
                    f"{CALIBRATION_FACES} used where a dataset has them; the check below says whether it is enough"
                )
    except KeyboardInterrupt:  # say what is on disk: a rerun refuses the float32 file it finds
        missing = f", {args.int8_out} not" if args.int8 and "int8" not in written else ""
        raise Interrupted(
            f"interrupted; {args.out} was written{missing}: run the same command with --overwrite to write them again"
        ) from None

    rows, reference = {}, None
    for kind, path in {"keras": args.model, **written}.items():
        model, class_names = load_model(path)
        require_classes(class_names, data.class_names, path)
        proba = predict_proba(model, data.test.x)
        reference = proba if reference is None else reference
        rows[kind] = {
            "file": str(path),
            "megabytes": round(Path(path).stat().st_size / 1e6, 2),
            "accuracy": float(np.mean(proba.argmax(1) == data.test.y)),
            "max_probability_difference": float(np.abs(proba - reference).max()),
            "same_label": float(np.mean(proba.argmax(1) == reference.argmax(1))),
        }
    print(f"on the test split of {data.source} ({len(data.test)} faces):")
    if data.test_drawn:  # the check compares the files; the accuracy is a test figure only on unseen faces
        print(f"note: {data.test_note}")
    print(f"{'model':>8} {'MB':>6} {'accuracy':>9} {'max |dp|':>10} {'same label':>11}")
    for kind, row in rows.items():
        print(
            f"{kind:>8} {row['megabytes']:6.1f} {row['accuracy']:9.4f} {row['max_probability_difference']:10.2e} "
            f"{row['same_label']:11.4f}"
        )
    if "int8" in rows and rows["int8"]["same_label"] < INT8_AGREEMENT:
        print(
            f"warning: the int8 file gives another label than the Keras model for "
            f"{1 - rows['int8']['same_label']:.1%} of these faces (more than {1 - INT8_AGREEMENT:.0%}); use the "
            f"float32 file, or calibrate on more training faces"
        )
    report = {"test_faces": len(data.test), "data": data.source, "rows": rows}
    if args.json:
        from ferkit.atomic import atomic_write_text

        atomic_write_text(args.json, json.dumps(report, indent=1))
    return report


def main(argv=None) -> dict:
    return cli.run_main(export, parse_args(argv))


if __name__ == "__main__":
    main()
