"""A GA search's state after each generation, written atomically, so that a stopped
``ga_select.py`` run goes on from its last finished generation instead of starting over.

The file holds the population with its fitness, the best subset so far, every fitness computed
(the cache the Pareto front is drawn from), the random generator's state and the log. Resumed from
it, a search makes the same choices as one never stopped. It also holds what it was computed from:
the GA's settings (except ``jobs`` and ``scheduler``, which change where fitness runs, not its
values) and a digest of the features, and refuses to go on with others."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_savez, set_aside
from .errors import CheckpointError

FORMAT = 1
# Where fitness runs does not change its values, so a search may go on with other --jobs.
NOT_RESULTS = ("jobs", "scheduler")


def fingerprint(x: np.ndarray, y: np.ndarray, config) -> dict:
    """The settings and data a search's results depend on."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(memoryview(np.ascontiguousarray(x)).cast("B"))
    digest.update(np.ascontiguousarray(y, np.int64).tobytes())
    settings = {k: v for k, v in dataclasses.asdict(config).items() if k not in NOT_RESULTS}
    return {"settings": settings, "data": f"{x.shape[0]}x{x.shape[1]} {x.dtype} {digest.hexdigest()}"}


@dataclass
class SearchState:
    """Everything ``run_ga`` needs to go on after a generation (masks as 0/1 lists)."""

    population: list  # each subset as a list of 0/1
    fitness: list  # out-of-bag accuracy of each
    best: list
    best_fitness: float
    cache: dict  # packed mask bytes -> out-of-bag accuracy, in the order computed
    rng_state: tuple
    stale: int
    log: list
    evaluations: int
    cache_hits: int
    seconds: float
    finished: bool  # the search ended (patience or the last generation): only its result is left


def _pack(masks) -> np.ndarray:
    return np.packbits(np.asarray(masks, bool), axis=-1)


def save(path: Path, state: SearchState, fp: dict) -> None:
    n = len(state.best)
    meta = {
        "format": FORMAT,
        "fingerprint": fp,
        "features": n,
        "best_fitness": state.best_fitness,
        "rng_state": [state.rng_state[0], list(state.rng_state[1]), state.rng_state[2]],
        "stale": state.stale,
        "log": state.log,
        "evaluations": state.evaluations,
        "cache_hits": state.cache_hits,
        "seconds": state.seconds,
        "finished": state.finished,
    }
    keys = list(state.cache)
    atomic_savez(
        path,
        meta=np.array(json.dumps(meta)),
        population=_pack(state.population),
        fitness=np.array(state.fitness, np.float64),
        best=_pack(state.best),
        cache_keys=np.frombuffer(b"".join(keys), np.uint8).reshape(len(keys), -1),
        cache_values=np.array([state.cache[k] for k in keys], np.float64),
    )


def _differences(then: dict, now: dict) -> list[str]:
    said = []
    for key in sorted(set(then["settings"]) | set(now["settings"])):
        a, b = then["settings"].get(key), now["settings"].get(key)
        if a != b:
            said.append(f"--{key.replace('_', '-')} {a} then, {b} now")
    if then["data"] != now["data"]:
        said.append(f"other features ({then['data'].split()[0]} then, {now['data'].split()[0]} now, or other values)")
    return said


def load(path: Path, fp: dict) -> SearchState | None:
    """The state saved at ``path`` for this search, or None where there is none (a damaged file
    is set aside with a warning, and the search starts over). Raises ``CheckpointError`` for a
    state of other settings or features, naming each difference and the ways on."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path) as saved:
            meta = json.loads(str(saved["meta"]))
            arrays = {k: saved[k] for k in ("population", "fitness", "best", "cache_keys", "cache_values")}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        set_aside(path, f"the GA's saved search state could not be read ({type(exc).__name__})")
        return None
    if meta.get("format") != FORMAT:
        set_aside(path, f"the GA's saved search state is of another format ({meta.get('format')})")
        return None
    differences = _differences(meta["fingerprint"], fp)
    if differences:
        raise CheckpointError(
            f"{path} holds a stopped search of other settings: {'; '.join(differences)}. Rerun with the "
            f"settings it was started with to go on from it, or delete {path.parent} (or give another "
            "--models-dir) to start over"
        )
    n = meta["features"]
    unpack = lambda packed: np.unpackbits(packed, axis=-1)[..., :n].astype(int)  # noqa: E731
    version, internal, gauss = meta["rng_state"]
    return SearchState(
        population=unpack(arrays["population"]).tolist(),
        fitness=arrays["fitness"].tolist(),
        best=unpack(arrays["best"]).tolist(),
        best_fitness=meta["best_fitness"],
        cache={bytes(k): float(v) for k, v in zip(arrays["cache_keys"], arrays["cache_values"])},
        rng_state=(version, tuple(internal), gauss),
        stale=meta["stale"],
        log=meta["log"],
        evaluations=meta["evaluations"],
        cache_hits=meta["cache_hits"],
        seconds=meta["seconds"],
        finished=meta["finished"],
    )
