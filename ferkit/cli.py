"""What the top-level scripts share: the common arguments (declared once, with their defaults
from the package), range checks that name the flag, and the one place a script turns the
package's errors into one line on stderr and an exit code. Only scripts call ``run_main``."""

from __future__ import annotations

import argparse
import copy
import errno
import math
import os
import re
import signal
import sys
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

from .errors import FerError, FerWarning, Interrupted, MissingPackage, ParameterError, PeerLost
from .interrupts import interrupts_held
from .paths import DEFAULT_CACHE_DIR, DEFAULT_DATA, DEFAULT_MODEL_PATH, MODELS_DIR, PLOTS_DIR, portable

MODEL_SUFFIXES = (".keras", ".onnx")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and every option's default in --help."""

    def _get_help_string(self, action):
        # A help text that names its default in words (a path relative to the project rather
        # than this machine's absolute one, or what None means) is not given a second one.
        if "(default " in (action.help or "") or "(default: " in (action.help or ""):
            return action.help
        return super()._get_help_string(action)

    def _expand_help(self, action):
        # A default path as the user can type it (models/fer_cnn.onnx, ~/...), not this
        # checkout's absolute one.
        if isinstance(action.default, Path):
            action = copy.copy(action)
            action.default = portable(action.default)
        return super()._expand_help(action)


class _OneLineErrors(argparse.ArgumentParser):
    """A refused command line is one line, like every other error of the scripts: argparse put
    its usage block (20 lines for train_cnn.py) above the line that says what is wrong."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}{self._hint(message)} (all options: {self.prog} --help)\n")

    def _hint(self, message: str) -> str:
        """What the user most likely meant, for the slips argparse reports in its own words: a model
        file given the other way than this script takes it (evaluate.py takes --model, export.py
        and ensemble.py the files alone), and a flag with an optional value that took the model
        file that followed it (ensemble.py --tta a.keras b.keras)."""
        options = {o for action in self._actions for o in action.option_strings}
        files = [action for action in self._actions if not action.option_strings]
        if message.startswith("unrecognized arguments:"):
            extra = message.split(":", 1)[1].split()
            if "--model" in extra and "--model" not in options and files:
                usage = "MODEL MODEL ..." if files[0].nargs == "+" else "MODEL"
                return (
                    f"; give the model file{'s' if files[0].nargs == '+' else ''} without --model: {self.prog} {usage}"
                )
            models = [e for e in extra if e.lower().endswith(MODEL_SUFFIXES)]
            if models and "--model" in options:
                return f"; give the model as --model {models[0]}"
        took = re.match(r"argument (--[\w-]+): invalid choice: '([^']*)'", message)
        if took and took.group(2).lower().endswith(MODEL_SUFFIXES):
            flag = took.group(1)
            return f"; {flag} took the model file after it as its value: put {flag} after the files, or give it a value"
        return ""


def parser(doc: str | None) -> argparse.ArgumentParser:
    # No abbreviations: a misspelt --epoch must be an error, not silently --epochs (or worse,
    # a run with default outputs that replaces the shipped model).
    return _OneLineErrors(description=doc, formatter_class=_HelpFormatter, allow_abbrev=False)


def finite_float(text: str) -> float:
    """An argparse type: a float that is a real number (NaN and infinity pass every range check
    written as comparisons, and then train on NaN or hang)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text} is not a finite number")
    return value


def cache_folder(text: str) -> Path:
    """An argparse type for --cache-dir: a folder, new or existing. A file there was only a
    warning on every cache write ("File exists"), and the run went on uncached without saying why."""
    path = Path(text)
    if path.expanduser().exists() and not path.expanduser().is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a file; give a folder for the cache (it is created if missing)")
    return path


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
            "--model",
            type=Path,
            default=DEFAULT_MODEL_PATH,
            help="saved model: .onnx (ONNX Runtime, no TensorFlow needed) or .keras; the default is the shipped "
            "model's export",
        ),
        "cache_dir": lambda: p.add_argument(
            "--cache-dir", type=cache_folder, default=DEFAULT_CACHE_DIR, help="decoded-image and feature cache"
        ),
        "models_dir": lambda: p.add_argument("--models-dir", type=Path, default=MODELS_DIR, help="where models go"),
        "plots_dir": lambda: p.add_argument("--plots-dir", type=Path, default=PLOTS_DIR, help="where plots go"),
    }
    for name in names:
        declared[name]()


def check_inputs(data=None, models=(), keras_only: bool = False) -> None:
    """Raise a missing dataset's or model file's error (``DatasetError``, ``ModelFileError``) at
    once: the scripts otherwise said so only after loading Keras and its backend (5-6 s)."""
    from .layouts import detect_layout
    from .modelfile import check_model_path

    for path in models:
        check_model_path(Path(path).expanduser(), keras_only)
    if data is not None:
        detect_layout(Path(data).expanduser())


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


