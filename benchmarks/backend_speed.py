"""Training speed of one network on each installed Keras backend (TensorFlow, PyTorch, JAX), side by
side in one run: which backend to train on, on this machine.

    python benchmarks/backend_speed.py [--arch wide] [--steps 16] [--rounds 2]

Keras picks its backend once per process, so each measurement runs in a child process with
``KERAS_BACKEND`` set; the backends are timed in turns (tensorflow, torch, jax, tensorflow, ...) on
the same random faces (speed depends on the shapes only), float32, batch 128, the preset's SGD,
augmentation and label smoothing, a fresh model per round. Prints images/s per round, the best of each and its ratio to
TensorFlow (the default backend). A backend that is not installed is said and skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time

from ferkit import cli

BACKENDS = ("tensorflow", "torch", "jax")


def images_per_second(arch: str, steps: int, warmup: int, batch: int) -> float:
    """Measured in this process, on whatever backend Keras was started with."""
    import keras
    import numpy as np

    from ferkit import networks
    from ferkit.trainconfig import PRESETS

    keras.utils.set_random_seed(0)
    preset = PRESETS["wide" if arch == "wide" else "fast"]
    model = networks.build_model(arch=arch, augment=preset["augment"])
    # Compiled as train_cnn.py compiles it: one-hot targets with label smoothing, accuracy logged.
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=preset["label_smoothing"])
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True), loss, metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch * steps, 48, 48, 1)).astype("float32")
    y = np.eye(7, dtype="float32")[rng.integers(0, 7, batch * steps)]
    model.fit(x[: batch * warmup], y[: batch * warmup], batch_size=batch, epochs=1, verbose=0)
    started = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    return len(x) / (time.perf_counter() - started)


def measure_in_child(backend: str, args) -> float | None:
    """images/s on ``backend`` in a fresh process, or None (with the reason printed) if it failed."""
    command = [sys.executable, __file__, "--child", "--arch", args.arch, "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--batch-size", str(args.batch_size)]  # fmt: skip
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"  {backend}: failed ({done.stderr.strip().splitlines()[-1:] or ['no message']})")
        return None
    return float(done.stdout.split()[-1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", choices=("wide", "vgg", "seed"), default="wide")
    p.add_argument("--steps", type=int, default=16, help="timed batches per measurement")
    p.add_argument("--warmup", type=int, default=2, help="batches before the timing (graph building)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=2, help="turns over the backends")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(images_per_second(args.arch, args.steps, args.warmup, args.batch_size))
        return
    backends = [b for b in BACKENDS if importlib.util.find_spec(b) is not None]
    for missing in sorted(set(BACKENDS) - set(backends)):
        print(f"{missing}: not installed, skipped")
    speeds: dict[str, list[float]] = {b: [] for b in backends}
    for round_ in range(1, args.rounds + 1):
        for backend in backends:
            speed = measure_in_child(backend, args)
            if speed is not None:
                speeds[backend].append(speed)
                print(f"  round {round_}: {backend:>10}: {speed:7.1f} images/s", flush=True)
    best = {b: max(v) for b, v in speeds.items() if v}
    base = best.get("tensorflow")
    parts = [f"{b} {s:.1f}" + (f" ({s / base:.2f}x)" if base else "") for b, s in best.items()]
    print(
        f"{args.arch} network, float32, batch {args.batch_size}, best of {args.rounds}, images/s: " + ", ".join(parts)
    )
    if best:
        print(f"fastest here: {max(best, key=best.get)} (train with KERAS_BACKEND={max(best, key=best.get)})")


if __name__ == "__main__":
    cli.run_main(main)
