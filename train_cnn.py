"""Train the four-block CNN on FER2013's seven expressions.

    python train_cnn.py --data ../shared/data/fer2013                # the full 30-epoch recipe
    python train_cnn.py --data ../shared/data/fer2013 --limit 3000 --epochs 3   # a quick run

Trains on Training_, monitors PublicTest_ (validation), reports PrivateTest_ (test) once at the
end. A checkpoint is written atomically after every epoch; run the same command again after an
interruption to resume (``--fresh`` starts over).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import keras
import numpy as np

import fer_common as fc


ARCHITECTURES = ("seed", "vgg")
# Keras' default 0.99 needs ~500 steps before inference-time statistics settle, which leaves
# short runs (--limit, a few epochs) predicting one class; 0.9 settles within ~50 steps.
BN_MOMENTUM = 0.9


def augmentation_block(x):
    """Light augmentation, active only in training: flip, shift, rotate, zoom."""
    from keras import layers

    x = layers.RandomFlip("horizontal", name="aug_flip")(x)
    x = layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", name="aug_shift")(x)
    x = layers.RandomRotation(0.04, fill_mode="nearest", name="aug_rotate")(x)
    return layers.RandomZoom(0.1, fill_mode="nearest", name="aug_zoom")(x)


def dense_head(x, units: tuple[int, ...], dropout: tuple[float, ...], num_classes: int):
    """Flatten, then Dense -> BatchNorm -> ReLU -> Dropout blocks, then the softmax."""
    from keras import layers

    x = layers.Flatten(name="flatten")(x)
    for i, (n, rate) in enumerate(zip(units, dropout), start=1):
        x = layers.Dense(n, name=f"dense{i}")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"dense{i}_bn")(x)
        x = layers.Activation("relu", name=f"dense{i}_relu")(x)
        x = layers.Dropout(rate, name=f"dense{i}_dropout")(x)
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name="expression")(x)


def build_model(num_classes: int = len(fc.CLASS_NAMES), augment: bool = False, arch: str = "seed"):
    """The CNN, from 0-255 grey 48x48 faces to class probabilities.

    ``seed`` is the original notebook's network (4,743,431 weights): four conv blocks
    Conv(64 3x3, 128 5x5, 512 3x3, 512 3x3) -> BatchNorm -> ReLU -> MaxPool 2x2 -> Dropout 0.25,
    then Dense 256, 512, 512 blocks (dropout 0.25, 0.25, 0.22). ``vgg`` is a compact VGG-style
    variant (two 3x3 convs per stage, 32-64-128-256 channels): 2.5x fewer multiply-adds, so more
    epochs per CPU hour. Pixels are rescaled inside the model.
    """
    from keras import layers

    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(ARCHITECTURES)}")
    inputs = keras.Input((fc.IMAGE_SIZE, fc.IMAGE_SIZE, 1), name="face")
    x = layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    if augment:
        x = augmentation_block(x)
    if arch == "seed":
        stages = [[(64, 3)], [(128, 5)], [(512, 3)], [(512, 3)]]
        head = ((256, 512, 512), (0.25, 0.25, 0.22))
    else:
        stages = [[(c, 3), (c, 3)] for c in (32, 64, 128, 256)]
        head = ((256,), (0.5,))
    for i, stage in enumerate(stages, start=1):
        for j, (filters, kernel) in enumerate(stage, start=1):
            name = f"conv{i}" if len(stage) == 1 else f"conv{i}_{j}"
            x = layers.Conv2D(filters, kernel, padding="same", name=name)(x)
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
            x = layers.Activation("relu", name=f"{name}_relu")(x)
        x = layers.MaxPooling2D(2, name=f"conv{i}_pool")(x)
        x = layers.Dropout(0.25, name=f"conv{i}_dropout")(x)
    outputs = dense_head(x, *head, num_classes)
    return keras.Model(inputs, outputs, name=f"fer_{arch}")




def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=fc.DEFAULT_DATA,
                   help="FER2013 folder (train/ + test/), train/ + validation/, fer2013.csv, "
                        "or a folder of class folders (default data/fer2013)")
    p.add_argument("--name", default="fer_cnn", help="output name: models/NAME.keras, plots/NAME_*.png")
    p.add_argument("--arch", choices=ARCHITECTURES, default="seed",
                   help="seed: the original four-block CNN (default); vgg: compact VGG-style variant")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--schedule", choices=("plateau", "cosine"), default="plateau",
                   help="plateau: ReduceLROnPlateau on validation loss (default); cosine: decay from "
                        "--lr to 0 over the run, per step")
    p.add_argument("--init-from", type=Path, default=None,
                   help="start from the weights of a saved model of the same --arch (a warm restart)")
    p.add_argument("--lr-factor", type=float, default=0.2, help="ReduceLROnPlateau factor")
    p.add_argument("--lr-patience", type=int, default=3, help="ReduceLROnPlateau patience (epochs)")
    p.add_argument("--min-lr", type=float, default=1e-6)
    p.add_argument("--label-smoothing", type=float, default=0.0)
    p.add_argument("--augment", action="store_true", help="random flip/shift/rotate/zoom in training")
    p.add_argument("--class-weights", action="store_true", help="weight classes by inverse frequency")
    p.add_argument("--tta", action="store_true", help="average predictions with the mirrored face at test time")
    p.add_argument("--limit", type=int, default=None, help="train on a stratified subset of N images")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="share of train held out for validation when the data has no validation split")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mixed-precision", action="store_true",
                   help="mixed_bfloat16 policy (faster on CPUs with AVX-512 BF16 and on GPUs)")
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint and start over")
    p.add_argument("--checkpoint-dir", type=Path, default=None,
                   help="where per-epoch checkpoints go (default models/checkpoints/NAME)")
    p.add_argument("--models-dir", type=Path, default=fc.MODELS_DIR)
    p.add_argument("--plots-dir", type=Path, default=fc.PLOTS_DIR)
    p.add_argument("--cache-dir", type=Path, default=fc.DEFAULT_CACHE_DIR)
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size", "lr_patience"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.lr <= 0 or not 0 < args.lr_factor < 1:
        p.error("--lr must be positive and --lr-factor between 0 and 1")
    if args.limit is not None and args.limit < len(fc.CLASS_NAMES):
        p.error(f"--limit must be at least {len(fc.CLASS_NAMES)} (one image per class)")
    if not 0 <= args.label_smoothing < 1:
        p.error("--label-smoothing must be in [0, 1)")
    return args


# The settings that must match for a checkpoint to be resumed.
RESUME_KEYS = ("arch", "data", "batch_size", "lr", "schedule", "init_from", "augment",
               "class_weights", "limit", "seed", "label_smoothing", "val_fraction")


class EpochCheckpoint(keras.callbacks.Callback):
    """After every epoch, atomically save the full training state (model with optimizer,
    history, ReduceLROnPlateau counters) and the best model by validation accuracy."""

    def __init__(self, directory: Path, plateau, settings: dict, history: dict, best: float):
        super().__init__()
        self.directory, self.plateau, self.settings = directory, plateau, settings
        self.history_so_far, self.best = history, best

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        for key, value in logs.items():
            self.history_so_far.setdefault(key, []).append(float(value))
        self.history_so_far.setdefault("lr", []).append(float(self.model.optimizer.learning_rate))
        if logs.get("val_accuracy", -1) > self.best:
            self.best = float(logs["val_accuracy"])
            fc.save_model(self.model, self.directory / "best.keras")
        fc.save_model(self.model, self.directory / "last.keras")
        plateau = None if self.plateau is None else {
            "wait": self.plateau.wait, "best": float(self.plateau.best),
            "cooldown_counter": self.plateau.cooldown_counter}
        state = {"epoch": epoch + 1, "best_val_accuracy": self.best, "history": self.history_so_far,
                 "settings": self.settings, "plateau": plateau}
        fc.atomic_write_text(self.directory / "state.json", json.dumps(state))


class RestorePlateau(keras.callbacks.Callback):
    """ReduceLROnPlateau resets its counters when training begins; put the saved ones back."""

    def __init__(self, plateau, saved: dict):
        super().__init__()
        self.plateau, self.saved = plateau, saved

    def on_train_begin(self, logs=None):
        self.plateau.wait, self.plateau.best = self.saved["wait"], self.saved["best"]
        self.plateau.cooldown_counter = self.saved["cooldown_counter"]


def load_checkpoint(directory: Path, settings: dict):
    """Return (model, state) to resume from, or (None, None) when there is nothing to resume."""
    state_file = directory / "state.json"
    if not state_file.exists() or not (directory / "last.keras").exists():
        return None, None
    state = json.loads(state_file.read_text())
    changed = [k for k in RESUME_KEYS if state["settings"].get(k) != settings.get(k)]
    if changed:
        fc.fail(f"checkpoint in {directory} was made with different settings ({', '.join(changed)}). "
                f"Rerun with the same settings to resume, or add --fresh to start over.")
    model = keras.models.load_model(directory / "last.keras")
    return model, state


def copy_weights(source, target) -> None:
    """Copy weights layer by layer (matched by name) from one model into another of its architecture."""
    for layer in target.layers:
        if layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())


def warm_start(model, path: Path) -> None:
    """Load the weights of the saved model at ``path`` (--init-from) into a freshly built ``model``."""
    source, _ = fc.load_model(path)
    if source.name != model.name:
        raise fc.ModelFileError(
            f"--init-from model is {source.name!r} but this run builds {model.name!r}; pass the "
            f"--arch it was trained with.")
    copy_weights(source, model)


def learning_rate_for(args: argparse.Namespace, steps_per_epoch: int):
    if args.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(args.lr, decay_steps=args.epochs * steps_per_epoch)
    return args.lr


def class_weight_for(y: np.ndarray, num_classes: int) -> dict[int, float]:
    counts = np.bincount(y, minlength=num_classes).astype(float)
    weights = len(y) / (num_classes * np.maximum(counts, 1))
    return {i: float(w) for i, w in enumerate(weights)}


def plot_history(history: dict, key: str, path: Path, title: str) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = np.arange(1, len(history[key]) + 1)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(epochs, history[key], "o-", label="train")
    if f"val_{key}" in history:
        ax.plot(epochs, history[f"val_{key}"], "s-", label="validation (PublicTest)")
    ax.set_xlabel("epoch")
    ax.set_ylabel(key)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def inference_copy(trained):
    """A float32, uncompiled copy of the trained model without augmentation or optimizer state:
    what gets shipped (smaller file, no training-only layers)."""
    keras.mixed_precision.set_global_policy("float32")
    clean = build_model(num_classes=trained.output_shape[-1], augment=False,
                        arch=trained.name.removeprefix("fer_"))
    copy_weights(trained, clean)
    return clean


def train(args: argparse.Namespace) -> dict:
    keras.utils.set_random_seed(args.seed)
    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    data = fc.load_dataset(args.data, val_fraction=args.val_fraction, seed=args.seed,
                           cache_dir=args.cache_dir)
    train_split = data.train
    if args.limit:
        idx = fc.stratified_subset(train_split.y, args.limit, seed=args.seed)
        train_split = fc.Split(train_split.x[idx], train_split.y[idx])
    num_classes = len(data.class_names)
    print(f"data: {data.source} ({data.layout}); train {len(train_split)}, validation "
          f"{len(data.val)}, test {len(data.test)}; {data.val_note}")

    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    ckpt_dir = args.checkpoint_dir or args.models_dir / "checkpoints" / args.name
    if args.fresh and ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)
    model, state = load_checkpoint(ckpt_dir, settings)
    if model is None:
        model = build_model(num_classes, augment=args.augment, arch=args.arch)
        if args.init_from:
            warm_start(model, args.init_from)
        steps_per_epoch = -(-len(train_split) // args.batch_size)
        model.compile(optimizer=keras.optimizers.Adam(learning_rate_for(args, steps_per_epoch)),
                      loss=keras.losses.CategoricalCrossentropy(label_smoothing=args.label_smoothing),
                      metrics=["accuracy"])
        state = {"epoch": 0, "best_val_accuracy": -1.0, "history": {}, "plateau": None}
    else:
        print(f"resuming from {ckpt_dir} after epoch {state['epoch']} of {args.epochs}")
    ckpt_dir.mkdir(parents=True, exist_ok=True)

    plateau, restore = None, []
    if args.schedule == "plateau":
        plateau = keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=args.lr_factor,
                                                    patience=args.lr_patience, min_delta=1e-4,
                                                    min_lr=args.min_lr, verbose=1)
        restore = [RestorePlateau(plateau, state["plateau"])] if state["plateau"] else []
    history = state["history"]
    checkpoint = EpochCheckpoint(ckpt_dir, plateau, settings, history, state["best_val_accuracy"])
    one_hot = np.eye(num_classes, dtype=np.float32)
    started = time.time()
    try:
        if state["epoch"] < args.epochs:
            model.fit(fc.to_model_input(train_split.x), one_hot[train_split.y],
                      validation_data=(fc.to_model_input(data.val.x), one_hot[data.val.y]),
                      epochs=args.epochs, initial_epoch=state["epoch"], batch_size=args.batch_size,
                      class_weight=class_weight_for(train_split.y, num_classes) if args.class_weights else None,
                      callbacks=[c for c in (plateau, *restore, checkpoint) if c], shuffle=True,
                      verbose=1 if sys.stdout.isatty() else 2)
    except KeyboardInterrupt:
        fc.fail(f"interrupted; the last finished epoch is saved in {ckpt_dir}. Run the same "
                f"command to resume.", code=130)
    train_seconds = time.time() - started

    best_model = keras.models.load_model(ckpt_dir / "best.keras")
    final = inference_copy(best_model)
    proba = fc.predict_proba(final, data.test.x, flip_tta=args.tta)
    summary = fc.classification_summary(data.test.y, proba.argmax(1), data.class_names)
    val_accuracy = fc.accuracy(final, data.val, flip_tta=args.tta)

    model_path = fc.save_model(final, args.models_dir / f"{args.name}.keras", data.class_names)
    plots = [plot_history(history, "loss", args.plots_dir / f"{args.name}_loss.png", "Loss"),
             plot_history(history, "accuracy", args.plots_dir / f"{args.name}_accuracy.png", "Accuracy"),
             fc.plot_confusion(summary["confusion_matrix"], data.class_names,
                               args.plots_dir / f"{args.name}_confusion.png",
                               f"Test confusion (accuracy {summary['accuracy']:.3f})")]
    metrics = {
        "test_accuracy": summary["accuracy"], "test_macro_f1": summary["macro_f1"],
        "validation_accuracy": val_accuracy, "per_class": summary["per_class"],
        "confusion_matrix": summary["confusion_matrix"], "class_names": list(data.class_names),
        "history": history, "epochs_trained": len(history.get("loss", [])),
        "train_seconds_this_run": round(train_seconds, 1),
        "data": {"source": data.source, "layout": data.layout, "train": len(train_split),
                 "validation": len(data.val), "test": len(data.test), "validation_note": data.val_note},
        "settings": settings, "tta": args.tta,
    }
    metrics_path = args.models_dir / f"{args.name}_metrics.json"
    metrics_path.write_text(json.dumps(metrics, indent=1))
    shutil.rmtree(ckpt_dir)  # finished: the next run of this command starts afresh

    print(fc.format_report(summary))
    print(f"test accuracy: {summary['accuracy']:.4f} (validation {val_accuracy:.4f}, "
          f"majority-class rate {np.bincount(data.test.y).max() / len(data.test):.4f})")
    print(f"saved model:   {model_path}")
    print(f"saved metrics: {metrics_path}")
    print("saved plots:   " + ", ".join(str(p) for p in plots))
    return metrics


def main(argv=None) -> None:
    args = parse_args(argv)
    try:
        train(args)
    except (fc.DatasetError, fc.ModelFileError) as exc:
        fc.fail(str(exc))


if __name__ == "__main__":
    main()