def _stop_on_sigterm() -> None:
    """SIGTERM (``kill``, ``timeout``, a closing terminal) stops the work like Ctrl-C does, so
    outputs are finalised and what is done is saved."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def _one_line_warnings(show):
    """``warnings.showwarning`` for a script: the package's own warnings (``FerWarning``: a
    skipped image, say) as one ``warning:`` line, like its errors, without Python's file, line and
    source line; other libraries' warnings as Python shows them."""

    def showwarning(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, FerWarning):
            print(f"warning: {message}", file=file or sys.stderr)
        else:
            show(message, category, filename, lineno, file, line)

    return showwarning


def run_main(work, *args):
    """Call ``work(*args)``; the package's errors become one line and exit code 2, an
    interruption (Ctrl-C, SIGTERM) exit code 130, a failing disk or folder exit code 1."""
    _stop_on_sigterm()
    import warnings

    show, warnings.showwarning = warnings.showwarning, _one_line_warnings(warnings.showwarning)
    try:
        return work(*args)
    except Interrupted as exc:
        fail(str(exc), code=130)
    except PeerLost as exc:
        # At once: a normal exit runs JAX's shutdown barrier, which waits for the lost process's
        # heartbeat (about a minute) and then aborts with a C++ stack trace.
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(1)
    except ParameterError as exc:
        fail(exc.as_flag())
    except FerError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted", code=130)
    except BrokenPipeError:  # the reader of our output went away (| head): stop quietly, as Unix tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(0) from None
    except MemoryError:
        fail("out of memory; use less data (a smaller limit of this script's) or close other programs", code=1)
    except OSError as exc:  # a full disk, a folder removed mid-run: the file and the reason, no traceback
        where = f" ({exc.filename})" if exc.filename else ""
        fail(f"{exc.strerror or exc}{where}; check the disk and the folder's permissions, then rerun", code=1)
    finally:
        warnings.showwarning = show


def _writable_folder(folder: Path) -> str | None:
    """Why files cannot be created in ``folder`` (or in the folder it would be created in), or None."""
    folder = folder.expanduser()
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        return f"{probe} is a file, not a folder"
    try:  # a real write, not os.access: it also tells the truth for root and read-only mounts
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        # /proc and other virtual folders answer "No such file or directory", which reads as if
        # the folder were missing: say what it means instead.
        why = "no files can be created there" if exc.errno == errno.ENOENT else exc.strerror
        return f"{probe} is not writable ({why})"
    return None


def check_output_dir(p: argparse.ArgumentParser, flag: str, folder) -> None:
    """Refuse, before any work, an output folder that is a file or cannot be written."""
    if folder is None:
        return
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        p.error(f"{flag} {folder} is a file; give a folder")
    problem = _writable_folder(folder)
    if problem:
        p.error(f"{flag} {folder}: {problem}; give a folder you can write to")


def check_output_file(p: argparse.ArgumentParser, flag: str, path, suffixes=None) -> None:
    """Refuse, before any work, an output file that is a folder, has an unsupported extension
    or cannot be created."""
    if path is None:
        return
    path = Path(path)
    if path.is_dir():
        p.error(f"{flag} {path} is a folder; give a file name")
    if suffixes and path.suffix.lower() not in suffixes:
        p.error(
            f"{flag} {path}: unsupported extension {path.suffix or '(none)'}; use one of {', '.join(sorted(suffixes))}"
        )
    problem = _writable_folder(path.parent if str(path.parent) else Path("."))
    if problem:
        p.error(f"{flag} {path}: {problem}; choose another place")


def check_log_file(p: argparse.ArgumentParser, flag: str, path) -> None:
    """``check_output_file`` for a face log. A ``.json`` name is refused with the reason: the rows
    are JSON lines, which ``json.load`` cannot read as one document."""
    if path is not None and Path(path).suffix.lower() == ".json":
        p.error(
            f"{flag} {path}: the log is JSON lines, one object per face, which json.load cannot read whole; "
            f"name it {Path(path).with_suffix('.jsonl').name} (pandas: read_json(..., lines=True)) or .csv"
        )
    from .facelog import LOG_SUFFIXES

    check_output_file(p, flag, path, set(LOG_SUFFIXES))


