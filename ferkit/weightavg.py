"""Averaging the weights of several checkpoints of one network (stochastic weight averaging, SWA):
one model of one model's cost, usually a little more accurate than any of the checkpoints, because
the average sits nearer the centre of the flat region the late epochs wander around in.

``RunningAverage`` keeps that mean during training (``train_cnn.py --swa-epochs``); ``average_weights``
makes it afterwards from saved checkpoints (``ensemble.py --average weights``).

Averaging the weights breaks the BatchNorm statistics (the mean of the checkpoints' running means
is not the mean of the averaged network's activations), so they are measured again, exactly, over
the training faces, the way the network saw them in training (augmentation and dropout on)."""

from __future__ import annotations

import numpy as np

from .errors import ModelFileError, ParameterError
from .faces import to_model_input


def _layout(model) -> list:
    """The layers that hold weights, with their shapes (layers without weights, such as an older
    checkpoint's CenterCrop where newer ones have Cropping2D, do not make two networks differ)."""
    return [
        (layer.__class__.__name__, [tuple(w.shape) for w in layer.weights]) for layer in model.layers if layer.weights
    ]


def average_weights(members: list) -> list:
    """The mean of the members' float weights (other weights: the first member's), in the order of
    ``get_weights``. The members must be the same network (checkpoints of one run, or runs of one
    architecture and width); anything else is refused, since averaging unrelated weights gives noise."""
    if len(members) < 2:
        raise ParameterError("members", f"must be two or more models to average, not {len(members)}")
    first = _layout(members[0])
    for i, member in enumerate(members[1:], start=2):
        if _layout(member) != first:
            raise ModelFileError(
                f"model {i} is not the same network as model 1 (other layers or weight shapes); average "
                f"the weights of checkpoints of one architecture only, or average their predictions instead "
                f"(ensemble.py without --average weights)."
            )
    stacks = zip(*(member.get_weights() for member in members))
    return [
        np.mean(np.stack(stack), axis=0).astype(stack[0].dtype)
        if np.issubdtype(stack[0].dtype, np.floating)
        else stack[0]
        for stack in stacks
    ]


def averaged_model(template, weights: list, faces, progress=None, seed: int = 0):
    """A copy of ``template`` holding averaged ``weights``, its BatchNorm statistics measured again
    over ``faces`` (``remeasure_batchnorm``). Returns (model, number of batches measured).
    ``seed`` fixes the augmentation and dropout the measurement runs through (in training mode):
    unseeded, the same members gave another average each time (validation 0.129 or 0.143 on a
    tiny set)."""
    import keras

    keras.utils.set_random_seed(seed)  # before the clone: its random layers take their seeds from it
    model = keras.models.clone_model(template)
    model.set_weights(weights)
    return model, remeasure_batchnorm(model, faces, progress=progress)


def batchnorm_layers(model) -> list:
    """Every BatchNormalization layer of ``model``, nested models included."""
    import keras

    found = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            found.append(layer)
        elif hasattr(layer, "layers"):
            found.extend(batchnorm_layers(layer))
    return found


def remeasure_batchnorm(model, faces, batch_size: int = 256, progress=None) -> int:
    """Set every BatchNorm layer's running mean and variance to the average of its batch statistics
    over ``faces`` (uint8 (N, 48, 48), as in training), in training mode. Keras updates a running
    statistic as ``old * momentum + new * (1 - momentum)``; a momentum of (k - 1) / k at the k-th
    batch makes that the plain average of the k batches seen. Returns the number of batches used
    (0: the network has no BatchNorm). ``progress(done, total)`` is called after each batch."""

    layers = batchnorm_layers(model)
    if not layers:
        return 0
    n = len(faces)
    if n == 0:
        raise ParameterError("faces", "must hold at least one face to measure BatchNorm statistics on")
    # Equal batches weigh equally; a short last batch is dropped unless it is the only one.
    starts = list(range(0, max(n - batch_size, 0) + 1, batch_size))
    momenta = {layer: layer.momentum for layer in layers}
    try:
        for layer in layers:  # NumPy zeros: keras.ops.zeros_like cannot take a Variable on JAX
            for variable in (layer.moving_mean, layer.moving_variance):
                variable.assign(np.zeros(tuple(variable.shape), variable.dtype))
        for k, start in enumerate(starts, start=1):
            for layer in layers:
                layer.momentum = (k - 1) / k
            model(to_model_input(np.asarray(faces[start : start + batch_size])), training=True)
            if progress is not None:
                progress(k, len(starts))
    finally:
        for layer, momentum in momenta.items():
            layer.momentum = momentum
    return len(starts)


class RunningAverage:
    """The running mean of a training run's weights over its last epochs (SWA), kept on disk beside
    the run's checkpoints so that a resumed run goes on averaging where it stopped. Each update
    writes a new file, ``swaNNNN.npz`` (NNNN: the epoch); the checkpoint's state names the file,
    so the average and the state always agree after a kill, as the epoch files do."""

    def __init__(self, directory, first_epoch: int, saved: dict | None = None):
        from pathlib import Path

        self.directory, self.first_epoch = Path(directory), first_epoch
        self.count, self.weights, self.file = 0, None, None
        self.restarted = False
        if saved and saved.get("count"):
            if saved["first_epoch"] < first_epoch:  # --epochs was raised: the window moved on
                self.restarted = True
            else:
                with np.load(self.directory / saved["file"]) as arrays:
                    self.weights = [arrays[f"w{i}"] for i in range(len(arrays.files))]
                self.first_epoch, self.count, self.file = saved["first_epoch"], saved["count"], saved["file"]

    def update(self, weights: list, epoch: int) -> bool:
        """Add the weights after ``epoch`` (1-based) if it is in the window; write the average."""
        from .atomic import atomic_savez

        if epoch < self.first_epoch:
            return False
        if self.weights is None:
            self.weights = [np.array(w) for w in weights]
        else:
            n = self.count + 1
            self.weights = [
                a + (w - a) / n if np.issubdtype(a.dtype, np.floating) else np.array(w)
                for a, w in zip(self.weights, weights)
            ]
        self.count += 1
        self.file = f"swa{epoch:04d}.npz"
        atomic_savez(self.directory / self.file, **{f"w{i}": w for i, w in enumerate(self.weights)})
        return True

    def state(self) -> dict | None:
        if not self.count:
            return None
        return {"first_epoch": self.first_epoch, "count": self.count, "file": self.file}
