"""A training run: build or resume the model, fit it under a device plan with per-epoch
checkpoints, then evaluate the best epoch and write the outputs (model, metrics, curves,
confusion matrix). The settings live in ``trainconfig``, the batches in ``batches``, the
checkpoints in ``checkpoint``; their names are re-exported here for callers of this module."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import keras
import numpy as np

from .atomic import atomic_write_text
from .batchaug import BatchAugmenter
from .batches import EpochBatches, EpochRandomness, ExactValidationLoss, FaceBatches, epoch_seed
from .checkpoint import CheckpointFolder, EpochCheckpoint, RestorePlateau, load_checkpoint, saved_epoch, seed_states
from .classify import accuracy, predict_proba, tta_options
from .data import load_dataset
from .distill import blend_targets, cached_teacher_probabilities
from .distribute import Plan, data_parallel, lost_peer, split_cpu
from .errors import Interrupted, ModelFileError, ParameterError, PeerLost, TrainingDiverged
from .modelfile import copy_weights, inference_copy, load_model, save_model
from .networks import build_model, start_model_mismatch
from .paths import portable
from .precision import choose_precision
from .provenance import training_record
from .report import classification_summary, plot_confusion, plot_history
from .splits import SPLIT_RULE, stratified_subset
from .trainconfig import OPTIMIZERS, PRESETS, RESUME_KEYS, SCHEDULES, TrainConfig
from .weightavg import RunningAverage, averaged_model

__all__ = [
    "OPTIMIZERS",
    "PRESETS",
    "RESUME_KEYS",
    "SCHEDULES",
    "CheckpointFolder",
    "EpochBatches",
    "EpochCheckpoint",
    "EpochRandomness",
    "FaceBatches",
    "RestorePlateau",
    "TrainConfig",
    "epoch_seed",
    "load_checkpoint",
    "seed_states",
    "train",
]


def warm_start(model, path: Path) -> None:
    """Load the weights of the saved model at ``path`` into a freshly built ``model``."""
    source, _ = load_model(path)
    mismatch = start_model_mismatch(path, source.name, model.name)
    if mismatch:
        raise ModelFileError(mismatch)
    if source.output_shape[-1] != model.output_shape[-1]:
        raise ModelFileError(
            f"the model to start from ({path}) gives {source.output_shape[-1]} classes but this data has "
            f"{model.output_shape[-1]}; start from a model trained on these classes, or leave --init-from out."
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


class StopOnNaN(keras.callbacks.Callback):
    """A loss that is no longer a number (a learning rate far too high) stops the run with one
    clear error before the epoch's checkpoint, so no NaN model is ever saved."""

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(loss):
            raise TrainingDiverged(
                f"the training loss became {loss} (batch {batch + 1}); the learning rate is too high for this "
                f"model: lower --lr (the last good epoch's checkpoint is kept; add --fresh to start over)"
            )


class LinearWarmUp(keras.callbacks.Callback):
    """--warmup-epochs under the plateau schedule: the learning rate climbs linearly to --lr over
    the first ``steps`` steps, after which only ReduceLROnPlateau moves it: the usual guard for
    SGD at a large rate on freshly initialised weights, and the same start as the cosine schedule's
    warm-up, so the two schedules differ only after it. The steps are counted from the optimizer's
    own counter, so a run resumed inside the warm-up carries on where it stopped."""

    def __init__(self, target: float, steps: int):
        super().__init__()
        self.target, self.steps, self.step = target, steps, 0

    def on_train_begin(self, logs=None):
        self.step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def on_train_batch_begin(self, batch, logs=None):
        if self.step < self.steps:
            self.model.optimizer.learning_rate = self.target * (self.step + 1) / self.steps
        self.step += 1


class TimeBudget(keras.callbacks.Callback):
    """--max-minutes: stop after the epoch past which another epoch as long as it would not fit
    in the budget (always after at least one epoch). ``stopped_after`` is that epoch, or None."""

    def __init__(self, minutes: float):
        super().__init__()
        self.seconds, self.stopped_after = minutes * 60, None

    def on_train_begin(self, logs=None):
        self.started = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        now = time.time()
        if now - self.started + (now - self.epoch_started) > self.seconds:
            self.model.stop_training, self.stopped_after = True, epoch + 1


