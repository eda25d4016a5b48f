"""Train the four-block CNN on FER2013's seven expressions.

    python train_cnn.py --data data/fer2013 --name seed_cnn              # the full 30-epoch recipe
    python train_cnn.py --data data/fer2013 --limit 3000 --epochs 3 --name quick   # a quick run
    python train_cnn.py --data data/fer2013 --preset fast --name fast  # >= 0.65 in < 45 min (2 AVX-512 BF16 cores)

Trains on Training_, monitors PublicTest_ (validation), reports PrivateTest_ (test) once at the
end. A checkpoint is written atomically after every epoch; run the same command again after an
interruption to resume (``--fresh`` starts over). The model is saved as models/NAME.keras; without
``--name`` that is the shipped models/fer_cnn.keras, which a run replaces only with ``--overwrite``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ferkit import cli
from ferkit.checkpoint_folder import CheckpointFolder
from ferkit.classify import TTA_MODES
from ferkit.errors import CheckpointError, ParameterError
from ferkit.modelfile import saved_network_name
from ferkit.networks import ARCHITECTURES, AUGMENTATIONS, model_name, start_model_mismatch
from ferkit.report import format_report
from ferkit.trainconfig import AUGMENT_IN, OPTIMIZERS, PLATEAU_MONITORS, PRESETS, SCHEDULES, TrainConfig

D = TrainConfig  # the defaults, defined once in the package


def parse_args(argv=None) -> TrainConfig:
    p = cli.parser(__doc__)
    cli.add_common(p, "data")
    p.add_argument("--name", default=D.name, help="output name: models/NAME.keras, plots/NAME_*.png")
    p.add_argument(
        "--arch",
        choices=ARCHITECTURES,
        default=D.arch,
        help="seed: the original four-block CNN (default); vgg: compact VGG-style variant; wide: VGG trunk "
        "--width to 8x--width channels on 40x40 crops (the published 0.72-0.73 recipes' shape)",
    )
    p.add_argument(
        "--width",
        type=int,
        default=D.width,
        help="first-stage channels of --arch wide, 8-128 (the stages double it: 48 gives 48-384)",
    )
    p.add_argument("--epochs", type=int, default=D.epochs, help="passes over the training faces")
    p.add_argument("--batch-size", type=int, default=D.batch_size, help="faces per training step")
    p.add_argument(
        "--preset",
        choices=PRESETS,
        help="a named recipe (its settings become the defaults; flags you give override them): "
        + "; ".join(f"{name}: " + " ".join(f"{k}={v}" for k, v in preset.items()) for name, preset in PRESETS.items()),
    )
    p.add_argument("--lr", type=cli.finite_float, default=D.lr, help="(peak) learning rate")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=D.optimizer, help="sgd: Nesterov momentum 0.9")
    p.add_argument(
        "--weight-decay", type=cli.finite_float, default=D.weight_decay, help="decoupled weight decay (0 = off)"
    )
    p.add_argument(
        "--warmup-epochs",
        type=int,
        default=D.warmup_epochs,
        help="epochs of linear warm-up to --lr (before the cosine decay or the plateau schedule)",
    )
    p.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default=D.schedule,
        help="plateau: ReduceLROnPlateau on the validation figure of --plateau-on (default); cosine: "
        "decay from --lr to 0 over the run, per step",
    )
    p.add_argument(
        "--plateau-on",
        choices=PLATEAU_MONITORS,
        default=D.plateau_on,
        help="what the plateau schedule watches on the validation split: its loss, or its accuracy "
        "(the published 0.73 recipe)",
    )
    p.add_argument(
        "--init-from",
        type=Path,
        default=D.init_from,
        help="start from the weights of a saved model of the same --arch (a warm restart)",
    )
    p.add_argument("--lr-factor", type=cli.finite_float, default=D.lr_factor, help="ReduceLROnPlateau factor")
    p.add_argument("--lr-patience", type=int, default=D.lr_patience, help="ReduceLROnPlateau patience (epochs)")
    p.add_argument(
        "--min-lr", type=cli.finite_float, default=D.min_lr, help="the lowest rate the plateau schedule decays to"
    )
    p.add_argument(
        "--label-smoothing",
        type=cli.finite_float,
        default=D.label_smoothing,
        help="share of each target spread evenly over all classes (0 = off)",
    )
    p.add_argument(
        "--augment",
        nargs="?",
        const="light",
        choices=(*AUGMENTATIONS, "none"),
        default=D.augment,
        help="light (the flag alone): random flip/shift/rotate/zoom; strong: also box scale +-15%%, "
        "brightness, contrast, blur and random erasing; none: off (to override a --preset) (default off)",
    )
    p.add_argument(
        "--augment-in",
        choices=AUGMENT_IN,
        default=D.augment_in,
        help="where the augmentation runs: model, as layers inside the training step; batches, on each batch "
        "before the step, compiled on its own, with a network without those layers (the same model at inference; "
        "for accelerators where the step with the layers inside is slow; README, the head start on a lent GPU) "
        "(default %(default)s)",
    )
    p.add_argument("--mixup", type=cli.finite_float, default=D.mixup, help="mixup alpha (0 = off; 0.2 is typical)")
    p.add_argument(
        "--repeats",
        type=int,
        default=D.repeats,
        help="put each face in its batch this many times, each copy augmented on its own (batch augmentation: "
        "the same steps an epoch, each on REPEATS x the faces; the published 0.73 recipe trains ten crops of each "
        "face); needs --augment (default %(default)s)",
    )
    p.add_argument("--class-weights", action="store_true", help="weight classes by inverse frequency")
    p.add_argument(
        "--teacher",
        type=Path,
        nargs="+",
        default=D.teacher,
        help="distil from these saved models (averaged, read with --teacher-tta): the targets become --distill "
        "of their probabilities plus the rest of the true label",
    )
    p.add_argument(
        "--teacher-tta",
        choices=(*TTA_MODES, "none"),
        default=D.teacher_tta,
        help="how the teachers read each training face (once, before training)",
    )
    p.add_argument(
        "--distill", type=cli.finite_float, default=D.distill, help="the teachers' share of the targets, in (0, 1]"
    )
    p.add_argument(
        "--tta",
        nargs="?",
        const="flip",
        choices=TTA_MODES,
        default=D.tta,
        help="test-time augmentation of the final evaluation: flip (the flag alone) averages with the mirrored "
        "face; crops also with five 44-pixel crops of each (12 views) (default off)",
    )
    p.add_argument(
        "--swa-epochs",
        type=int,
        default=D.swa_epochs,
        help="also average the weights of the last N epochs (stochastic weight averaging) into "
        "models/NAME_swa.keras, BatchNorm statistics measured again on the training faces (0 = off)",
    )
    p.add_argument(
        "--max-minutes",
        type=cli.finite_float,
        default=D.max_minutes,
        help="stop after the last epoch that fits in M minutes of training, write the outputs as at the end, "
        "and keep the checkpoints: the same command trains on from there (0 = no limit)",
    )
    p.add_argument("--limit", type=int, default=D.limit, help="train on a stratified subset of N images")
    p.add_argument(
        "--val-fraction",
        type=cli.finite_float,
        default=D.val_fraction,
        help="share of train held out for validation when the data has no validation split",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=D.seed,
        help="seed of the weights, the batches and augmentation (not of the splits drawn for data that names none: "
        "those are the same in every script)",
    )
    p.add_argument(
        "--mixed-precision",
        action=argparse.BooleanOptionalAction,
        default=D.mixed_precision,
        help="mixed_bfloat16 policy: 1.5-2x faster on GPUs and CPUs with AVX-512 BF16 or AMX, ~10x slower "
        "where bf16 is emulated (AVX2-only CPUs); the presets turn it on only where it is native",
    )
    p.add_argument(
        "--distribute",
        action="store_true",
        help="data-parallel over all visible devices (JAX: keras.distribution.DataParallel; TensorFlow: "
        "MirroredStrategy); --batch-size is the global batch. See README, 'Scaling out'",
    )
    p.add_argument(
        "--cpu-devices",
        type=int,
        default=D.cpu_devices,
        help="present the CPU as N devices, to try --distribute without GPUs (0 = off)",
    )
    p.add_argument(
        "--stream",
        action="store_true",
        help="keep the decoded faces on disk (in --cache-dir) and read each batch from there: memory stays "
        "flat however large the dataset",
    )
    p.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint and start over")
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing models/NAME.keras (e.g. the shipped model)"
    )
    p.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=D.checkpoint_dir,
        help="where per-epoch checkpoints go (default MODELS_DIR/checkpoints/NAME: models/checkpoints/NAME)",
    )
    cli.add_common(p, "models_dir", "plots_dir", "cache_dir")
    preset = p.parse_known_args(argv)[0].preset
    if preset:
        p.set_defaults(**PRESETS[preset])
    args = p.parse_args(argv)
    args.__dict__.pop("preset")
    # The flags typed, as --flag VALUE or --flag=VALUE
    typed = {t.split("=", 1)[0] for t in (argv if argv is not None else sys.argv[1:]) if t.startswith("--")}
    given = {a.dest for a in p._actions if typed.intersection(a.option_strings)}
    from_preset = set(PRESETS[preset]) - given if preset else set()
    if "warmup_epochs" in from_preset and args.warmup_epochs >= args.epochs:
        # A preset's warm-up is sized for its own length; fit it to a shorter run instead of refusing it.
        fitted = max(0, (args.epochs - 1) // 4)
        print(f"note: --preset {preset}'s {args.warmup_epochs} warm-up epochs shortened to {fitted} for {args.epochs}")
        args.warmup_epochs = fitted
    if "plateau_on" in given and args.schedule != "plateau":
        came = f" (--preset {preset} sets it)" if "schedule" in from_preset else ""
        p.error(
            f"--plateau-on steers the plateau schedule, and this run's is {args.schedule}{came}: add --schedule plateau"
        )
    if args.augment == "none":
        args.augment = False
    if args.teacher_tta == "none":
        args.teacher_tta = False
    overwrite = args.__dict__.pop("overwrite")
    config = TrainConfig(**vars(args))
    try:
        config.validate()
    except ParameterError as exc:
        came = f" (set by --preset {preset}; give the flag to override it)" if exc.param in from_preset else ""
        p.error(exc.as_flag() + came)
    # Flags that steer only another setting: given without it they used to be ignored in silence.
    if "width" in given and config.arch != "wide":
        came = f" (--preset {preset} sets it)" if "arch" in from_preset else ""
        p.error(
            f"--width sets the channels of --arch wide, and this run's --arch is {config.arch}{came}: add --arch wide"
        )
    if "augment_in" in given and config.augment_in != "model" and not config.augment:
        p.error("--augment-in says where the augmentation runs, and this run has none: add --augment light or strong")
    if "cpu_devices" in given and config.cpu_devices and not config.distribute:
        p.error("--cpu-devices splits the CPU into devices for --distribute to train across: add --distribute")
    for flag, folder in (("--models-dir", config.models_dir), ("--plots-dir", config.plots_dir)):
        cli.check_output_dir(p, flag, folder)
    cli.check_output_dir(p, "--checkpoint-dir", config.checkpoint_dir)
    checkpoints = "--checkpoint-dir" if config.checkpoint_dir else "--models-dir's checkpoints folder"
    cli.refuse_inside_data(  # without --checkpoint-dir that folder is MODELS/checkpoints/NAME
        p,
        config.data,
        {"--models-dir": config.models_dir, checkpoints: config.checkpoint_path(), "--plots-dir": config.plots_dir},
        {"--models-dir": "files", checkpoints: "files", "--plots-dir": "pictures"},
    )
    if config.init_from and Path(config.init_from).suffix.lower() == ".onnx":
        p.error(
            f"--init-from {config.init_from} is an ONNX export, which holds no trainable Keras weights; "
            f"start from the .keras file it was exported from (the shipped one: models/fer_cnn.keras)"
        )
    if config.init_from:  # before the data is decoded and Keras loaded: the network's name says it
        saved = saved_network_name(Path(config.init_from).expanduser())
        mismatch = saved and start_model_mismatch(config.init_from, saved, model_name(config.arch, config.width))
        if mismatch:
            p.error(mismatch)
    cli.refuse_same(
        p,
        {"--name (the model it writes)": Path(config.models_dir) / f"{config.name}.keras"},
        {"--init-from": config.init_from, **{f"--teacher {i + 1}": t for i, t in enumerate(config.teacher or ())}},
    )
    checkpoints = config.checkpoint_path()
    for flag, folder in (("--models-dir", config.models_dir), ("--plots-dir", config.plots_dir)):
        if checkpoints.expanduser().resolve() == Path(folder).expanduser().resolve():
            p.error(f"--checkpoint-dir {checkpoints} is also the {flag}; give the checkpoints a folder of their own")
    try:  # before any work; the run locks the folder when it starts
        CheckpointFolder(checkpoints).check()
    except CheckpointError as exc:
        cli.fail(str(exc))
    for teacher in config.teacher or ():
        if not teacher.is_file():
            p.error(f"--teacher {teacher} not found; give saved .keras models (e.g. models/fer_cnn.keras)")
    if config.teacher:  # resolved, so a resume from another folder or spelling finds the same files
        config.teacher = [t.resolve() for t in config.teacher]
    names = [config.name, *([f"{config.name}_swa"] if config.swa_epochs else [])]
    checkpoint = checkpoints / "state.json"
    for output in (Path(config.models_dir) / f"{name}.keras" for name in names):
        if output.exists() and not overwrite and (config.fresh or not checkpoint.exists()):
            p.error(
                f"{output} exists (the shipped model, or an earlier run's); a new run would replace it. "
                f"Give another --name, or add --overwrite"
            )
    if "/" in config.name or config.name in ("", ".", ".."):
        p.error(f"--name {config.name!r} must be a plain file name (no folders); use --models-dir for the place")
    if config.name.lower().endswith(".keras"):  # it would write NAME.keras.keras
        p.error(f"--name is the model's name, not its file: --name {config.name[:-6]} writes {config.name}")
    return config


def report(metrics: dict) -> None:
    if metrics["test_accuracy"] is None:
        print(
            f"no test split in {metrics['data']['source']}: validation accuracy {metrics['validation_accuracy']:.4f}; "
            "score the model with evaluate.py on the full dataset"
        )
    else:
        supports = [row["support"] for row in metrics["per_class"].values()]
        print(
            format_report(
                {
                    "accuracy": metrics["test_accuracy"],
                    "macro_f1": metrics["test_macro_f1"],
                    "macro_f1_classes": metrics["test_macro_f1_classes"],
                    "per_class": metrics["per_class"],
                }
            )
        )
        print(
            f"test accuracy: {metrics['test_accuracy']:.4f} (validation {metrics['validation_accuracy']:.4f}, "
            f"majority-class rate {max(supports) / sum(supports):.4f})"
        )
    outputs = metrics["outputs"]
    print(f"saved model:   {outputs['model']}")
    if "swa" in metrics:
        swa = metrics["swa"]
        print(
            f"saved average: {outputs['swa_model']} (weights of epochs {swa['epochs'][0]}-{swa['epochs'][1]}; "
            f"validation {swa['validation_accuracy']:.4f}; evaluate it with evaluate.py)"
        )
    print(f"saved metrics: {outputs['metrics']}")
    print("saved plots:   " + ", ".join(str(p) for p in outputs["plots"]))


def _train(config: TrainConfig) -> dict:
    cli.check_inputs(config.data, [config.init_from] if config.init_from else [])
    cli.import_keras_quietly("training")
    from ferkit.training import train  # imports Keras (and its backend): after the arguments are read

    return train(config)


def main(argv=None) -> dict:
    metrics = cli.run_main(_train, parse_args(argv))
    if metrics.get("writer", True):  # in a multi-host run only process 0 evaluates and writes
        report(metrics)
    return metrics


if __name__ == "__main__":
    main()
