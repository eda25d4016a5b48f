"""Averaging several trained models into one model whose output is the mean of their class
probabilities: it takes the same faces and gives the same seven outputs as a single model."""

from __future__ import annotations

from .errors import ModelFileError


def average_models(members: list):
    """One functional Keras model whose output is the mean of the members' class probabilities.
    The members are renamed (nested models need unique names)."""
    import keras

    shapes = {tuple(m.input_shape[1:]) for m in members}
    outputs = {m.output_shape[-1] for m in members}
    if len(shapes) != 1 or len(outputs) != 1:
        raise ModelFileError(
            f"the models take different inputs {sorted(shapes)} or give different numbers of classes "
            f"{sorted(outputs)}; only models of one task can be averaged."
        )
    face = keras.Input(shapes.pop(), name="face")
    for i, member in enumerate(members, start=1):
        member.name = f"member{i}_{member.name}"
    mean = keras.layers.Average(name="mean_probability")([m(face) for m in members])
    return keras.Model(face, mean, name="fer_ensemble")