def refuse_same(p: argparse.ArgumentParser, outputs: dict, inputs: dict) -> None:
    """Refuse an output path that is one of the inputs: writing it would destroy the input."""

    def same(a: Path, b: Path) -> bool:
        try:
            return a.exists() and b.exists() and os.path.samefile(a, b) or a.resolve() == b.resolve()
        except OSError:
            return False

    for out_flag, out in outputs.items():
        for in_flag, inp in inputs.items():
            if out is not None and inp is not None and same(Path(out).expanduser(), Path(inp).expanduser()):
                p.error(
                    f"{out_flag} {out} is also the {in_flag}; writing it would destroy the input. Choose another name"
                )


def require_plotting(p: argparse.ArgumentParser, flags: dict) -> None:
    """Refuse, before any work, a plot asked for (``flags``: flag -> value) where matplotlib is not
    installed (the light runtime leaves it out), rather than failing after the work is done."""
    import importlib.util

    asked = [flag for flag, value in flags.items() if value]
    if asked and importlib.util.find_spec("matplotlib") is None:
        p.error(
            f"{' and '.join(asked)} {'draws' if len(asked) == 1 else 'draw'} with matplotlib, which is not installed "
            f"(the light runtime leaves it out): pip install matplotlib (or pip install '.[report]'), or leave "
            f"{' and '.join(asked)} out"
        )


def refuse_existing(p: argparse.ArgumentParser, outputs, overwrite: bool, elsewhere: str) -> None:
    """Refuse, before any work, output files that exist already (an earlier run's, or what ships
    with the project) unless ``--overwrite`` was given: the run would replace them when it ends.
    ``elsewhere``: how to write somewhere else instead."""
    if overwrite:
        return
    there = [str(path) for path in outputs if path is not None and Path(path).expanduser().exists()]
    if there:
        one = len(there) == 1
        shown = ", ".join(there[:3]) + (f" and {len(there) - 3} more" if len(there) > 3 else "")
        p.error(
            f"{shown} {'exists' if one else 'exist'} (an earlier run's, or what ships with the project) "
            f"and this run would replace {'it' if one else 'them'}. {elsewhere}, or add --overwrite"
        )


def refuse_inside_data(p: argparse.ArgumentParser, data, outputs: dict, kinds: dict | None = None) -> None:
    """Refuse, before any work, an output where the ``--data`` folder's loader would find it: the
    next run over that data would read a picture as a face, or a folder as a class. ``kinds``:
    the ``layouts.disturbs_dataset`` kind of each flag ("picture", a plot file, when not named).
    Beside the split folders, at the top, or in a hidden folder is fine."""
    if data is None:
        return
    from .layouts import disturbs_dataset

    for flag, path in outputs.items():
        why = None if path is None else disturbs_dataset(data, path, (kinds or {}).get(flag, "picture"))
        if why:
            p.error(f"{flag} {path} is {why}; write it outside --data {data}, or beside its train/ and test/")


def refuse_duplicates(p: argparse.ArgumentParser, outputs: dict) -> None:
    """Refuse two outputs with one path: the second would silently overwrite the first."""
    seen = {}
    for flag, path in outputs.items():
        if path is None:
            continue
        key = Path(path).expanduser().resolve()
        if key in seen:
            p.error(f"{seen[key]} and {flag} both name {path}; give each output its own file")
        seen[key] = flag


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


def import_keras_quietly(work: str = "this") -> None:
    """Import Keras (and its backend) without TensorFlow's start-up lines on the terminal, unless
    the user asked for them with TF_CPP_MIN_LOG_LEVEL. Scripts call it where they first need Keras,
    inside ``run_main``, so a Ctrl-C during the import is a clean exit too, and a Python without
    Keras (the light runtime) one line saying what ``work`` needs installed."""
    if sys.modules.get("keras") is not None:
        return
    quiet_tensorflow(False)
    try:
        # Ctrl-C waits for the end of the import: Keras imports JAX where it is installed, and an
        # interruption that lands in JAX's garbage-collection hook is lost (the run went on to the
        # end) or leaves half-imported modules behind (a traceback, or a sound model called damaged).
        with native_logs_silenced("TF_CPP_MIN_LOG_LEVEL" not in _user_env), interrupts_held():
            import keras  # noqa: F401
    except ModuleNotFoundError as exc:
        raise MissingPackage(
            f"{work} needs Keras and TensorFlow, which this Python cannot import ({exc.name or exc}; the light "
            f"runtime, requirements-live.txt, leaves them out): pip install -r requirements.txt"
        ) from None


_user_env = dict(os.environ)  # what the user set, before quiet_tensorflow() sets defaults


def quiet_tensorflow(verbose: bool) -> None:
    """Unless ``verbose``, keep TensorFlow's Python and C++ log lines out of the terminal; call
    before anything imports keras."""
    if not verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
