"""The package's error types. Every message names the problem and the fix.

The package raises these and never exits the process; the scripts catch ``FerError`` and print
one line (see ``ferkit.cli``).
"""

from __future__ import annotations


class FerWarning(UserWarning):
    """Something the package went on without (a skipped image, a cache it could not write); the
    scripts print it as one ``warning:`` line."""


class FerError(Exception):
    """Base of every error the package raises for bad input; the message says what to do."""


class DatasetError(FerError, ValueError):
    """Bad dataset input; the message names the path and how to fix it."""


class ModelFileError(FerError, ValueError):
    """A model file that is missing, damaged or not one of ours; the message says what to do."""


class CheckpointError(FerError, ValueError):
    """A training checkpoint that cannot be resumed with these settings."""


class FeatureError(FerError, ValueError):
    """Bad Xception weights or a damaged feature cache."""


class SourceError(FerError, RuntimeError):
    """A frame source, detector file or output that cannot be opened; the message says what to try."""


class ClusterError(FerError, RuntimeError):
    """A Dask scheduler cannot be reached, or dask.distributed is not installed."""


class ParameterError(FerError, ValueError):
    """A setting out of its range. ``param`` is the parameter's name (``population``), so a script
    can name its own flag (``--population``) instead; ``problem`` is the rest of the sentence."""

    def __init__(self, param: str, problem: str):
        self.param, self.problem = param, problem
        super().__init__(f"{param} {problem}")

    def as_flag(self) -> str:
        return f"--{self.param.replace('_', '-')} {self.problem}"


class TrainingDiverged(FerError, RuntimeError):
    """The training loss stopped being a number; the message says which setting to change."""


class PeerLost(FerError, RuntimeError):
    """Another process of a several-process training run stopped mid-run (its collectives failed);
    the message names the last saved epoch and how to resume. Scripts exit at once with code 1,
    skipping JAX's shutdown handshake, which would wait for the lost process and then abort."""


class MissingPackage(FerError, RuntimeError):
    """A package the work needs is not installed (the light runtime leaves Keras and TensorFlow
    out); the message names what to install."""


class Interrupted(FerError):
    """Work stopped by the user (Ctrl-C); what was finished is saved and the message says where.
    Scripts exit with code 130 for it."""
