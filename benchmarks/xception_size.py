"""Which Xception input size gives the best features for FER faces, and at what speed:
features of a stratified training subset at each size, a random forest fitted on them, and its
accuracy on a PublicTest (validation) subset. The test split is not touched.

    python benchmarks/xception_size.py --weights ../shared/weights/xception_imagenet_notop.weights.h5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

import fer_common as fc  # noqa: E402
import ga_select  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("../shared/data/fer2013"))
    p.add_argument("--weights", default="imagenet")
    p.add_argument("--sizes", type=int, nargs="+", default=[71, 96, 139])
    p.add_argument("--train", type=int, default=1400)
    p.add_argument("--val", type=int, default=700)
    args = p.parse_args()

    data = fc.load_dataset(args.data, progress=False)
    tr = fc.stratified_subset(data.train.y, args.train)
    va = fc.stratified_subset(data.val.y, args.val)
    config = ga_select.GAConfig(jobs=2)
    print(f"{'size':>5} {'images/s':>9} {'val accuracy':>13}   ({len(tr)} train, {len(va)} PublicTest faces)")
    for size in args.sizes:
        model = ga_select.load_xception(args.weights, size)
        ga_select.extract_features(data.train.x[:64], args.weights, size, model=model, desc="warm-up")
        started = time.perf_counter()
        x_train = ga_select.extract_features(data.train.x[tr], args.weights, size, model=model)
        x_val = ga_select.extract_features(data.val.x[va], args.weights, size, model=model)
        speed = (len(tr) + len(va)) / (time.perf_counter() - started)
        forest = ga_select.forest(config, trees=200, jobs=2).fit(x_train, data.train.y[tr])
        accuracy = np.mean(forest.predict(x_val) == data.val.y[va])
        print(f"{size:>5} {speed:>9.1f} {accuracy:>13.4f}", flush=True)


if __name__ == "__main__":
    main()
