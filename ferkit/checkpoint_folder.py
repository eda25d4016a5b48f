"""The folder a training run keeps its checkpoints in, and the only files a run may remove."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .atomic import atomic_write_text
from .errors import CheckpointError

# A folder this program made for checkpoints carries MARKER; only the files named below are ever
# removed from it, so a --checkpoint-dir pointed at a folder of the user's own cannot lose them.
MARKER = ".ferkit-checkpoint"
LOCK = ".lock"
OWN_PATTERNS = (
    "state.json",
    "best.keras",
    "epoch[0-9]*.keras",
    "swa[0-9]*.npz",  # the running weight average (--swa-epochs)
    "teacher.npz",
    "teacher.npz.damaged",
    ".*.tmp-*",  # atomic writes cut short by a kill (ferkit.atomic.replacing)
    "tmp*.keras",  # the same, as older versions named them
    "tmp*.tmp",
    "tmp*.tmp.npz",
)


class CheckpointFolder:
    """The checkpoint folder of one run: refused when it holds files that are not a checkpoint's,
    marked as a checkpoint folder, locked while the run uses it (a second run with the same folder
    is refused at its start, not broken at its end), and cleaned up afterwards by removing only
    the files a run writes there. The folder itself is removed only if this program created it."""

    def __init__(self, path: Path):
        self.path = Path(path).expanduser()
        self._lock_fd = None

    def _own_files(self):
        for pattern in OWN_PATTERNS:
            yield from self.path.glob(pattern)

    def check(self) -> None:
        """Refuse a path that is a file, or a folder holding files that are not a checkpoint's."""
        if self.path.exists() and not self.path.is_dir():
            raise CheckpointError(f"checkpoint folder {self.path} is a file; give a folder (--checkpoint-dir)")
        marked = (self.path / MARKER).exists() or (self.path / "state.json").exists()  # or an older run's
        if self.path.exists() and not marked:
            foreign = sorted(p.name for p in self.path.iterdir())
            if foreign:
                raise CheckpointError(
                    f"checkpoint folder {self.path} already holds files that are not a training checkpoint "
                    f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); a run removes its checkpoint "
                    f"files when it ends, so it only uses a new or empty folder. Give another --checkpoint-dir "
                    f"(or leave it out: models/checkpoints/NAME)."
                )

    def open(self) -> None:
        """Check, create or adopt, and lock the folder. Raises ``CheckpointError`` naming the fix."""
        self.check()
        # The folders this run makes, deepest first (models/checkpoints/NAME makes checkpoints/ too
        # on a first run): removed again at the end if they are empty then.
        made = [str(p.absolute()) for p in (self.path, *self.path.parents) if not p.exists()]
        self.path.mkdir(parents=True, exist_ok=True)
        self._lock()
        if not (self.path / MARKER).exists():
            note = {"made_by": "train_cnn.py (ferkit)", "created_folder": bool(made), "created_folders": made}
            atomic_write_text(self.path / MARKER, json.dumps(note) + "\n")

    def _lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # Windows: no advisory locks; concurrent runs are not detected there
            return
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise CheckpointError(
                f"another training run (process {holder}) is using the checkpoint folder {self.path}; wait for it "
                f"to finish, or give this run another --name or --checkpoint-dir."
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock_fd = fd  # held until release(); the system drops it if the process dies

    def clear(self) -> None:
        """Remove the checkpoint files (``--fresh``); the folder stays marked and locked."""
        for path in self._own_files():
            path.unlink(missing_ok=True)

    def remove(self) -> None:
        """A finished run: remove the checkpoint files and the mark; the folder too, and the
        folders above it that the run made, if this program created them and nothing else is in them."""
        marker = self.path / MARKER
        try:
            note = json.loads(marker.read_text())
            # An older run's mark names only whether the folder itself was made.
            made = note.get("created_folders", [str(self.path)] if note.get("created_folder") else [])
        except (OSError, ValueError, AttributeError):
            made = []
        self.clear()
        marker.unlink(missing_ok=True)
        (self.path / LOCK).unlink(missing_ok=True)
        self.release()
        for folder in made:  # deepest first
            try:  # rmdir only removes an empty folder: a file the user (or another run) put there stays
                Path(folder).rmdir()
            except OSError:
                break

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
