"""Progress bars for long work, on stderr, as tqdm draws them on a terminal. Sent to a file or a
pipe instead (the log of a long run), a bar redrawn ten times a second filled the log with
carriage returns, and a bar cleared at its end left the next line joined to it: there a bar is
redrawn at most once a minute and left standing at its end, which ends its line."""

from __future__ import annotations

import sys


def _on_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


def bar(iterable=None, **options):
    """``tqdm(iterable, **options)`` on stderr, quieter where stderr is not a terminal."""
    from tqdm import tqdm

    stream = options.setdefault("file", sys.stderr)
    if not _on_terminal(stream):
        options["leave"] = True
        options["mininterval"] = max(options.get("mininterval", 0), 60)
        # Every update counted as it comes: tqdm otherwise starts batching them after its first
        # timed redraw, and its monitor thread then redraws a stale count every 10 s.
        options["miniters"] = 1
    return tqdm(iterable, **options)
