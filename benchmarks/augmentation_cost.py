"""What the in-model augmentation costs the wide recipe's training step, on the backend and device at
hand: the step without augmentation, with the light and the strong one, with the strong one less
some of its layers, and with it on each batch before the step (``--augment-in batches``), side
by side in one run. Written for the lent GPU: there (JAX, H200,
session 27) the network alone trained at 3.5 ms a step and each augmentation layer alone ran in
0.3-0.6 ms, yet the step with the strong augmentation inside the model took 477-605 ms.

    KERAS_BACKEND=jax python benchmarks/augmentation_cost.py [--steps 20] [--variants none strong ...]
    # on the lent GPU, one device call with .whl carried (each variant compiles for 10-45 s there):
    #   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl &&
    #   PYTHONPATH=/tmp/site:. KERAS_BACKEND=jax python3 benchmarks/augmentation_cost.py --variants none strong ...

Each variant runs in its own process (XLA reads its flags once per process; a variant's compile
cannot warm the next one's), float32, batch 128, the preset's SGD and label smoothing, on random
faces (speed depends on the shapes only). ``strong-xla-autotune-0`` is the strong step with XLA's
GPU autotuning off (``--xla_gpu_autotune_level=0``): whether the autotuner's timings, which XLA
warns are inaccurate on the lent machine, chose badly. Prints ms per step and the ratio to the
network alone.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from ferkit import cli

GEOMETRY = ("aug_shift", "aug_rotate", "aug_zoom")
# variant: (augmentation, layers of it left out, extra XLA flags)
VARIANTS = {  # the most telling first: a device call may not have time for them all
    "none": (False, (), ""),
    "strong": ("strong", (), ""),
    # train_cnn.py --augment-in batches: the network without the layers, each batch augmented
    # first by the same layers compiled on their own (the step's time is both).
    "strong-in-batches": (False, (), ""),
    "strong-xla-autotune-0": ("strong", (), "--xla_gpu_autotune_level=0"),
    "strong-no-geometry": ("strong", GEOMETRY, ""),
    "strong-no-blur-erase": ("strong", ("aug_blur", "aug_erase"), ""),
    "strong-no-colour": ("strong", ("aug_brightness", "aug_contrast"), ""),
    "light": ("light", (), ""),
}


def without(model, names):
    """The same functional chain of layers less those named (the networks here are one chain)."""
    import keras

    inputs = model.inputs[0]
    x = inputs
    for layer in model.layers[1:]:
        if layer.name not in names:
            x = layer(x)
    return keras.Model(inputs, x, name=model.name)


def ms_per_step(variant: str, steps: int, warmup: int, batch: int) -> float:
    """Measured in this process, on whatever backend and device Keras was started with."""
    import keras
    import numpy as np

    from ferkit import networks
    from ferkit.trainconfig import PRESETS

    augment, left_out, _ = VARIANTS[variant]
    keras.utils.set_random_seed(0)
    model = without(networks.build_model(arch="wide", augment=augment), set(left_out))
    loss = keras.losses.CategoricalCrossentropy(label_smoothing=PRESETS["wide"]["label_smoothing"])
    model.compile(keras.optimizers.SGD(0.01, momentum=0.9, nesterov=True), loss, metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (batch * steps, 48, 48, 1)).astype("float32")
    y = np.eye(7, dtype="float32")[rng.integers(0, 7, batch * steps)]
    if variant == "strong-in-batches":
        return _in_batches(model, x, y, steps, warmup, batch)
    model.fit(x[: batch * warmup], y[: batch * warmup], batch_size=batch, epochs=1, verbose=0)  # compiles
    started = time.perf_counter()
    model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    return (time.perf_counter() - started) / steps * 1000


def _in_batches(model, x, y, steps: int, warmup: int, batch: int) -> float:
    """train_cnn.py --augment-in batches: the network without the layers, each batch augmented first."""
    from ferkit.batchaug import BatchAugmenter
    from ferkit.batches import EpochBatches

    faces = x[..., 0].astype("uint8")
    augment = BatchAugmenter("strong", 0)
    model.fit(EpochBatches(faces[: batch * warmup], y[: batch * warmup], batch, 0, transform=augment), verbose=0)
    started = time.perf_counter()
    model.fit(EpochBatches(faces, y, batch, 0, transform=augment), verbose=0)
    return (time.perf_counter() - started) / steps * 1000


def measure_in_child(variant: str, args) -> float | None:
    """ms per step of ``variant`` in a fresh process, or None (with the reason printed) if it failed."""
    command = [sys.executable, __file__, "--child", variant, "--steps", str(args.steps),
               "--warmup", str(args.warmup), "--batch-size", str(args.batch_size)]  # fmt: skip
    flags = " ".join(f for f in (os.environ.get("XLA_FLAGS", ""), VARIANTS[variant][2]) if f)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **({"XLA_FLAGS": flags} if flags else {})}
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        print(f"  {variant}: no result within {args.timeout} s")
        return None
    if done.returncode != 0:
        print(f"  {variant}: failed ({done.stderr.strip().splitlines()[-1:] or ['no message']})")
        return None
    words = done.stdout.split()
    return float(words[-1]) if words else None


def fastest(results: dict) -> str:
    """The way to train an augmented run: "strong" (the layers inside the step), or the faster of
    the two ways round it where it is over twice as fast as that."""
    strong = results.get("strong") or 0
    ways = {v: results.get(v) for v in ("strong-in-batches", "strong-xla-autotune-0")}
    quick = {v: ms for v, ms in ways.items() if ms and ms < strong / 2}
    return min(quick, key=quick.get) if quick else "strong"


def main(argv=None) -> dict:
    p = cli.parser(__doc__)
    p.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    p.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    p.add_argument("--warmup", type=int, default=3, help="steps before timing (the first compiles)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--timeout", type=int, default=240, help="seconds a variant may take, compile included")
    p.add_argument("--choose", action="store_true", help="end with 'fastest: VARIANT', the way to train (fastest())")
    p.add_argument("--child", choices=list(VARIANTS), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(ms_per_step(args.child, args.steps, args.warmup, args.batch_size))
        return {}
    import keras

    print(f"backend {keras.backend.backend()}; wide network, batch {args.batch_size}, {args.steps} timed steps")
    results = {}
    for variant in args.variants:
        results[variant] = measure_in_child(variant, args)
        if results[variant] is not None:
            print(f"  {variant}: {results[variant]:.1f} ms per step", flush=True)
    base = results.get("none")
    print("ms per step, and against the network alone:")
    for variant, ms in results.items():
        if ms is not None:
            print(f"  {variant:24s} {ms:9.1f}" + (f"  {ms / base:6.1f}x" if base else ""))
    if args.choose:
        print(f"fastest: {fastest(results)}")
    return results


if __name__ == "__main__":
    main()
