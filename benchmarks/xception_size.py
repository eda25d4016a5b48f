"""Which Xception input size gives the best features for FER faces, and at what speed:
features of a stratified training subset at each size, a random forest fitted on them, and its
accuracy on a PublicTest (validation) subset. The test split is not touched.

    python benchmarks/xception_size.py --weights ../shared/weights/xception_imagenet_notop.weights.h5
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ferkit import cli, features, ga
from ferkit.data import load_dataset
from ferkit.paths import DEFAULT_DATA
from ferkit.splits import stratified_subset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--weights", default="imagenet")
    p.add_argument("--sizes", type=int, nargs="+", default=[71, 96, 139])
    p.add_argument("--train", type=int, default=1400)
    p.add_argument("--val", type=int, default=700)
    args = p.parse_args()

    data = load_dataset(args.data, progress=False)
    tr = stratified_subset(data.train.y, args.train)
    va = stratified_subset(data.val.y, args.val)
    config = ga.GAConfig(jobs=2)
    print(f"{'size':>5} {'images/s':>9} {'val accuracy':>13}   ({len(tr)} train, {len(va)} PublicTest faces)")
    for size in args.sizes:
        model = features.load_xception(args.weights, size)
        features.extract_features(data.train.x[:64], args.weights, size, model=model, desc="warm-up")
        started = time.perf_counter()
        x_train = features.extract_features(data.train.x[tr], args.weights, size, model=model)
        x_val = features.extract_features(data.val.x[va], args.weights, size, model=model)
        speed = (len(tr) + len(va)) / (time.perf_counter() - started)
        forest = ga.forest(config, trees=200, jobs=2).fit(x_train, data.train.y[tr])
        accuracy = np.mean(forest.predict(x_val) == data.val.y[va])
        print(f"{size:>5} {speed:>9.1f} {accuracy:>13.4f}", flush=True)


if __name__ == "__main__":
    cli.run_main(main)
