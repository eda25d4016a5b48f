"""Training a CNN on a FER dataset: the settings (``TrainConfig``, whose defaults are
``train_cnn.py``'s), per-epoch atomic checkpoints with resume, warm restarts, and the outputs of
a finished run (model, metrics, curves, confusion matrix)."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from .atomic import atomic_write_text
from .classify import TTA_MODES, accuracy, predict_proba, tta_options
from .data import load_dataset, stratified_subset
from .distill import blend_targets, cached_teacher_probabilities
from .distribute import Plan, data_parallel, split_cpu
from .errors import CheckpointError, Interrupted, ModelFileError, ParameterError
from .faces import CLASS_NAMES, to_model_input
from .modelfile import copy_weights, inference_copy, load_model, save_model
from .networks import ARCHITECTURES, AUGMENTATIONS, build_model
from .paths import DEFAULT_CACHE_DIR, DEFAULT_DATA, MODELS_DIR, PLOTS_DIR
from .report import classification_summary, plot_confusion, plot_history

SCHEDULES = ("plateau", "cosine")
OPTIMIZERS = ("adam", "adamw", "sgd")

# Named recipes for train_cnn.py --preset; explicit flags override them. "fast": the
# time-to-accuracy recipe (benchmarks/time_to_accuracy.py), >= 0.65 PrivateTest in under 45 minutes
# on 2 CPU cores: the VGG variant at batch 128 in bf16 (2x the images/s of batch 64 float32) and
# one cosine cycle with a short warm-up, so the run ends at a low learning rate instead of on a
# plateau; the test is read with 12-view crop TTA (chosen on PublicTest: +1.8 points over one pass
# for a 30-epoch run, 20 s). "strong": the long recipe behind the shipped model's successor.
PRESETS = {
    "fast": dict(
        arch="vgg",
        epochs=36,
        batch_size=128,
        lr=2e-3,
        optimizer="adamw",
        weight_decay=0.05,
        schedule="cosine",
        warmup_epochs=2,
        label_smoothing=0.1,
        augment="light",
        mixed_precision=True,
        tta="crops",
    ),
}
PRESETS["strong"] = {
    **PRESETS["fast"],
    "epochs": 120,
    "warmup_epochs": 3,
    "augment": "strong",
    "mixup": 0.2,
    "tta": False,
}
# "wide": the published 0.72-0.73 recipe's shape (a VGG trunk 48-384 wide on random 40x40 crops,
# SGD with Nesterov momentum, weight decay, random erasing in the strong augmentation), with a
# cosine schedule that ends at a low learning rate after the epochs there is time for: 40 epochs
# are ~2 h on 2 CPU cores in bf16; on a GPU give --epochs 200-300 (the papers' length).
PRESETS["wide"] = dict(
    arch="wide",
    width=48,
    epochs=40,
    batch_size=128,
    lr=0.02,
    optimizer="sgd",
    weight_decay=5e-4,
    schedule="cosine",
    warmup_epochs=2,
    label_smoothing=0.1,
    augment="strong",
    mixed_precision=True,
    tta="crops",
)


@dataclass
class TrainConfig:
    """Everything one training run depends on; these defaults are the seed recipe's."""

    data: str | Path = DEFAULT_DATA
    name: str = "fer_cnn"
    arch: str = "seed"
    width: int = 48  # first-stage channels of --arch wide
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "plateau"
    warmup_epochs: int = 0
    init_from: Path | None = None
    lr_factor: float = 0.2
    lr_patience: int = 3
    min_lr: float = 1e-6
    label_smoothing: float = 0.0
    augment: bool | str = False
    mixup: float = 0.0
    class_weights: bool = False
    teacher: list[Path] | None = None  # saved models whose (averaged, TTA) outputs the student learns
    teacher_tta: bool | str = "crops"
    distill: float = 0.5  # weight of the teacher's probabilities in the targets (the rest: true labels)
    tta: bool | str = False  # test-time augmentation of the final evaluation: False, True / "flip", "crops"
    limit: int | None = None
    val_fraction: float = 0.1
    seed: int = 0
    mixed_precision: bool = False
    distribute: bool = False  # data-parallel over all visible devices (ferkit.distribute)
    cpu_devices: int = 0  # present the CPU as this many devices (to try --distribute without GPUs)
    stream: bool = False  # read training faces from the on-disk cache per batch (datasets beyond RAM)
    fresh: bool = False
    checkpoint_dir: Path | None = None
    models_dir: Path = MODELS_DIR
    plots_dir: Path = PLOTS_DIR
    cache_dir: Path | None = DEFAULT_CACHE_DIR

    def validate(self) -> None:
        """Raise ``ParameterError`` for the first setting out of range."""
        checks = [
            ("arch", self.arch in ARCHITECTURES, f"must be one of {', '.join(ARCHITECTURES)}"),
            ("schedule", self.schedule in SCHEDULES, f"must be one of {', '.join(SCHEDULES)}"),
            ("optimizer", self.optimizer in OPTIMIZERS, f"must be one of {', '.join(OPTIMIZERS)}"),
            ("augment", self.augment in (False, True, *AUGMENTATIONS), f"must be one of {', '.join(AUGMENTATIONS)}"),
            ("weight_decay", 0 <= self.weight_decay < 1, "must be in [0, 1)"),
            ("mixup", 0 <= self.mixup <= 1, "must be in [0, 1] (the Beta distribution's alpha; 0 = off)"),
            ("width", 8 <= self.width <= 128, "must be between 8 and 128 channels"),
            ("epochs", self.epochs >= 1, "must be at least 1"),
            ("batch_size", self.batch_size >= 1, "must be at least 1"),
            ("lr_patience", self.lr_patience >= 1, "must be at least 1"),
            ("lr", self.lr > 0, "must be positive"),
            ("lr_factor", 0 < self.lr_factor < 1, "must be between 0 and 1"),
            ("min_lr", self.min_lr >= 0, "must be at least 0"),
            (
                "limit",
                self.limit is None or self.limit >= len(CLASS_NAMES),
                f"must be at least {len(CLASS_NAMES)} (one image per class)",
            ),
            ("label_smoothing", 0 <= self.label_smoothing < 1, "must be in [0, 1)"),
            ("tta", self.tta in (False, True, *TTA_MODES), f"must be one of {', '.join(TTA_MODES)}"),
            (
                "teacher_tta",
                self.teacher_tta in (False, True, *TTA_MODES),
                f"must be one of {', '.join(TTA_MODES)}, or False (none)",
            ),
            ("distill", 0 < self.distill <= 1, "must be in (0, 1] (the teachers' share of the targets)"),
            (
                "teacher",
                bool(self.teacher)
                or (self.distill, self.teacher_tta) == (TrainConfig.distill, TrainConfig.teacher_tta),
                "must be given with --distill or --teacher-tta (the models to distil from)",
            ),
            (
                "warmup_epochs",
                0 <= self.warmup_epochs < self.epochs and (self.warmup_epochs == 0 or self.schedule == "cosine"),
                "must be at least 0, fewer than the epochs, and used with the cosine schedule",
            ),
            ("cpu_devices", 0 <= self.cpu_devices <= 64, "must be between 0 (off) and 64"),
            ("val_fraction", 0 < self.val_fraction < 1, "must be between 0 and 1"),
        ]
        for param, ok, problem in checks:
            if not ok:
                raise ParameterError(param, problem)

    def settings(self) -> dict:
        """The settings as plain JSON types (paths as strings), as saved in checkpoints and metrics."""

        def plain(value):
            if isinstance(value, (list, tuple)):
                return [plain(v) for v in value]
            return str(value) if isinstance(value, Path) else value

        return {k: plain(v) for k, v in dataclasses.asdict(self).items()}


