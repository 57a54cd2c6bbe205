"""Opening files that a user names: regular files only, each below a size limit.

Why: a folder of CIFs may hold anything with a ``.cif`` name. Reading a FIFO blocks forever, a symbolic link to
``/dev/zero`` fills the memory, and a huge file stalls a run before anything useful happens. Every reader of user
input (CIF / extxyz / CSV files, sample directories) opens through :func:`open_checked`, which opens without
blocking, then checks what was opened (``fstat``, so a file swapped after a listing is still caught): symbolic
links are followed only to regular files; FIFOs, devices, sockets and directories are refused by name.

The limit per file is ``DEFAULT_MAX_FILE_MB`` megabytes (10^6 bytes) for crystal data, ``CONFIG_MAX_FILE_MB`` for
a YAML configuration (``--config``) and ``CHECKPOINT_MAX_FILE_MB`` for a checkpoint (``--ckpt``, ``--resume``: a
paper-sized model with its optimiser and EMA states is about half a gigabyte); the environment variable
``CRYSTALGEN_MAX_FILE_MB`` (which ``--max-file-mb`` sets for the process and its workers) replaces all three.
"""

from __future__ import annotations

import io
import os
import stat
from pathlib import Path
from typing import IO

ENV_MAX_FILE_MB = "CRYSTALGEN_MAX_FILE_MB"
DEFAULT_MAX_FILE_MB = 512.0
CONFIG_MAX_FILE_MB = 10.0
CHECKPOINT_MAX_FILE_MB = 4000.0
_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


class RefusedFileError(ValueError):
    """A user file that is not read: not a regular file, or above the size limit. ``kind`` is ``not_regular_file``
    or ``too_large``; the message names the file and what to do."""

    def __init__(self, path: str | Path, kind: str, cause: str) -> None:
        self.path, self.kind, self.cause = Path(path), kind, cause
        super().__init__(f"{path}: {cause}")


def max_file_bytes(default_mb: float = DEFAULT_MAX_FILE_MB) -> int:
    """The size limit per input file in bytes (``CRYSTALGEN_MAX_FILE_MB``, else ``default_mb``: the limit of the
    kind of file read)."""
    text = os.environ.get(ENV_MAX_FILE_MB, "").strip()
    if not text:
        return int(default_mb * 1e6)
    try:
        megabytes = float(text)
    except ValueError:
        megabytes = -1.0
    if not megabytes > 0 or megabytes == float("inf"):
        raise ValueError(f"{ENV_MAX_FILE_MB}={text!r}: expected a positive number of megabytes (e.g. 2000)")
    return int(megabytes * 1e6)


def set_max_file_mb(megabytes: float | None) -> None:
    """Set the limit for this process and the workers it starts (``--max-file-mb``); None keeps it."""
    if megabytes is None:
        return
    if not megabytes > 0:
        raise ValueError(f"--max-file-mb {megabytes}: expected a positive number of megabytes")
    os.environ[ENV_MAX_FILE_MB] = repr(float(megabytes))


def _what(mode: int) -> str | None:
    return next((name for test, name in _KINDS if test(mode)), None if stat.S_ISREG(mode) else "not a regular file")


def _refuse_kind(path: Path, mode: int) -> RefusedFileError:
    what = _what(mode)
    if path.is_symlink():
        return RefusedFileError(path, "not_regular_file", f"is a symbolic link to {os.path.realpath(path)}, {what}; "
                                                          "only regular files are read")
    return RefusedFileError(path, "not_regular_file", f"is {what}, not a regular file; only regular files are read")


def _size(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 1e6 else f"{n:,} bytes"


def _refuse_size(path: Path, size: int, limit: int) -> RefusedFileError:
    return RefusedFileError(path, "too_large", f"is {_size(size)}, above the limit of {_size(limit)} per input file; "
                                               f"raise it with --max-file-mb or {ENV_MAX_FILE_MB}")


def check_file(path: str | Path, default_mb: float = DEFAULT_MAX_FILE_MB) -> Path:
    """``path`` when it is a regular file (or a symbolic link to one) within the size limit; else
    RefusedFileError (FileNotFoundError when it does not exist). Opens nothing: for listings and early checks."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        broken = " (a symbolic link whose target is missing)" if path.is_symlink() else ""
        raise FileNotFoundError(f"{path} does not exist{broken}") from None
    if not stat.S_ISREG(info.st_mode):
        raise _refuse_kind(path, info.st_mode)
    limit = max_file_bytes(default_mb)
    if info.st_size > limit:
        raise _refuse_size(path, info.st_size, limit)
    return path


def open_checked(path: str | Path, *, text: bool = True, newline: str | None = None,
                 default_mb: float = DEFAULT_MAX_FILE_MB) -> IO:
    """Open ``path`` for reading after the checks of :func:`check_file`, made on the opened file itself.

    The open never blocks (``O_NONBLOCK``: a FIFO without a writer opens at once and is then refused). Text is read
    as UTF-8 with undecodable bytes replaced, so one bad byte makes one bad entry, not an unreadable file.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist") from None
    except OSError:  # e.g. a socket (ENXIO): name what it is when it is not a regular file
        check_file(path, default_mb)
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _refuse_kind(path, info.st_mode)
        limit = max_file_bytes(default_mb)
        if info.st_size > limit:
            raise _refuse_size(path, info.st_size, limit)
        os.set_blocking(fd, True)
        handle = open(fd, "rb", closefd=True)  # noqa: SIM115 - returned to the caller, who closes it
    except BaseException:
        os.close(fd)
        raise
    if not text:
        return handle
    return io.TextIOWrapper(handle, encoding="utf-8", errors="replace", newline=newline)


def read_bytes(path: str | Path, default_mb: float = DEFAULT_MAX_FILE_MB) -> bytes:
    """The bytes of a checked user file (see :func:`open_checked`), at most the limit even if it grows meanwhile."""
    limit = max_file_bytes(default_mb)
    with open_checked(path, text=False, default_mb=default_mb) as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise _refuse_size(Path(path), len(data), limit)
    return data


def read_text(path: str | Path, default_mb: float = DEFAULT_MAX_FILE_MB) -> str:
    """The text of a checked user file (see :func:`open_checked`), at most the limit even if it grows meanwhile."""
    return read_bytes(path, default_mb).decode("utf-8", errors="replace")