def _fit(config: TrainConfig, data, train_split, plan: Plan, folder: CheckpointFolder):
    """Build or resume the model and run ``fit`` under ``plan``; returns (history, seconds, the
    weight average or None, the epoch a time limit stopped it after or None, the training record
    its models carry)."""
    num_classes = len(data.class_names)
    if config.max_minutes and plan.shard[1] > 1:
        raise ParameterError(
            "max_minutes",
            "cannot stop a several-process run (each process's clock would stop it at another epoch); give --epochs",
        )
    if config.distribute:
        print(f"data parallel: {plan.description}, {config.batch_size // plan.replicas} faces each per step")
        if len(train_split) < config.batch_size:
            raise ParameterError(
                "batch_size",
                f"({config.batch_size}) must not exceed the {len(train_split)} training faces when distributed",
            )

    settings = config.settings()
    if data.test_drawn or data.val_drawn:
        # Recorded so that a checkpoint made when another rule (or --seed, long ago) drew the
        # splits is not resumed onto other held-out faces.
        settings["split_rule"] = SPLIT_RULE
    ckpt_dir = folder.path
    one_hot = np.eye(num_classes, dtype=np.float32)
    weights = None
    if config.class_weights:
        per_class = class_weight_for(train_split.y, num_classes)
        weights = np.array([per_class[int(c)] for c in train_split.y], np.float32)
    # --augment-in batches: the network holds no augmentation layers; each batch is augmented first.
    in_batches = bool(config.augment) and config.augment_in == "batches"
    augment = False if in_batches else config.augment
    if config.repeats > 1:
        print(
            f"repeats: each face {config.repeats} times a step, each copy augmented on its own "
            f"({config.batch_size * config.repeats} faces a step, {config.repeats}x the work of an epoch)"
        )
    batches = EpochBatches(
        train_split.x,
        one_hot[train_split.y],
        config.batch_size,
        config.seed,
        weights,
        config.mixup,
        full_batches_only=plan.replicas > 1,
        shard=plan.shard,
        repeats=config.repeats,
    )
    with plan.scope():  # the variables live on every device
        model, state = load_checkpoint(ckpt_dir, settings)
        if model is None:
            model = build_model(
                num_classes, augment=augment, arch=config.arch, sync_bn=plan.sync_bn, width=config.width
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
    if in_batches:  # built after the network, whose first weights then follow --seed as without it
        batches.transform = BatchAugmenter("light" if config.augment is True else config.augment, config.seed)
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

    plateau, restore, warmup = None, [], None
    if config.schedule == "plateau":
        plateau = keras.callbacks.ReduceLROnPlateau(
            monitor=f"val_{config.plateau_on}",
            mode="max" if config.plateau_on == "accuracy" else "min",
            factor=config.lr_factor,
            patience=config.lr_patience,
            min_delta=1e-4,
            min_lr=config.min_lr,
            verbose=1,
        )
        restore = [RestorePlateau(plateau, state["plateau"])] if state["plateau"] else []
        if config.warmup_epochs:  # (the cosine schedule has its own warm-up)
            warmup = LinearWarmUp(config.lr, config.warmup_epochs * len(batches))
    history = state["history"]
    average = None
    if config.swa_epochs:
        average = RunningAverage(ckpt_dir, config.epochs - config.swa_epochs + 1, state.get("swa"))
        if average.restarted:
            print(f"weight average: --epochs moved its window; it starts again at epoch {average.first_epoch}")
    # What every model this run saves records of its data (checkpoints and the final files alike);
    # read after the start model and the teachers loaded, whose damaged files have clear errors there.
    record = training_record(data, train_split, config.val_fraction, config.init_from, config.teacher or ())
    checkpoint = EpochCheckpoint(
        ckpt_dir, plateau, settings, history, state["best_val_accuracy"], plan.local, average, record
    )
    validation = FaceBatches(data.val.x, one_hot[data.val.y], max(config.batch_size, 256), plan.replicas, plan.shard)
    budget = TimeBudget(config.max_minutes) if config.max_minutes else None
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
                    for c in (
                        ExactValidationLoss(validation),
                        StopOnNaN(),
                        EpochRandomness(batches, config.seed),
                        plateau,
                        *restore,
                        warmup,
                        plan.writer and checkpoint,
                        budget,
                    )
                    if c
                ],
                verbose=1 if sys.stdout.isatty() else 2,
            )
    except KeyboardInterrupt:
        saved = saved_epoch(ckpt_dir)
        raise Interrupted(
            f"interrupted; epoch {saved}, the last finished, is saved in {ckpt_dir}. Run the same command to resume."
            if saved
            else "interrupted before the first epoch ended, so nothing was saved; run the same command to start again."
        ) from None
    except Exception as exc:
        reason = lost_peer(exc, plan)
        if reason is None:
            raise
        saved = saved_epoch(ckpt_dir)
        where = f"Epoch {saved} is saved" if saved else "No epoch was saved yet"
        raise PeerLost(
            f"another process of this {plan.shard[1]}-process run stopped ({reason}); this one ({plan.shard[0]}) "
            f"stops too. {where} in {ckpt_dir}: start every process again with the same commands to resume"
        ) from None
    stopped = budget.stopped_after if budget and budget.stopped_after != config.epochs else None
    if stopped:
        print(f"time limit: stopped after epoch {stopped} of {config.epochs} ({config.max_minutes:g} minutes)")
    return history, time.time() - started, average, stopped, record


