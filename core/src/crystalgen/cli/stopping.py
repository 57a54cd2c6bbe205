"""Clean stops on SIGINT and SIGTERM: worker processes ended, unfinished outputs marked, exit codes 130 / 143.

Why: by default SIGTERM kills the main process at once, and its worker processes (parsing CIFs, fingerprints)
carry on, adopted by init, still using the cores; an output folder it was writing looks finished. Here both
signals end every worker process this process started first (``multiprocessing.active_children``: forked and
forkserver workers alike), then raise in the main thread, so ``finally`` blocks and :func:`partial_outputs` run and
the verb exits with 128 + the signal number. A forked worker that inherited the handler dies of the signal instead.
A signal that arrives while workers are being started waits until they all are (crystalgen.worker_start), so that
none is left out of the ones ended. Once the verb has cleaned up, :func:`exit_after_signal` leaves without Python's
exit-time joins: a process pool's manager thread whose worker was killed while sending a result waits for the rest
of that message for ever, and the interpreter's exit joins that thread.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

#: Name of the marker file left in an output folder that a verb did not finish.
PARTIAL = "PARTIAL"


class Terminated(BaseException):
    """SIGTERM, raised in the main thread (a BaseException, like KeyboardInterrupt: only cleanup code sees it)."""


@dataclass
class Stopped:
    """The signal that stopped one :func:`stop_cleanly` block (None while none has). One record per block, so that
    a signal handled in an earlier block (a test, an embedding program) says nothing about a later one."""

    signal: int | None = None


def end_workers(grace: float = 5.0) -> None:
    """Terminate every live child process started through multiprocessing; kill those still alive after ``grace``."""
    children = multiprocessing.active_children()
    for child in children:
        child.terminate()
    deadline = time.monotonic() + grace
    for child in children:
        child.join(max(0.0, deadline - time.monotonic()))
        if child.is_alive():
            child.kill()
            child.join(1.0)


def _handler(owner: int, record: Stopped) -> Callable[[int, FrameType | None], None]:
    def stop(signum: int, frame: FrameType | None) -> None:
        from crystalgen.worker_start import hold

        if os.getpid() != owner:  # a forked worker: die of the signal, as if no handler were installed
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if hold(signum):  # a worker is being started: act once it is known (crystalgen.worker_start)
            return
        record.signal = signum
        signal.signal(signum, signal.SIG_IGN)  # a second signal must not interrupt the cleanup below
        end_workers()
        raise KeyboardInterrupt if signum == signal.SIGINT else Terminated()

    return stop


@contextlib.contextmanager
def stop_cleanly() -> Iterator[Stopped]:
    """Handle SIGINT and SIGTERM as the module docstring says while the block runs (main thread only); the record
    it yields says which signal stopped the block, for :func:`exit_after_signal`."""
    record = Stopped()
    stop = _handler(os.getpid(), record)
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield record
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def exit_after_signal(stopped: Stopped, code: int) -> None:
    """When a signal stopped the verb's block (``stopped``, from :func:`stop_cleanly`; its cleanup has run: workers
    ended, outputs marked), flush the standard streams and exit with ``code`` at once. Python's normal exit joins
    every process pool's manager thread, and the thread of a pool whose worker was killed in the middle of sending a
    result waits for the rest of it for ever (the parent holds the pipe's other end, so no end-of-file comes): the
    verb printed that it stopped and then never exited. Without a signal this returns and the interpreter exits
    normally."""
    if stopped.signal is None:
        return
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):  # a closed or broken stream must not keep the process alive
            stream.flush()
    os._exit(code)


def _cause(exc: BaseException) -> str:
    if isinstance(exc, Terminated):
        return "stopped by SIGTERM"
    if isinstance(exc, KeyboardInterrupt):
        return "stopped by SIGINT (Ctrl-C)"
    return f"stopped by an error ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})"


def _written_since(folder: Path, start: float) -> bool:
    return any(p.stat().st_mtime >= start for p in folder.rglob("*") if p.is_file() and p.name != PARTIAL)


@contextlib.contextmanager
def partial_outputs(folder: str | os.PathLike, verb: str, rerun: str = "",
                    on_earlier: str = "starts again from the beginning and replaces it") -> Iterator[None]:
    """Mark ``folder`` as unfinished when the block ends by an exception after writing into it: a ``PARTIAL`` file
    says which verb stopped, why and when (and ``rerun``, how to continue). A block that finishes removes the marker
    of an earlier, unfinished attempt; when there is one, a note on stderr says so first and what this attempt does
    with it (``on_earlier``: sample and evaluate start again, their results depend only on their inputs and seeds;
    run continues). Nothing is written when the block wrote nothing."""
    folder = Path(folder)
    marker = folder / PARTIAL
    if marker.is_file():
        with contextlib.suppress(OSError):
            earlier = marker.read_text(errors="replace").strip().splitlines()[0][:300]
            print(f"note: {folder} holds the unfinished output of an earlier attempt ({earlier}); crystalgen {verb} "
                  f"{on_earlier}", file=sys.stderr, flush=True)
    start = time.time() - 1.0  # file times may be coarser than the clock
    try:
        yield
    except BaseException as exc:
        if folder.is_dir() and _written_since(folder, start):
            note = f"crystalgen {verb} did not finish writing this folder: {_cause(exc)} at {time.ctime()}.\n"
            with contextlib.suppress(OSError):  # the folder became unwritable: the original error matters more
                (folder / PARTIAL).write_text(note + (f"{rerun}\n" if rerun else ""))
        raise
    (folder / PARTIAL).unlink(missing_ok=True)
