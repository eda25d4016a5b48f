"""Per-epoch training checkpoints: the full training state written atomically after every epoch,
read back for a resume with the settings it was made with."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import keras
import numpy as np

from .atomic import atomic_write_text
from .checkpoint_folder import MARKER, CheckpointFolder
from .errors import CheckpointError
from .modelfile import save_model
from .trainconfig import RESUME_KEYS, TrainConfig

__all__ = ["MARKER", "CheckpointFolder", "EpochCheckpoint", "RestorePlateau", "load_checkpoint", "seed_states"]


def seed_states(model) -> list:
    """The random-number states of the model's layers (dropout masks, augmentation). Keras does
    not save them in a .keras file, so a resumed run would draw other masks without them."""
    return [v for v in model.non_trainable_variables if v.path.endswith("seed_generator_state")]


class EpochCheckpoint(keras.callbacks.Callback):
    """After every epoch, atomically save the full training state: the model with its optimizer
    (a file per epoch, named in ``state.json``, so the two always agree even after a kill), the
    layers' random states, the history and the ReduceLROnPlateau counters; and the best model by
    validation accuracy."""

    def __init__(
        self,
        directory: Path,
        plateau,
        settings: dict,
        history: dict,
        best: float,
        alone=None,
        average=None,
        record: dict | None = None,
    ):
        super().__init__()
        self.record = record  # the run's training data (provenance.training_record), saved in each model
        self.directory, self.plateau, self.settings = directory, plateau, settings
        self.history_so_far, self.best = history, best
        self.average = average  # a weightavg.RunningAverage (--swa-epochs), or None
        # Saving is this process' work alone: outside a multi-host distribution, whose every
        # new variable would be a collective the other hosts never join (Plan.local).
        self.alone = alone or contextlib.nullcontext

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
            with self.alone():
                save_model(self.model, self.directory / "best.keras", training=self.record)
        model_file = f"epoch{epoch + 1:04d}.keras"
        with self.alone():
            save_model(self.model, self.directory / model_file, training=self.record)
            if self.average is not None:
                self.average.update(self.model.get_weights(), epoch + 1)
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
            "swa": self.average and self.average.state(),
        }
        atomic_write_text(self.directory / "state.json", json.dumps(state))
        keep = {model_file, self.average and self.average.file}
        for old in [*self.directory.glob("epoch*.keras"), *self.directory.glob("swa[0-9]*.npz")]:
            if old.name not in keep:
                old.unlink(missing_ok=True)


class RestorePlateau(keras.callbacks.Callback):
    """ReduceLROnPlateau resets its counters when training begins; put the saved ones back."""

    def __init__(self, plateau, saved: dict):
        super().__init__()
        self.plateau, self.saved = plateau, saved

    def on_train_begin(self, logs=None):
        self.plateau.wait, self.plateau.best = self.saved["wait"], self.saved["best"]
        self.plateau.cooldown_counter = self.saved["cooldown_counter"]


def saved_epoch(directory: Path) -> int | None:
    """The last epoch whose checkpoint is in ``directory`` (None: none yet, or unreadable)."""
    try:
        return int(json.loads((directory / "state.json").read_text())["epoch"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _differences(keys, state: dict, settings: dict) -> str:
    """``--lr 0.01 then, 0.02 now; ...``: the flag and both values of each changed setting, so
    the command that resumes can be written from the message (the names alone left the user to
    find the old values in state.json)."""

    def shown(key, value):
        if key in ("augment", "teacher_tta") and value is False:
            return f"--{flag(key)} none"  # as it is typed
        if isinstance(value, bool):  # a yes/no flag (before the rest: False == 0)
            return f"--{flag(key)}" if value else f"no --{flag(key)}"
        if value is None or value == []:
            return f"no --{flag(key)}"
        return f"--{flag(key)} " + (" ".join(str(v) for v in value) if isinstance(value, list) else str(value))

    def flag(key):
        return key.replace("_", "-")

    return "; ".join(
        f"{shown(key, state['settings'].get(key, getattr(TrainConfig, key)))} then, {shown(key, settings.get(key))} now"
        for key in keys
    )


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
        if key == "plateau_on" and settings.get("schedule") != "plateau":
            return True  # watched by no schedule but the plateau one
        return old == new or key == "augment" and {old, new} == {True, "light"}

    changed = [k for k in RESUME_KEYS if not same(k)]
    if "split_rule" in settings:  # the data's splits were drawn here: by the same rule?
        saved = state["settings"]
        if saved.get("split_rule") != settings["split_rule"]:
            if "split_rule" in saved:
                how = f"drawn by the rule {saved['split_rule']}"
            elif "split_seed" in saved:
                how = "drawn at random, as an older version did"
            else:
                how = f"drawn with --seed {saved.get('seed', 0)}, as an older version did"
            raise CheckpointError(
                f"checkpoint in {directory} held out other faces ({how}); resumed, it would be tested on faces "
                f"it trained on. Start over with train_cnn.py --fresh."
            )
    if changed:
        raise CheckpointError(
            f"checkpoint in {directory} was made with different settings ({_differences(changed, state, settings)}). "
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
