"""Training and validation batches whose order and random draws depend only on (seed, epoch), so
a resumed run sees exactly the batches the uninterrupted run saw."""

from __future__ import annotations

import keras
import numpy as np

from .faces import to_model_input


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
    share of each global batch in a run over n hosts (rows i, i + n, ...). ``transform(x, epoch,
    index, shard index)``, if given, augments each batch last (``batchaug.BatchAugmenter``). ``repeats``
    > 1 puts each face in its batch that many times, next to each other, before the augmentation, so
    every copy is augmented on its own: a step sees ``repeats`` x the faces, an epoch the same number of
    steps (batch augmentation; the published 0.73 recipe trains all ten 40x40 crops of each face)."""

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
        transform=None,
        repeats: int = 1,
    ):
        super().__init__()
        self.transform, self.repeats = transform, repeats
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
        weight = None if self.sample_weight is None else self.sample_weight[rows]
        if self.repeats > 1:  # after mixup (the copies of a blend are the same blend), before the draws
            x, y = np.repeat(x, self.repeats, axis=0), np.repeat(y, self.repeats, axis=0)
            weight = None if weight is None else np.repeat(weight, self.repeats)
        if self.transform is not None:  # after mixup, as the layers inside a model see the batch
            x = self.transform(x, self.epoch, index, self.shard[0])
        return (x, y) if weight is None else (x, y, weight)


class FaceBatches(keras.utils.PyDataset):
    """Faces in order, a batch at a time (validation). With ``multiple_of`` > 1 (devices in all)
    every host's share of a batch is padded with zero-weight copies to the same size, a multiple of
    its own devices (``multiple_of`` / hosts), as a global batch over several hosts needs; weighted
    metrics leave the copies out. The loss does not (Keras divides each batch's loss by its size,
    copies included): multiply it by ``loss_scale`` for the mean over the real faces
    (``ExactValidationLoss``). ``shard`` as in ``EpochBatches``."""

    def __init__(self, x, y, batch_size: int, multiple_of: int = 1, shard=(0, 1)):
        super().__init__()
        self.x, self.y, self.batch_size, self.multiple_of, self.shard = x, y, batch_size, multiple_of, shard
        hosts = shard[1]
        self._local = max(1, multiple_of // hosts)  # devices of this host
        sizes = [min(batch_size, len(y) - start) for start in range(0, len(y), batch_size)]
        # Global faces per batch, copies included: every host sends the same, padded share.
        padded = sum(hosts * self._share(size) for size in sizes) if multiple_of > 1 else len(y)
        self.loss_scale = padded / max(1, len(y))

    def _share(self, size: int) -> int:
        """Faces each host sends for a batch of ``size``: its share rounded up to its devices."""
        per_host = -(-size // self.shard[1])
        return -(-per_host // self._local) * self._local

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def __getitem__(self, index: int):
        batch = np.arange(index * self.batch_size, min((index + 1) * self.batch_size, len(self.y)))
        rows = batch[self.shard[0] :: self.shard[1]]
        if self.multiple_of == 1:
            return to_model_input(np.asarray(self.x[rows])), self.y[rows]
        # Copies of the batch's first face (a host's share of a short last batch can be empty).
        pad = self._share(len(batch)) - len(rows)
        rows = np.r_[rows, np.full(pad, batch[0])].astype(int)
        weight = np.r_[np.ones(len(rows) - pad), np.zeros(pad)].astype(np.float32)
        return to_model_input(np.asarray(self.x[rows])), self.y[rows], weight


class ExactValidationLoss(keras.callbacks.Callback):
    """Undo the zero-weight copies' share of the validation loss (``FaceBatches.loss_scale``), so
    the logged ``val_loss`` is the mean over the real faces however the batches were padded.
    Must come before the callbacks that read it (plateau, checkpoint; Keras' own come last)."""

    def __init__(self, validation: FaceBatches):
        super().__init__()
        self.scale = validation.loss_scale

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None and "val_loss" in logs and self.scale != 1:
            logs["val_loss"] = float(logs["val_loss"]) * self.scale


class EpochRandomness(keras.callbacks.Callback):
    """At each epoch's start: the batch order and the global random seed for that epoch."""

    def __init__(self, batches: EpochBatches, seed: int):
        super().__init__()
        self.batches, self.seed = batches, seed

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.set_epoch(epoch)
        keras.utils.set_random_seed(epoch_seed(self.seed, epoch))