# The settings that must match for a checkpoint to be resumed.
RESUME_KEYS = (
    "arch",
    "width",
    "data",
    "batch_size",
    "lr",
    "optimizer",
    "weight_decay",
    "schedule",
    "warmup_epochs",
    "init_from",
    "augment",
    "class_weights",
    "limit",
    "seed",
    "label_smoothing",
    "mixup",
    "val_fraction",
    "teacher",
    "teacher_tta",
    "distill",
)


def seed_states(model) -> list:
    """The random-number states of the model's layers (dropout masks, augmentation). Keras does
    not save them in a .keras file, so a resumed run would draw other masks without them."""
    return [v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")]


def epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0] % (2**31 - 1))


class EpochBatches(keras.utils.PyDataset):
    """Training batches in an order that depends only on (seed, epoch), so a run resumed at
    epoch k sees exactly the batches the uninterrupted run saw. Per-sample weights carry the
    class weights. With ``mixup`` > 0 each face is blended with another of its batch, weight
    lambda ~ Beta(mixup, mixup) (kept >= 0.5 so the face stays the main one), labels likewise;
    the draws also depend only on (seed, epoch, batch). ``x`` holds uint8 faces (an array or rows
    read from disk), converted a batch at a time. ``full_batches_only`` drops each epoch's last
    partial batch, for devices that split every batch evenly. ``shard`` = (i, n): this host's
    share of each global batch in a run over n hosts (rows i, i + n, ...)."""

    def __init__(
        self,
        x,
        y,
        batch_size: int,
        seed: int,
        sample_weight=None,
        mixup: float = 0.0,
        full_batches_only=False,
        shard=(0, 1),
    ):
        super().__init__()
        self.x, self.y, self.batch_size, self.seed, self.sample_weight = x, y, batch_size, seed, sample_weight
        self.mixup, self.full_batches_only, self.shard = mixup, full_batches_only, shard
        self.epoch, self._order = 0, None

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self._order = epoch, None

    def __len__(self) -> int:
        if self.full_batches_only:
            return max(1, len(self.y) // self.batch_size)
        return -(-len(self.y) // self.batch_size)

    def __getitem__(self, index: int):
        if self._order is None:
            self._order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.y))
        rows = np.sort(self._order[index * self.batch_size : (index + 1) * self.batch_size])
        rows = rows[self.shard[0] :: self.shard[1]]
        x, y = to_model_input(np.asarray(self.x[rows])), self.y[rows]
        if self.mixup > 0:
            rng = np.random.default_rng([self.seed, self.epoch, index, 1])
            lam = rng.beta(self.mixup, self.mixup, len(rows)).astype(np.float32)
            lam = np.maximum(lam, 1 - lam)
            partner = rng.permutation(len(rows))
            x = lam[:, None, None, None] * x + (1 - lam[:, None, None, None]) * x[partner]
            y = lam[:, None] * y + (1 - lam[:, None]) * y[partner]
        if self.sample_weight is None:
            return x, y
        return x, y, self.sample_weight[rows]


