"""The CNNs, each built in one readable function: from 0-255 grey 48x48 faces to the seven class
probabilities. ``seed`` is the original notebook's network; ``vgg`` a compact VGG-style variant;
``wide`` the wider VGG trunk of the published 0.72-0.73 recipes, on 40x40 crops with a pooled head."""

from __future__ import annotations

from .errors import ParameterError
from .faces import CLASS_NAMES, IMAGE_SIZE

ARCHITECTURES = ("seed", "vgg", "wide")
# The wide trunk sees the centre 40x40 of each (augmented) face: with the random shifts of the
# augmentation in front of it that is a random 40x40 crop in training and the centre crop at test.
WIDE_CROP = 40
WIDE_WIDTH = 48  # channels of the first stage; the stages double it (48-96-192-384)
# light: the seed recipe's geometry. strong: also what a face detector's crops vary in (looser and
# tighter boxes, light, focus) plus random erasing, for longer runs that would otherwise overfit.
AUGMENTATIONS = ("light", "strong")
# Keras' default 0.99 needs ~500 steps before inference-time statistics settle, which leaves
# short runs (--limit, a few epochs) predicting one class; 0.9 settles within ~50 steps.
BN_MOMENTUM = 0.9


def augmentation_block(x, strength: str = "light"):
    """Augmentation, active only in training. Pixels are in [0, 1] here."""
    from keras import layers  # here, not at the top: the settings' names load without TensorFlow

    x = layers.RandomFlip("horizontal", name="aug_flip")(x)
    if strength == "light":
        x = layers.RandomTranslation(0.1, 0.1, fill_mode="nearest", name="aug_shift")(x)
        x = layers.RandomRotation(0.04, fill_mode="nearest", name="aug_rotate")(x)
        return layers.RandomZoom(0.1, fill_mode="nearest", name="aug_zoom")(x)
    # Box scale +-15% and shift as a detector's boxes vary; up to +-18 degrees of roll.
    x = layers.RandomTranslation(0.12, 0.12, fill_mode="nearest", name="aug_shift")(x)
    x = layers.RandomRotation(0.05, fill_mode="nearest", name="aug_rotate")(x)
    x = layers.RandomZoom(0.15, fill_mode="nearest", name="aug_zoom")(x)
    x = layers.RandomBrightness(0.25, value_range=(0, 1), name="aug_brightness")(x)
    x = layers.RandomContrast(0.3, value_range=(0, 1), name="aug_contrast")(x)
    x = layers.RandomGaussianBlur(0.3, kernel_size=3, sigma=1.0, value_range=(0, 1), name="aug_blur")(x)
    return layers.RandomErasing(0.5, scale=(0.02, 0.2), fill_value=None, value_range=(0, 1), name="aug_erase")(x)


def dense_head(x, units: tuple[int, ...], dropout: tuple[float, ...], num_classes: int, sync_bn: bool = False):
    """Flatten, then Dense -> BatchNorm -> ReLU -> Dropout blocks, then the softmax."""
    from keras import layers

    x = layers.Flatten(name="flatten")(x)
    for i, (n, rate) in enumerate(zip(units, dropout), start=1):
        x = layers.Dense(n, name=f"dense{i}")(x)
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, synchronized=sync_bn, name=f"dense{i}_bn")(x)
        x = layers.Activation("relu", name=f"dense{i}_relu")(x)
        x = layers.Dropout(rate, name=f"dense{i}_dropout")(x)
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name="expression")(x)


def model_name(arch: str, width: int = WIDE_WIDTH) -> str:
    """The name ``build_model`` gives the network of ``arch`` (and ``width``): how a saved model
    says which network it is."""
    return f"fer_wide{width}" if arch == "wide" and width != WIDE_WIDTH else f"fer_{arch}"


def start_model_mismatch(path, saved_name: str, built_name: str) -> str | None:
    """Why a saved model named ``saved_name`` cannot start a run that builds ``built_name``
    (train_cnn.py --init-from), naming the flags that build its network; None when they match."""
    if saved_name == built_name:
        return None
    network = network_of(saved_name)
    if network is None:  # an average of models (ensemble.py), or another program's model
        return (
            f"the model to start from ({path}) is {saved_name!r}, not a network train_cnn.py builds; start from "
            f"a .keras file a training run wrote (or ensemble.py --average weights), or leave --init-from out."
        )
    flags = f"--arch {network['arch']}"
    if network["arch"] == "wide":
        flags += f" --width {network.get('width', WIDE_WIDTH)}"
    return (
        f"the model to start from ({path}) is the network of {flags}, but this run builds {built_name!r}; "
        f"give {flags} (a --preset sets them too), or start from another model."
    )


