"""Holding Ctrl-C and SIGTERM while a piece of work must finish whole: a frame's outputs, an
import, a model being loaded."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


def _restore(handlers: dict) -> None:
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


@contextmanager
def interrupts_held(deliver: bool = True):
    """Ctrl-C or SIGTERM during the block takes effect at its end, so what the block writes
    together (a frame's rows in the log and its picture in the video) is written whole or not at
    all. The signal is raised again on leaving, to whatever handler was there (ignored stays
    ignored); a second one acts at once (a write that hangs can still be stopped); an error the
    block raises goes on as it is, not turned into an interruption. With ``deliver=False`` (the
    last writes of a run: nothing is left to stop) it is not raised; the block's ``as`` target, a
    list, then holds the signals that came."""
    caught = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    previous = {}

    def hold(signum, frame):
        if caught:  # the second: no more waiting
            _restore(previous)
            signal.raise_signal(signum)
        caught.append(signum)

    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(sig)
            if handler is not None:  # None: a handler not installed from Python; left alone
                previous[sig] = handler
                signal.signal(sig, hold)
        yield caught
    except BaseException:
        _restore(previous)
        raise
    _restore(previous)
    if len(caught) == 1 and deliver:
        signal.raise_signal(caught[0])