class FaceBatches(keras.utils.PyDataset):
    """Faces in order, a batch at a time (validation). With ``multiple_of`` > 1 the last batch is
    padded to a multiple of it with zero-weight copies, which weighted metrics leave out (the
    loss, averaged over the batch, is lowered by at most (multiple_of - 1) / N). ``shard`` as in
    ``EpochBatches``."""

    def __init__(self, x, y, batch_size: int, multiple_of: int = 1, shard=(0, 1)):
        super().__init__()
        self.x, self.y, self.batch_size, self.multiple_of, self.shard = x, y, batch_size, multiple_of, shard

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def __getitem__(self, index: int):
        rows = np.arange(index * self.batch_size, min((index + 1) * self.batch_size, len(self.y)))
        rows = rows[self.shard[0] :: self.shard[1]]
        x, y = to_model_input(np.asarray(self.x[rows])), self.y[rows]
        if self.multiple_of == 1:
            return x, y
        pad = -len(rows) % self.multiple_of
        weight = np.r_[np.ones(len(rows)), np.zeros(pad)].astype(np.float32)
        return np.concatenate([x, x[:1].repeat(pad, 0)]), np.concatenate([y, y[:1].repeat(pad, 0)]), weight


class EpochRandomness(keras.callbacks.Callback):
    """At each epoch's start: the batch order and the global random seed for that epoch."""

    def __init__(self, batches: EpochBatches, seed: int):
        super().__init__()
        self.batches, self.seed = batches, seed

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.set_epoch(epoch)
        keras.utils.set_random_seed(epoch_seed(self.seed, epoch))


