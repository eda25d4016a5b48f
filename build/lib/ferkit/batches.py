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