# The settings that are paths: shown in the metrics file as anyone can read them (paths.portable).
_PATH_SETTINGS = ("data", "init_from", "teacher", "checkpoint_dir", "models_dir", "plots_dir", "cache_dir")


def _portable_settings(settings: dict) -> dict:
    def shown(value):
        if value is None:
            return None
        return [portable(v) for v in value] if isinstance(value, list) else portable(value)

    return {k: shown(v) if k in _PATH_SETTINGS else v for k, v in settings.items()}


def train(config: TrainConfig) -> dict:
    """Train (or resume) one run and write its outputs; returns the metrics, with the paths of
    what was written under ``"outputs"``. Raises ``Interrupted`` on Ctrl-C after saving."""
    config.validate()
    if config.cpu_devices:
        split_cpu(config.cpu_devices)
    keras.utils.set_random_seed(config.seed)
    config.mixed_precision, line = choose_precision(config.mixed_precision)
    print(line)
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    data = load_dataset(
        config.data,
        # Where the data names no splits (a folder of class folders) they follow from the faces
        # alone, not --seed: evaluate.py, ensemble.py and export.py find the same held-out faces,
        # so a run with --seed 7 is not scored later on faces it trained on (--seed varies the
        # weights, the augmentation and the batches).
        val_fraction=config.val_fraction,
        cache_dir=config.cache_dir,
        stream=config.stream,
        need_test=False,
    )
    train_split = data.train
    if config.limit and config.limit >= len(train_split):
        print(f"note: --limit {config.limit} is not below the {len(train_split)} training faces; all of them are used")
    elif config.limit:
        train_split = train_split.subset(stratified_subset(train_split.y, config.limit, seed=config.seed))
    print(
        f"data: {data.source} ({data.layout}); train {len(train_split)}, validation "
        f"{len(data.val)}, test {len(data.test)}; {data.val_note}"
        + (f"; {data.test_note}" if data.test_drawn else "")
        + ("; faces read from disk per batch" if config.stream else "")
    )
    # The network always has an output for each of the seven classes; one without training faces
    # is never learnt (and a class missing from validation or test is never measured): say which.
    for split_name, split in (("training", train_split), ("validation", data.val), ("test", data.test)):
        if len(split) or split_name == "training":
            counts = np.bincount(split.y, minlength=len(data.class_names))
            missing = [data.class_names[i] for i in np.flatnonzero(counts == 0)]
            if missing:
                print(f"warning: no {split_name} faces of {', '.join(missing)}", file=sys.stderr)
    plan = data_parallel(config.batch_size) if config.distribute else Plan()
    folder = CheckpointFolder(config.checkpoint_path())
    try:
        if plan.writer:  # checked and locked before any work; other hosts only read it
            folder.open()
            if config.fresh:
                folder.clear()
        try:
            history, train_seconds, average, stopped, record = _fit(config, data, train_split, plan, folder)
        finally:
            plan.close()  # evaluation below runs on one device
        if not plan.writer:
            return {"outputs": {}, "writer": False}
        return _finish(config, data, train_split, record, history, train_seconds, folder, average, stopped)
    finally:
        folder.release()