class EpochCheckpoint(keras.callbacks.Callback):
    """After every epoch, atomically save the full training state: the model with its optimizer
    (a file per epoch, named in ``state.json``, so the two always agree even after a kill), the
    layers' random states, the history and the ReduceLROnPlateau counters; and the best model by
    validation accuracy."""

    def __init__(self, directory: Path, plateau, settings: dict, history: dict, best: float):
        super().__init__()
        self.directory, self.plateau, self.settings = directory, plateau, settings
        self.history_so_far, self.best = history, best

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        # Epoch length and end (Unix time), for accuracy-against-time curves.
        logs = {**(logs or {}), "seconds": time.time() - self.epoch_started, "ended_at": time.time()}
        for key, value in logs.items():
            self.history_so_far.setdefault(key, []).append(float(value))
        lr = keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)  # also a MirroredVariable
        self.history_so_far.setdefault("lr", []).append(float(lr))
        if logs.get("val_accuracy", -1) > self.best:
            self.best = float(logs["val_accuracy"])
            save_model(self.model, self.directory / "best.keras")
        model_file = f"epoch{epoch + 1:04d}.keras"
        save_model(self.model, self.directory / model_file)
        plateau = (
            None
            if self.plateau is None
            else {
                "wait": self.plateau.wait,
                "best": float(self.plateau.best),
                "cooldown_counter": self.plateau.cooldown_counter,
            }
        )
        state = {
            "epoch": epoch + 1,
            "model_file": model_file,
            "seed_states": [keras.ops.convert_to_numpy(v).tolist() for v in seed_states(self.model)],
            "best_val_accuracy": self.best,
            "history": self.history_so_far,
            "settings": self.settings,
            "plateau": plateau,
        }
        atomic_write_text(self.directory / "state.json", json.dumps(state))
        for old in self.directory.glob("epoch*.keras"):
            if old.name != model_file:
                old.unlink(missing_ok=True)


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
    if not state_file.exists():
        return None, None
    try:
        state = json.loads(state_file.read_text())
        model_file = directory / state.get("model_file", "last.keras")
    except (ValueError, OSError) as exc:
        raise CheckpointError(
            f"checkpoint {state_file} is damaged ({exc}); start over with train_cnn.py --fresh."
        ) from None
    if not model_file.exists():
        return None, None

    # A key an older checkpoint lacks had its default then; --augment alone was True before "light".
    def same(key):
        old, new = state["settings"].get(key, getattr(TrainConfig, key)), settings.get(key)
        return old == new or key == "augment" and {old, new} == {True, "light"}

    changed = [k for k in RESUME_KEYS if not same(k)]
    if changed:
        raise CheckpointError(
            f"checkpoint in {directory} was made with different settings ({', '.join(changed)}). "
            f"Rerun with the same settings to resume, or start over (train_cnn.py --fresh)."
        )
    try:
        model = keras.models.load_model(model_file)
    except Exception as exc:  # a file cut short by a full disk, say
        raise CheckpointError(
            f"checkpoint model {model_file} cannot be read ({type(exc).__name__}); start over with "
            f"train_cnn.py --fresh."
        ) from None
    states = seed_states(model)
    for variable, value in zip(states, state.get("seed_states", [])):
        variable.assign(np.asarray(value, dtype=variable.dtype))
    return model, state


def warm_start(model, path: Path) -> None:
    """Load the weights of the saved model at ``path`` into a freshly built ``model``."""
    source, _ = load_model(path)
    if source.name != model.name:
        raise ModelFileError(
            f"the model to start from ({path}) is {source.name!r} but this run builds {model.name!r}; "
            f"train with the architecture it was trained with ({source.name.removeprefix('fer_')})."
        )
    copy_weights(source, model)


def learning_rate_for(config: TrainConfig, steps_per_epoch: int):
    if config.schedule == "cosine":
        warmup = config.warmup_epochs * steps_per_epoch
        return keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else config.lr,
            decay_steps=config.epochs * steps_per_epoch - warmup,
            warmup_target=config.lr if warmup else None,
            warmup_steps=warmup,
        )
    return config.lr


