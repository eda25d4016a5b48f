"""Which number format a training run computes in: bfloat16 mixed precision where the hardware
has bf16 arithmetic (GPUs; CPUs with AVX-512 BF16 or AMX), float32 everywhere else.

Where the CPU lacks those instructions, TensorFlow emulates bf16 and a training step gets much
slower, not faster: the wide network trained at 4.5 images/s in bf16 against 57 in float32 on a
2-core AMD EPYC with AVX2 only (``benchmarks/precision_speed.py``), while on the 2-core CPU with
AVX-512 BF16 that trained the shipped model bf16 was 1.5-2x faster. One backend differs on such
a CPU: JAX's CPU backend trained the wide network slower in bf16 (0.88x float32; TensorFlow 1.51x,
PyTorch 1.54x; a 2-core Xeon with AMX, side by side, session 31), so on JAX without an
accelerator "auto" keeps float32. So the presets ask for ``"auto"``, and a run prints which it
chose and why."""

from __future__ import annotations

import platform
from pathlib import Path

# CPU flags (as Linux's /proc/cpuinfo names them) that give native bf16 dot products.
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str] | None:
    """The CPU's feature flags from a Linux cpuinfo file, or None where there is none to read."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return None
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


def accelerator() -> str | None:
    """The name of the GPU (or other accelerator) the Keras backend computes on, or None (CPU)."""
    import keras

    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return "GPU" if tf.config.list_physical_devices("GPU") else None
    if backend == "jax":
        import jax

        platform_name = jax.default_backend()
        return None if platform_name == "cpu" else platform_name.upper()
    if backend == "torch":
        import torch

        return "GPU" if torch.cuda.is_available() else None
    return None


def native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> tuple[bool, str]:
    """(whether bf16 runs natively here, the reason in a few words)."""
    device = accelerator()
    if device:
        return True, f"on the {device}"
    flags = cpu_flags(cpuinfo)
    if flags is None:
        return False, f"no native bf16 known for this {platform.machine() or 'CPU'}"
    found = [f for f in BF16_FLAGS if f in flags]
    if found:
        has = f"this CPU has {' and '.join(f.upper() for f in found)}"
        import keras

        if keras.backend.backend() == "jax":  # measured: its CPU backend does not gain from them
            return False, f"{has}, but JAX's CPU backend trains slower in bf16 (0.88x float32 measured)"
        return True, has
    return False, "this CPU has no AVX-512 BF16 or AMX (bf16 would be emulated, ~10x slower)"


def choose_precision(setting: bool | str, cpuinfo: str | Path = "/proc/cpuinfo") -> tuple[bool, str]:
    """Resolve ``TrainConfig.mixed_precision`` (True, False or "auto") into (use bf16, the line a
    run prints about it)."""
    if setting is False:
        return False, "precision: float32"
    native, why = native_bf16(cpuinfo)
    if setting == "auto":
        if native:
            return True, f"precision: mixed bfloat16 ({why}; --no-mixed-precision for float32)"
        return False, f"precision: float32 ({why}; --mixed-precision forces bf16)"
    if native:
        return True, f"precision: mixed bfloat16 ({why})"
    return True, f"precision: mixed bfloat16 as asked, but {why}: --no-mixed-precision trains faster here"
