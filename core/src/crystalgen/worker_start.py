"""Stop signals (SIGINT, SIGTERM) held while worker processes start.

Why: a verb stopped by a signal ends every worker process that multiprocessing knows (``active_children``,
crystalgen.cli.stopping) before it exits. A process is known only once ``Process.start`` returns; a signal handled
between its fork and that moment ended the others and left it running: a pool worker then waits for ever on its task
queue after the verb exits (a forked worker holds both ends of the queue's pipe, so it never reads an end of file).
Code that starts workers does it inside :func:`starting_workers`; a stop handler asks :func:`hold` first, and a held
signal is raised again when the block ends, every worker then known.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

_depth = 0
_held: int | None = None


@contextlib.contextmanager
def starting_workers() -> Iterator[None]:
    """Run the block (which starts worker processes) with stop signals held; the first one that arrived is raised
    again when the outermost block ends."""
    global _depth, _held
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _held is not None:
            signum, _held = _held, None
            signal.raise_signal(signum)  # runs the handler now, in this thread


def hold(signum: int) -> bool:
    """For a stop handler: True when workers are being started, in which case ``signum`` is kept for the end of the
    block and the handler must return without acting."""
    global _held
    if _depth == 0:
        return False
    if _held is None:
        _held = signum
    return True