def _weight_average(config: TrainConfig, data, train_split, record: dict, best_model, average, tta: dict):
    """The averaged weights (--swa-epochs) as a model: BatchNorm statistics measured on the training
    faces, scored on validation only (the split to choose between it and the best epoch on)."""
    model, _ = averaged_model(best_model, average.weights, train_split.x)
    final = inference_copy(model)
    path = save_model(
        final,
        Path(config.models_dir) / f"{config.name}_swa.keras",
        data.class_names,
        training=record,
    )
    last = average.first_epoch + average.count - 1
    return path, {"epochs": [average.first_epoch, last], "validation_accuracy": accuracy(final, data.val, **tta)}


def _finish(
    config: TrainConfig,
    data,
    train_split,
    record: dict,
    history: dict,
    train_seconds: float,
    folder: CheckpointFolder,
    average=None,
    stopped: int | None = None,
):
    """Evaluate the best epoch's model on the test split and write the run's outputs (and the
    weight average's model, scored on validation, with --swa-epochs). A run a time limit
    ``stopped`` keeps its checkpoints, so the same command trains on."""
    ckpt_dir = folder.path

    best_model = keras.models.load_model(ckpt_dir / "best.keras")
    final = inference_copy(best_model)
    tta = tta_options(config.tta)
    val_accuracy = accuracy(final, data.val, **tta)

    models_dir, plots_dir = Path(config.models_dir), Path(config.plots_dir)
    model_path = save_model(
        final,
        models_dir / f"{config.name}.keras",
        data.class_names,
        training=record,
    )
    plots = [
        plot_history(history, "loss", plots_dir / f"{config.name}_loss.png", "Loss"),
        plot_history(history, "accuracy", plots_dir / f"{config.name}_accuracy.png", "Accuracy"),
    ]
    # No test split (an .npz carried to a GPU without its test faces): the model is scored on the
    # test faces later, where they are, with evaluate.py.
    summary = {"accuracy": None, "macro_f1": None, "macro_f1_classes": [], "per_class": {}, "confusion_matrix": None}
    if len(data.test):
        proba = predict_proba(final, data.test.x, **tta)
        summary = classification_summary(data.test.y, proba.argmax(1), data.class_names)
        plots.append(
            plot_confusion(
                summary["confusion_matrix"],
                data.class_names,
                plots_dir / f"{config.name}_confusion.png",
                f"Test confusion (accuracy {summary['accuracy']:.3f})",
            )
        )
    metrics = {
        "test_accuracy": summary["accuracy"],
        "test_macro_f1": summary["macro_f1"],
        "test_macro_f1_classes": summary["macro_f1_classes"],  # the classes it averages over
        "validation_accuracy": val_accuracy,
        "per_class": summary["per_class"],
        "confusion_matrix": summary["confusion_matrix"],
        "class_names": list(data.class_names),
        "history": history,
        "epochs_trained": len(history.get("loss", [])),
        "train_seconds_this_run": round(train_seconds, 1),
        "data": {
            "source": portable(data.source),
            "layout": data.layout,
            "train": len(train_split),
            "validation": len(data.val),
            "test": len(data.test),
            "validation_note": data.val_note,
        },
        "settings": _portable_settings(config.settings()),
        "tta": config.tta,
    }
    if stopped:
        metrics["stopped_after_epoch"] = stopped
    outputs = {"model": model_path}
    if average is not None and average.count:
        outputs["swa_model"], metrics["swa"] = _weight_average(
            config, data, train_split, record, best_model, average, tta
        )
    metrics_path = models_dir / f"{config.name}_metrics.json"
    atomic_write_text(metrics_path, json.dumps(metrics, indent=1))
    if not stopped:
        folder.remove()  # finished: the next run of this command starts afresh
    return {**metrics, "outputs": {**outputs, "metrics": metrics_path, "plots": plots}}