def network_of(name: str) -> dict | None:
    """The ``build_model`` arguments (``arch``, and ``width`` of a wide network) behind a model name
    that ``build_model`` gave (``fer_vgg``, ``fer_wide``, ``fer_wide32``); None for other models."""
    arch = name.removeprefix("fer_")
    if arch != name and arch.startswith("wide") and arch[4:].isdigit():
        return {"arch": "wide", "width": int(arch[4:])}
    return {"arch": arch} if arch != name and arch in ARCHITECTURES else None


def build_model(
    num_classes: int = len(CLASS_NAMES),
    augment: bool | str = False,
    arch: str = "seed",
    sync_bn: bool = False,
    width: int = WIDE_WIDTH,
):
    """The CNN, from 0-255 grey 48x48 faces to class probabilities.

    ``seed`` is the original notebook's network (4,743,431 weights): four conv blocks
    Conv(64 3x3, 128 5x5, 512 3x3, 512 3x3) -> BatchNorm -> ReLU -> MaxPool 2x2 -> Dropout 0.25,
    then Dense 256, 512, 512 blocks (dropout 0.25, 0.25, 0.22). ``vgg`` is a compact VGG-style
    variant (two 3x3 convs per stage, 32-64-128-256 channels): 2.5x fewer multiply-adds, so more
    epochs per CPU hour. ``wide``: the same shape ``width``-``8 * width`` channels wide (48-384 by
    default, 2.7M weights) on the centre 40x40 crop, global average pooling and one Dense 256 block
    instead of a flattened map. Pixels are rescaled inside the model. ``augment``: False, True (light)
    or one of ``AUGMENTATIONS``. ``sync_bn``: batch statistics over the global batch when
    replicas each hold part of it (TensorFlow's MirroredStrategy; JAX shards do this anyway).
    """
    import keras
    from keras import layers

    if arch not in ARCHITECTURES:
        raise ParameterError("arch", f"must be one of {', '.join(ARCHITECTURES)}, not {arch!r}")
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 1), name="face")
    x = layers.Rescaling(1 / 255.0, name="rescale")(inputs)
    if augment not in (False, True, *AUGMENTATIONS):
        raise ParameterError("augment", f"must be one of {', '.join(AUGMENTATIONS)}, not {augment!r}")
    if augment:
        x = augmentation_block(x, "light" if augment is True else augment)
    if not 8 <= width <= 128:
        raise ParameterError("width", f"must be between 8 and 128 channels, not {width!r}")
    if arch == "seed":
        stages = [[(64, 3)], [(128, 5)], [(512, 3)], [(512, 3)]]
        head = ((256, 512, 512), (0.25, 0.25, 0.22))
    elif arch == "wide":
        # Cropping2D, not CenterCrop: a preprocessing layer defaults to training=True when a model is
        # called without ``training`` (Keras' ONNX export does) and passes it on to the BatchNorms.
        x = layers.Cropping2D((IMAGE_SIZE - WIDE_CROP) // 2, name="centre_crop")(x)
        stages = [[(width * m, 3), (width * m, 3)] for m in (1, 2, 4, 8)]
        head = ((256,), (0.5,))
    else:
        stages = [[(c, 3), (c, 3)] for c in (32, 64, 128, 256)]
        head = ((256,), (0.5,))
    for i, stage in enumerate(stages, start=1):
        for j, (filters, kernel) in enumerate(stage, start=1):
            name = f"conv{i}" if len(stage) == 1 else f"conv{i}_{j}"
            x = layers.Conv2D(filters, kernel, padding="same", name=name)(x)
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, synchronized=sync_bn, name=f"{name}_bn")(x)
            x = layers.Activation("relu", name=f"{name}_relu")(x)
        x = layers.MaxPooling2D(2, name=f"conv{i}_pool")(x)
        x = layers.Dropout(0.25, name=f"conv{i}_dropout")(x)
    if arch == "wide":
        x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = dense_head(x, *head, num_classes, sync_bn)
    return keras.Model(inputs, outputs, name=model_name(arch, width))
