"""The settings of a training run: ``TrainConfig`` (whose defaults are ``train_cnn.py``'s and the
seed recipe's), the named recipes behind ``--preset``, and which settings a resumed run must
share with its checkpoint. No Keras here, so ``train_cnn.py --help`` answers at once."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

from .classify import TTA_MODES
from .errors import ParameterError
from .faces import CLASS_NAMES
from .networks import ARCHITECTURES, AUGMENTATIONS
from .paths import DEFAULT_CACHE_DIR, DEFAULT_DATA, MODELS_DIR, PLOTS_DIR

SCHEDULES = ("plateau", "cosine")
# What the plateau schedule watches on the validation split: its loss, or its accuracy (the
# published 0.73 recipe, Khaireddin & Chen 2021, decays when validation accuracy stalls).
PLATEAU_MONITORS = ("loss", "accuracy")
OPTIMIZERS = ("adam", "adamw", "sgd")
# Where the augmentation runs: as layers inside the model's training step, or on each batch before it
# (ferkit.batchaug: for accelerators where the step with the layers inside is slow).
AUGMENT_IN = ("model", "batches")

# Named recipes for train_cnn.py --preset; explicit flags override them. "fast": the
# time-to-accuracy recipe (benchmarks/time_to_accuracy.py), >= 0.65 PrivateTest in under 45 minutes
# on 2 CPU cores with AVX-512 BF16: the VGG variant at batch 128 in bf16 (2x the images/s of batch
# 64 float32 there; ``mixed_precision="auto"`` keeps float32 where bf16 would be emulated) and
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
        mixed_precision="auto",
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
# (2.5-3.5 min each on 2 CPU cores with AVX-512 BF16, in bf16; 9-10 min on 2 AVX2-only cores in
# float32) fit one session there; on a GPU give --epochs 200-300.
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
    mixed_precision="auto",
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
    plateau_on: str = "loss"  # the validation figure ReduceLROnPlateau watches (PLATEAU_MONITORS)
    lr_factor: float = 0.2
    lr_patience: int = 3
    min_lr: float = 1e-6
    label_smoothing: float = 0.0
    augment: bool | str = False
    augment_in: str = "model"  # AUGMENT_IN: layers inside the model's step, or each batch before it (batchaug)
    mixup: float = 0.0
    repeats: int = 1  # each face this many times in its batch, each copy augmented on its own (batch augmentation)
    class_weights: bool = False
    teacher: list[Path] | None = None  # saved models whose (averaged, TTA) outputs the student learns
    teacher_tta: bool | str = "crops"
    distill: float = 0.5  # weight of the teacher's probabilities in the targets (the rest: true labels)
    swa_epochs: int = 0  # average the weights of the last N epochs into NAME_swa.keras (0 = off)
    max_minutes: float = 0.0  # stop after the last epoch that fits in this many minutes of training (0 = off)
    tta: bool | str = False  # test-time augmentation of the final evaluation: False, True / "flip", "crops"
    limit: int | None = None
    val_fraction: float = 0.1
    seed: int = 0
    mixed_precision: bool | str = False  # True, False or "auto": bf16 where native (ferkit.precision)
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
        for name in (
            "lr",
            "min_lr",
            "weight_decay",
            "label_smoothing",
            "mixup",
            "distill",
            "val_fraction",
            "lr_factor",
            "max_minutes",
        ):
            if not math.isfinite(getattr(self, name)):
                raise ParameterError(name, "must be a finite number")
        if not 0 <= self.seed < 2**32:
            raise ParameterError("seed", "must be between 0 and 4294967295 (NumPy's seed range)")
        checks = [
            ("arch", self.arch in ARCHITECTURES, f"must be one of {', '.join(ARCHITECTURES)}"),
            ("schedule", self.schedule in SCHEDULES, f"must be one of {', '.join(SCHEDULES)}"),
            ("plateau_on", self.plateau_on in PLATEAU_MONITORS, f"must be one of {', '.join(PLATEAU_MONITORS)}"),
            ("optimizer", self.optimizer in OPTIMIZERS, f"must be one of {', '.join(OPTIMIZERS)}"),
            ("augment", self.augment in (False, True, *AUGMENTATIONS), f"must be one of {', '.join(AUGMENTATIONS)}"),
            ("augment_in", self.augment_in in AUGMENT_IN, f"must be one of {', '.join(AUGMENT_IN)}"),
            ("weight_decay", 0 <= self.weight_decay < 1, "must be in [0, 1)"),
            ("mixup", 0 <= self.mixup <= 1, "must be in [0, 1] (the Beta distribution's alpha; 0 = off)"),
            ("repeats", 1 <= self.repeats <= 16, "must be between 1 (each face once a step) and 16"),
            (
                "repeats",
                self.repeats == 1 or bool(self.augment),
                "above 1 needs --augment (light or strong): without it the copies of a face are the same",
            ),
            ("width", 8 <= self.width <= 128, "must be between 8 and 128 channels"),
            ("epochs", self.epochs >= 1, "must be at least 1"),
            ("swa_epochs", 0 <= self.swa_epochs <= self.epochs, "must be between 0 (off) and --epochs"),
            ("max_minutes", self.max_minutes >= 0, "must be at least 0 (0 = no time limit)"),
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
                "mixed_precision",
                self.mixed_precision in (False, True, "auto"),
                'must be True, False or "auto" (bf16 where the hardware computes it natively)',
            ),
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
                0 <= self.warmup_epochs < self.epochs,
                "must be at least 0 and fewer than the epochs",
            ),
            ("cpu_devices", 0 <= self.cpu_devices <= 64, "must be between 0 (off) and 64"),
            ("val_fraction", 0 < self.val_fraction < 1, "must be between 0 and 1"),
        ]
        for param, ok, problem in checks:
            if not ok:
                raise ParameterError(param, problem)

    def checkpoint_path(self) -> Path:
        """Where this run's checkpoints go: ``checkpoint_dir``, or models_dir/checkpoints/NAME."""
        return Path(self.checkpoint_dir or Path(self.models_dir) / "checkpoints" / self.name)

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
    "plateau_on",  # the saved plateau counters hold a best loss or a best accuracy
    "warmup_epochs",
    "init_from",
    "augment",
    "augment_in",  # the checkpoint's network holds the augmentation layers or not
    "class_weights",
    "limit",
    "seed",
    "label_smoothing",
    "mixup",
    "repeats",  # a step's faces and the schedule's noise
    "val_fraction",
    "teacher",
    "teacher_tta",
    "distill",
)
