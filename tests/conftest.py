"""Small FER-style datasets generated on the fly, in every layout the loader accepts."""

from __future__ import annotations

import csv
import gc
import os
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# JAX on a CPU spends most of a short test run compiling, and the tests' networks are too small for
# the generated code's speed to matter: XLA without its backend optimisations compiles faster
# (measured, whole tests: the GPU-script test 188 -> 143 s, the JAX tests of test_scaling together
# 460 -> 313 s). Set here, it reaches the training processes the tests start; runs compared with
# each other share it.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()

# A shell without job control (a script, `bash -c`) starts a background command (`pytest ... &`)
# with Ctrl-C ignored, and Python then installs no KeyboardInterrupt handler, in itself or in the
# processes it starts: the tests of what Ctrl-C does would see nothing happen (two failed so in
# session 22). They test a terminal's Ctrl-C, so the suite restores Python's handler; its workers
# and subprocesses inherit a default one. (Such a background suite now stops at a Ctrl-C meant for
# the script's foreground command.)
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

from ferkit.faces import CLASS_NAMES  # noqa: E402 (after the TF log level is set)

SHARED = ROOT.parent / "shared"
FER2013 = SHARED / "data" / "fer2013"
XCEPTION_WEIGHTS = SHARED / "weights" / "xception_imagenet_notop.weights.h5"


def pytest_configure(config) -> None:
    """Two workers (``-n 2``) get the tests one at a time, not in chunks of a quarter of the suite:
    with the costliest first (below), the last minutes are no longer one 10-minute test running
    while the other worker idles (session 24: 30.4 minutes, 12 of them on one worker)."""
    if getattr(config.option, "maxschedchunk", False) is None:
        config.option.maxschedchunk = 1


def pytest_collection_modifyitems(items) -> None:
    """The tests marked ``cost(seconds)`` (measured under ``-n 2``) first, costliest first; the
    others after them in their usual order."""

    def cost(item) -> float:
        marker = item.get_closest_marker("cost")
        return marker.args[0] if marker else 0.0

    items.sort(key=lambda item: -cost(item))


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session) -> None:
    """In a pytest-xdist worker: collect the garbage now and freeze what lives on. After a worker's
    last report execnet gives it 5 s to finish, then interrupts it with SIGINT; pytest's closing
    garbage collections over the objects TensorFlow and JAX leave (half a million after a few
    models: 0.5 s a collection, five of them, more on a busy machine) went past that and the SIGINT
    landed in JAX's gc callback (a PytestUnraisableExceptionWarning at the end of the run; seen in
    execnet's trace, EXECNET_DEBUG=1: "execution ongoing after 5 secs ... sending ourselves a
    SIGINT"). Frozen objects are skipped by later collections; garbage is collected first, so
    nothing an object's finaliser would report is lost."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        gc.collect()
        gc.freeze()


def synthetic_face(label: int, rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """A grey image whose class is visible: a bright bar whose row depends on the label."""
    image = rng.integers(0, 60, (size, size), dtype=np.uint8)
    row = int((label + 0.5) * size / len(CLASS_NAMES))
    image[max(0, row - 3) : row + 3, 4:-4] = 230
    return image


def write_images(
    folder: Path,
    label_counts: dict[str, int],
    prefix: str = "img",
    ext: str = ".jpg",
    seed: int = 0,
    folder_names: dict[str, str] | None = None,
) -> None:
    rng = np.random.default_rng(seed)
    for name, count in label_counts.items():
        class_dir = folder / (folder_names or {}).get(name, name)
        class_dir.mkdir(parents=True, exist_ok=True)
        for i in range(count):
            image = synthetic_face(CLASS_NAMES.index(name), rng)
            cv2.imwrite(str(class_dir / f"{prefix}_{seed}{i:04d}{ext}"), image)


# The mechanics of a run (resume, limits, checkpoints) do not depend on the network's size; the
# narrowest wide network (8-64 channels) trains 2-3x faster than the VGG variant on a CPU.
TINY = ("--arch", "wide", "--width", "8")


def counts(n: int) -> dict[str, int]:
    return {name: n for name in CLASS_NAMES}


@pytest.fixture
def kaggle_dir(tmp_path: Path) -> Path:
    root = tmp_path / "fer2013"
    write_images(root / "train", counts(12), prefix="Training", seed=1)
    write_images(root / "test", counts(3), prefix="PublicTest", seed=2)
    write_images(root / "test", counts(4), prefix="PrivateTest", ext=".png", seed=3)
    return root


@pytest.fixture
def training_dir(tmp_path: Path) -> Path:
    """Enough images (Kaggle layout) for a quick training run."""
    root = tmp_path / "train_data"
    write_images(root / "train", counts(40), prefix="Training", seed=4)
    write_images(root / "test", counts(6), prefix="PublicTest", seed=5)
    write_images(root / "test", counts(6), prefix="PrivateTest", seed=6)
    return root


def write_csv(path: Path, rows, header=("emotion", "pixels", "Usage")) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def python_ctrl_c():
    """Python's own Ctrl-C handler (KeyboardInterrupt) during the test, whatever this process
    inherited (`cmd &` in a script starts it with SIGINT ignored); the inherited one after it."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "cache"