def optimizer_for(config: TrainConfig, steps_per_epoch: int):
    """Adam (the seed's), AdamW (decoupled weight decay) or SGD with Nesterov momentum 0.9."""
    lr, decay = learning_rate_for(config, steps_per_epoch), config.weight_decay or None
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(lr, momentum=0.9, nesterov=True, weight_decay=decay)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(lr, weight_decay=config.weight_decay)
    return keras.optimizers.Adam(lr, weight_decay=decay)


def class_weight_for(y: np.ndarray, num_classes: int) -> dict[int, float]:
    counts = np.bincount(y, minlength=num_classes).astype(float)
    weights = len(y) / (num_classes * np.maximum(counts, 1))
    return {i: float(w) for i, w in enumerate(weights)}


def _fit(config: TrainConfig, data, train_split, plan: Plan):
    """Build or resume the model and run ``fit`` under ``plan``; returns (history, checkpoint
    folder, seconds)."""
    num_classes = len(data.class_names)
    if config.distribute:
        print(f"data parallel: {plan.description}, {config.batch_size // plan.replicas} faces each per step")
        if len(train_split) < config.batch_size:
            raise ParameterError(
                "batch_size",
                f"({config.batch_size}) must not exceed the {len(train_split)} training faces when distributed",
            )

    settings = config.settings()
    ckpt_dir = Path(config.checkpoint_dir or Path(config.models_dir) / "checkpoints" / config.name)
    if config.fresh and ckpt_dir.exists() and plan.writer:
        shutil.rmtree(ckpt_dir)
    one_hot = np.eye(num_classes, dtype=np.float32)
    weights = None
    if config.class_weights:
        per_class = class_weight_for(train_split.y, num_classes)
        weights = np.array([per_class[int(c)] for c in train_split.y], np.float32)
    batches = EpochBatches(
        train_split.x,
        one_hot[train_split.y],
        config.batch_size,
        config.seed,
        weights,
        config.mixup,
        full_batches_only=plan.replicas > 1,
        shard=plan.shard,
    )
    with plan.scope():  # the variables live on every device
        model, state = load_checkpoint(ckpt_dir, settings)
        if model is None:
            model = build_model(
                num_classes, augment=config.augment, arch=config.arch, sync_bn=plan.sync_bn, width=config.width
            )
            if config.init_from:
                warm_start(model, Path(config.init_from))
            # Distributed validation pads its last batch with zero-weight faces; only weighted
            # metrics leave them out (plain ones ignore sample weights).
            accuracy_metric = {"metrics" if plan.replicas == 1 else "weighted_metrics": ["accuracy"]}
            model.compile(
                optimizer=optimizer_for(config, len(batches)),
                loss=keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing),
                **accuracy_metric,
            )
            state = {"epoch": 0, "best_val_accuracy": -1.0, "history": {}, "plateau": None}
        else:
            print(f"resuming from {ckpt_dir} after epoch {state['epoch']} of {config.epochs}")
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    if config.teacher:  # after the settings check, so a refused resume does not read the teachers first
        with plan.local():
            soft = cached_teacher_probabilities(
                ckpt_dir / "teacher.npz",
                config.teacher,
                train_split.x,
                train_split.y,
                data.class_names,
                config.teacher_tta,
                resuming=state["epoch"] > 0,
                write=plan.writer,
            )
        batches.y = blend_targets(batches.y, soft, config.distill)
        agree = float(np.mean(soft.argmax(1) == train_split.y))
        print(f"distillation: the teachers agree with {agree:.3f} of the labels; targets {config.distill:g} theirs")

    plateau, restore = None, []
    if config.schedule == "plateau":
        plateau = keras.callbacks.ReduceLROnPlateau(
            monitor="val_loss",
            factor=config.lr_factor,
            patience=config.lr_patience,
            min_delta=1e-4,
            min_lr=config.min_lr,
            verbose=1,
        )
        restore = [RestorePlateau(plateau, state["plateau"])] if state["plateau"] else []
    history = state["history"]
    checkpoint = EpochCheckpoint(ckpt_dir, plateau, settings, history, state["best_val_accuracy"])
    validation = FaceBatches(data.val.x, one_hot[data.val.y], max(config.batch_size, 256), plan.replicas, plan.shard)
    started = time.time()
    try:
        if state["epoch"] < config.epochs:
            model.fit(
                batches,
                validation_data=validation,
                epochs=config.epochs,
                initial_epoch=state["epoch"],
                callbacks=[
                    c
                    for c in (EpochRandomness(batches, config.seed), plateau, *restore, plan.writer and checkpoint)
                    if c
                ],
                verbose=1 if sys.stdout.isatty() else 2,
            )
    except KeyboardInterrupt:
        raise Interrupted(
            f"interrupted; the last finished epoch is saved in {ckpt_dir}. Run the same command to resume."
        ) from None
    return history, ckpt_dir, time.time() - started


