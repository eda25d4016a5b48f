"""What the top-level scripts share: the common arguments (declared once, with their defaults
from the package), range checks that name the flag, and the one place a script turns the
package's errors into one line on stderr and an exit code. Only scripts call ``run_main``."""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
from pathlib import Path

from .errors import FerError, Interrupted, ParameterError
from .paths import DEFAULT_CACHE_DIR, DEFAULT_DATA, DEFAULT_MODEL_PATH, MODELS_DIR, PLOTS_DIR


def parser(doc: str | None) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)


def add_common(p: argparse.ArgumentParser, *names: str) -> None:
    """Declare the shared arguments a script takes: any of data, model, cache_dir, models_dir,
    plots_dir."""
    declared = {
        "data": lambda: p.add_argument(
            "--data",
            default=DEFAULT_DATA,
            help="FER2013 folder (train/ + test/), train/ + validation/, fer2013.csv, or a folder of "
            "class folders (default data/fer2013)",
        ),
        "model": lambda: p.add_argument(
            "--model", type=Path, default=DEFAULT_MODEL_PATH, help="saved .keras model (default models/fer_cnn.keras)"
        ),
        "cache_dir": lambda: p.add_argument(
            "--cache-dir", type=Path, default=DEFAULT_CACHE_DIR, help="decoded-image and feature cache"
        ),
        "models_dir": lambda: p.add_argument("--models-dir", type=Path, default=MODELS_DIR, help="where models go"),
        "plots_dir": lambda: p.add_argument("--plots-dir", type=Path, default=PLOTS_DIR, help="where plots go"),
    }
    for name in names:
        declared[name]()


def check(p: argparse.ArgumentParser, validate) -> None:
    """Run a package ``validate()`` at parse time; a bad setting becomes argparse's usage error
    naming the flag (exit code 2)."""
    try:
        validate()
    except ParameterError as exc:
        p.error(exc.as_flag())


def fail(message: str, code: int = 2):
    """Print one clear error line and exit."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def run_main(work, *args):
    """Call ``work(*args)``; the package's errors become one line and exit code 2, Ctrl-C 130."""
    try:
        return work(*args)
    except Interrupted as exc:
        fail(str(exc), code=130)
    except ParameterError as exc:
        fail(exc.as_flag())
    except FerError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", code=130)


@contextmanager
def native_logs_silenced(enabled: bool = True):
    """Send the process's native stderr (file descriptor 2) to /dev/null for the duration:
    TensorFlow's C++ start-up lines ("oneDNN custom operations are on", absl's notice) are
    written there before any Python setting can stop them. Python errors still propagate."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def quiet_tensorflow(verbose: bool) -> None:
    """Unless ``verbose``, keep TensorFlow's Python and C++ log lines out of the terminal; call
    before anything imports keras."""
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
