"""Training speed of the wide network on the CPU under TensorFlow's thread settings, each in a
fresh process (they are fixed when TensorFlow starts), measured side by side in one run.

    python benchmarks/cpu_threads.py --steps 12             # default, and the settings below
    python benchmarks/cpu_threads.py --configs 0:0 2:1 1:1  # intra-op:inter-op threads (0 = TF's choice)

On a machine of few cores TensorFlow's default pools (intra-op = inter-op = the core count)
oversubscribe them: a training step's ops run in both pools at once. The figure is images/s of
the --preset wide step (batch 128, strong augmentation, SGD, float32) on random faces.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

STEP = r"""
import json, sys, time
import numpy as np
import keras
from ferkit import networks
batch, steps, warmup = (int(a) for a in sys.argv[1:4])
keras.utils.set_random_seed(0)
model = networks.build_model(arch="wide", augment="strong")
model.compile(keras.optimizers.SGD(0.02, momentum=0.9, nesterov=True, weight_decay=1e-4),
              keras.losses.CategoricalCrossentropy(label_smoothing=0.1), metrics=["accuracy"])
rng = np.random.default_rng(0)
x = rng.integers(0, 256, (batch * (steps + warmup), 48, 48, 1)).astype("float32")
y = np.eye(7, dtype="float32")[rng.integers(0, 7, len(x))]
times = []
class Timer(keras.callbacks.Callback):
    def on_train_batch_end(self, i, logs=None):
        times.append(time.perf_counter())
model.fit(x, y, batch_size=batch, epochs=1, verbose=0, callbacks=[Timer()], shuffle=False)
print(json.dumps({"images_per_s": steps * batch / (times[-1] - times[warmup - 1])}))
"""


def measure(intra: int, inter: int, batch: int, steps: int, warmup: int) -> float:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", KERAS_BACKEND="tensorflow")
    for name, value in (("TF_NUM_INTRAOP_THREADS", intra), ("TF_NUM_INTEROP_THREADS", inter)):
        env.pop(name, None)
        if value:
            env[name] = str(value)
    out = subprocess.run(
        [sys.executable, "-c", STEP, str(batch), str(steps), str(warmup)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["images_per_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=None, help="intra:inter thread counts, 0 = TensorFlow's choice")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=2, help="each setting this many times, interleaved")
    args = p.parse_args()
    cores = os.cpu_count() or 1
    configs = args.configs or ["0:0", f"{cores}:1", f"{cores}:2", f"{max(1, cores // 2)}:2"]
    pairs = [tuple(int(v) for v in c.split(":")) for c in configs]
    results = {pair: [] for pair in pairs}
    for r in range(args.rounds):
        for pair in pairs:  # interleaved, so a drift in the machine's speed spreads over all
            results[pair].append(measure(*pair, args.batch_size, args.steps, args.warmup))
            print(
                f"round {r + 1}: intra {pair[0] or 'default'}, inter {pair[1] or 'default'}: "
                f"{results[pair][-1]:.1f} images/s",
                flush=True,
            )
    base = max(results[pairs[0]])
    print(f"\n{cores} cores; wide network, batch {args.batch_size}, float32; best of {args.rounds} rounds")
    print(f"{'intra-op':>9} {'inter-op':>9} {'images/s':>9} {'x default':>10}")
    for pair in pairs:
        best = max(results[pair])
        print(f"{pair[0] or 'default':>9} {pair[1] or 'default':>9} {best:>9.1f} {best / base:>10.2f}")


if __name__ == "__main__":
    main()
