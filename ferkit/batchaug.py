"""``--augment-in batches``: the augmentation as a compiled function of its own, applied to each
training batch before the training step, with a network that holds no augmentation layers,
instead of those layers inside the model's compiled step. On the first lent GPU (JAX, an H200)
the strong augmentation inside the step made it 136x slower than the network alone, though each
of its layers compiled alone ran in under a millisecond (README, "A long run's head start").

The random draws of a batch depend only on (seed, epoch, batch), as its faces do
(``batches.EpochBatches``): a resumed run augments each batch as the uninterrupted run did, with
no state to checkpoint. At inference the two kinds of model are the same (augmentation layers
pass faces through unchanged there)."""

from __future__ import annotations

import numpy as np

from .checkpoint import seed_states
from .faces import IMAGE_SIZE


class BatchAugmenter:
    """``augmenter(x, epoch, index, part)``: the float32 (N, 48, 48, 1) batch of 0-255 faces ``x``,
    augmented (``strength`` "light" or "strong", as ``networks.augmentation_block``) with draws
    that depend only on (``seed``, ``epoch``, ``index``, ``part``). Compiled on JAX; on the other backends
    the layers run as they are (there the step with them inside was never slow)."""

    def __init__(self, strength: str, seed: int):
        import keras

        from .networks import augmentation_block

        # float32 whatever the run's policy: faces as the in-model layers see them, without the
        # two extra roundings a bf16 pass (there and back to 0-255) would add.
        policy = keras.config.dtype_policy()
        keras.config.set_dtype_policy("float32")
        try:
            faces = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="face")
            augmented = augmentation_block(keras.layers.Rescaling(1 / 255.0, name="rescale")(faces), strength)
            # Back to 0-255: the network rescales its input itself.
            unscaled = keras.layers.Rescaling(255.0, name="unscale")(augmented)
            self.model = keras.Model(faces, unscaled, name="augmentation")
        finally:
            keras.config.set_dtype_policy(policy)
        self.seed = seed
        variables = self.model.non_trainable_variables
        self._state = [keras.ops.convert_to_numpy(v) for v in variables]
        random = {id(v) for v in seed_states(self.model)}
        self._random = [i for i, v in enumerate(variables) if id(v) in random]

        def call(state, x):
            return self.model.stateless_call([], state, x, training=True)[0]

        if keras.backend.backend() == "jax":
            import jax

            call = jax.jit(call)
        self._call = call

    def __call__(self, x: np.ndarray, epoch: int, index: int, part: int = 0) -> np.ndarray:
        import keras

        # Each random layer's generator starts the batch at its own draw of (seed, epoch, batch,
        # part): ``part`` is the host's share of the batch in a run over several hosts, whose
        # faces would otherwise all be flipped, shifted and erased alike.
        draws = np.random.default_rng([self.seed, epoch, index, 2, part]).integers(0, 2**31 - 1, len(self._random))
        state = list(self._state)
        for i, draw in zip(self._random, draws):
            state[i] = np.asarray([draw, 0], dtype=self._state[i].dtype)
        return keras.ops.convert_to_numpy(self._call(state, x))
