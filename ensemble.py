"""Average the predictions of several trained models in one model file.

    python ensemble.py models/a.keras models/b.keras --data ../shared/data/fer2013 --tta \\
        --out models/fer_cnn.keras

Prints each member's and the average's accuracy on the validation split (PublicTest), the split to
choose on; the test split stays untouched (evaluate the saved file with evaluate.py once). The
saved model takes the same faces and gives the same seven probabilities as a single model, so
realtime.py and evaluate.py use it unchanged; it costs the members' inference time together.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import keras

import fer_common as fc


def average_models(members: list) -> keras.Model:
    """One functional model whose output is the mean of the members' class probabilities."""
    shapes = {tuple(m.input_shape[1:]) for m in members}
    outputs = {m.output_shape[-1] for m in members}
    if len(shapes) != 1 or len(outputs) != 1:
        raise fc.ModelFileError(f"the models take different inputs {sorted(shapes)} or give different "
                                f"numbers of classes {sorted(outputs)}; only models of one task can be averaged.")
    face = keras.Input(shapes.pop(), name="face")
    for i, member in enumerate(members, start=1):
        member.name = f"member{i}_{member.name}"  # nested models need unique names
    mean = keras.layers.Average(name="mean_probability")([m(face) for m in members])
    return keras.Model(face, mean, name="fer_ensemble")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", type=Path, nargs="+", help="two or more saved .keras models")
    p.add_argument("--data", default=fc.DEFAULT_DATA, help="dataset with a validation split (default data/fer2013)")
    p.add_argument("--tta", action="store_true", help="average with the mirrored face")
    p.add_argument("--out", type=Path, help="save the averaged model here (class names inside)")
    p.add_argument("--cache-dir", type=Path, default=fc.DEFAULT_CACHE_DIR)
    args = p.parse_args(argv)
    if len(args.models) < 2:
        p.error("give at least two models to average")
    try:
        loaded = [fc.load_model(path) for path in args.models]
        names = {names for _, names in loaded}
        if len(names) != 1:
            raise fc.ModelFileError(f"the models label different classes: {sorted(names)}; retrain "
                                    f"them on one dataset before averaging.")
        class_names = names.pop()
        members = [model for model, _ in loaded]
        ensemble = average_models(members)
        data = fc.load_dataset(args.data, cache_dir=args.cache_dir)
    except (fc.DatasetError, fc.ModelFileError) as exc:
        fc.fail(str(exc))

    candidates = {**{str(path): member for path, member in zip(args.models, members)}, "average": ensemble}
    accuracy = {name: fc.accuracy(model, data.val, flip_tta=args.tta) for name, model in candidates.items()}
    print(f"validation accuracy ({len(data.val)} faces, {data.val_note}{', flip TTA' if args.tta else ''}):")
    for name, value in accuracy.items():
        print(f"  {value:.4f}  {name}")
    if args.out:
        fc.save_model(ensemble, args.out, class_names)
        print(f"saved {args.out} ({args.out.stat().st_size / 1e6:.1f} MB)")
    return accuracy


if __name__ == "__main__":
    main()