def train(config: TrainConfig) -> dict:
    """Train (or resume) one run and write its outputs; returns the metrics, with the paths of
    what was written under ``"outputs"``. Raises ``Interrupted`` on Ctrl-C after saving."""
    config.validate()
    if config.cpu_devices:
        split_cpu(config.cpu_devices)
    keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    data = load_dataset(
        config.data,
        val_fraction=config.val_fraction,
        seed=config.seed,
        cache_dir=config.cache_dir,
        stream=config.stream,
    )
    train_split = data.train
    if config.limit:
        train_split = train_split.subset(stratified_subset(train_split.y, config.limit, seed=config.seed))
    print(
        f"data: {data.source} ({data.layout}); train {len(train_split)}, validation "
        f"{len(data.val)}, test {len(data.test)}; {data.val_note}"
        + ("; faces read from disk per batch" if config.stream else "")
    )
    plan = data_parallel(config.batch_size) if config.distribute else Plan()
    try:
        history, ckpt_dir, train_seconds = _fit(config, data, train_split, plan)
    finally:
        plan.close()  # evaluation below runs on one device
    if not plan.writer:
        return {"outputs": {}, "writer": False}

    best_model = keras.models.load_model(ckpt_dir / "best.keras")
    final = inference_copy(best_model)
    tta = tta_options(config.tta)
    proba = predict_proba(final, data.test.x, **tta)
    summary = classification_summary(data.test.y, proba.argmax(1), data.class_names)
    val_accuracy = accuracy(final, data.val, **tta)

    models_dir, plots_dir = Path(config.models_dir), Path(config.plots_dir)
    model_path = save_model(final, models_dir / f"{config.name}.keras", data.class_names)
    plots = [
        plot_history(history, "loss", plots_dir / f"{config.name}_loss.png", "Loss"),
        plot_history(history, "accuracy", plots_dir / f"{config.name}_accuracy.png", "Accuracy"),
        plot_confusion(
            summary["confusion_matrix"],
            data.class_names,
            plots_dir / f"{config.name}_confusion.png",
            f"Test confusion (accuracy {summary['accuracy']:.3f})",
        ),
    ]
    metrics = {
        "test_accuracy": summary["accuracy"],
        "test_macro_f1": summary["macro_f1"],
        "validation_accuracy": val_accuracy,
        "per_class": summary["per_class"],
        "confusion_matrix": summary["confusion_matrix"],
        "class_names": list(data.class_names),
        "history": history,
        "epochs_trained": len(history.get("loss", [])),
        "train_seconds_this_run": round(train_seconds, 1),
        "data": {
            "source": data.source,
            "layout": data.layout,
            "train": len(train_split),
            "validation": len(data.val),
            "test": len(data.test),
            "validation_note": data.val_note,
        },
        "settings": config.settings(),
        "tta": config.tta,
    }
    metrics_path = models_dir / f"{config.name}_metrics.json"
    atomic_write_text(metrics_path, json.dumps(metrics, indent=1))
    shutil.rmtree(ckpt_dir)  # finished: the next run of this command starts afresh
    return {**metrics, "outputs": {"model": model_path, "metrics": metrics_path, "plots": plots}}
