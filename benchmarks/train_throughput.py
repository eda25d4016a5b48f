"""Training throughput of the seed CNN: this project's in-memory pipeline against Keras'
``ImageDataGenerator.flow_from_directory`` reading the same FER2013 JPEGs, measured in one run.

    python benchmarks/train_throughput.py --data ../shared/data/fer2013 --steps 40
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import keras
import numpy as np

from ferkit import cli, networks
from ferkit.data import load_dataset
from ferkit.faces import to_model_input
from ferkit.paths import DEFAULT_DATA


class StepTimer(keras.callbacks.Callback):
    """Wall time of the batches after the warm-up ones."""

    def __init__(self, warmup: int):
        super().__init__()
        self.warmup, self.start, self.end = warmup, None, None

    def on_train_batch_end(self, batch, logs=None):
        if batch == self.warmup - 1:
            self.start = time.perf_counter()
        self.end = time.perf_counter()


def fresh_model(mixed: bool):
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if mixed else "float32")
    keras.utils.set_random_seed(0)
    model = networks.build_model()
    model.compile(keras.optimizers.Adam(1e-3), "categorical_crossentropy", metrics=["accuracy"])
    return model


def time_fit(model, fit_source, steps: int, warmup: int, images_per_step: int, **fit_kwargs) -> float:
    timer = StepTimer(warmup)
    model.fit(fit_source, steps_per_epoch=warmup + steps, epochs=1, verbose=0, callbacks=[timer], **fit_kwargs)
    return steps * images_per_step / (timer.end - timer.start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--steps", type=int, default=40, help="timed batches per pipeline")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--mixed-precision", action="store_true")
    args = p.parse_args()

    n = (args.steps + args.warmup) * args.batch_size
    data = load_dataset(args.data, progress=False)
    x, y = to_model_input(data.train.x[:n]), np.eye(7, dtype=np.float32)[data.train.y[:n]]
    in_memory = time_fit(
        fresh_model(args.mixed_precision),
        x,
        args.steps,
        args.warmup,
        args.batch_size,
        y=y,
        batch_size=args.batch_size,
        shuffle=True,
    )

    try:
        from keras.preprocessing.image import ImageDataGenerator
    except ImportError:  # gone from the public API in recent Keras 3; the legacy code still ships
        from keras.src.legacy.preprocessing.image import ImageDataGenerator

    flow = ImageDataGenerator().flow_from_directory(
        str(args.data / "train"),
        target_size=(48, 48),
        color_mode="grayscale",
        class_mode="categorical",
        batch_size=args.batch_size,
        shuffle=True,
        seed=0,
    )
    from_directory = time_fit(fresh_model(args.mixed_precision), flow, args.steps, args.warmup, args.batch_size)

    policy = "mixed_bfloat16" if args.mixed_precision else "float32"
    print(f"seed CNN training throughput ({policy}, batch {args.batch_size}, {args.steps} timed steps)")
    print(f"  this project (cached uint8 arrays -> model.fit): {in_memory:7.1f} images/s")
    print(f"  ImageDataGenerator.flow_from_directory:          {from_directory:7.1f} images/s")
    print(f"  ratio: {in_memory / from_directory:.2f}x")


if __name__ == "__main__":
    cli.run_main(main)
