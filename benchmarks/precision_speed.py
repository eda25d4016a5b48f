"""Training speed in float32 against bfloat16 mixed precision on this machine, side by side in one
run, and what ``--preset``'s ``mixed_precision="auto"`` chooses here (``ferkit.precision``).

    python benchmarks/precision_speed.py [--arch wide] [--steps 6] [--rounds 2]

The two policies are timed in turns (float32, bf16, float32, bf16, ...) on the same random faces
(speed depends on the shapes only), batch 128, the preset's optimizer and augmentation; each
round builds a fresh model. Prints images/s per round, the best of each and their ratio.
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np

from ferkit import cli, networks, precision
from ferkit.trainconfig import PRESETS


def images_per_second(arch: str, policy: str, steps: int, warmup: int, batch: int) -> float:
    keras.mixed_precision.set_global_policy(policy)
    keras.utils.set_random_seed(0)
    preset = PRESETS["wide" if arch == "wide" else "fast"]
    model = networks.build_model(arch=arch, augment=preset["augment"])
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch * steps, 48, 48, 1)).astype("float32")
    y = rng.integers(0, 7, batch * steps)
    model.fit(x[: batch * warmup], y[: batch * warmup], batch_size=batch, epochs=1, verbose=0)
    started = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    return len(x) / (time.perf_counter() - started)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", choices=("wide", "vgg", "seed"), default="wide")
    p.add_argument("--steps", type=int, default=6, help="timed batches per measurement")
    p.add_argument("--warmup", type=int, default=2, help="batches before the timing (graph building)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=2, help="float32 / bf16 pairs, taken in turns")
    args = p.parse_args(argv)
    native, why = precision.native_bf16()
    chosen, line = precision.choose_precision("auto")
    print(f"native bf16 here: {native} ({why}); --preset chooses: {line}")
    speeds: dict[str, list[float]] = {"float32": [], "mixed_bfloat16": []}
    for round_ in range(1, args.rounds + 1):
        for policy in speeds:
            speed = images_per_second(args.arch, policy, args.steps, args.warmup, args.batch_size)
            speeds[policy].append(speed)
            print(f"  round {round_}: {policy:>14}: {speed:7.1f} images/s", flush=True)
    best = {policy: max(values) for policy, values in speeds.items()}
    ratio = best["mixed_bfloat16"] / best["float32"]
    print(
        f"{args.arch} network, batch {args.batch_size}, best of {args.rounds}: float32 {best['float32']:.1f}, "
        f"bf16 {best['mixed_bfloat16']:.1f} images/s; bf16 / float32 = {ratio:.2f}x "
        f"({'bf16' if ratio > 1 else 'float32'} is faster here; auto chose {'bf16' if chosen else 'float32'})"
    )


if __name__ == "__main__":
    cli.run_main(main)
