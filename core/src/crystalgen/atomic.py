"""Files replaced atomically: written beside the target, flushed to disk, then renamed into place.

Why: checkpoints, caches, logs and results are read by resumed runs, reports and other processes. Whatever stops
the writer (a kill, a full disk, an exception), a reader sees the old file or the new one, never a torn one, and
no temporary file is left behind by a failure that Python sees. A temporary file is named ``.<name>.<random>.tmp``
beside its target, so that what a hard kill leaves can be recognised and cleaned (runner.checkpoint does).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


def temporary_files(path: Path) -> list[Path]:
    """Temporary files that interrupted replacements of ``path`` left beside it."""
    import glob

    return sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))


@contextmanager
def replacing(path: str | os.PathLike[str], mode: str = "wb", *, encoding: str | None = None,
              newline: str | None = None, permissions: int | None = None) -> Iterator[IO[Any]]:
    """A handle whose content replaces ``path`` when the block ends without an exception (``permissions``: the
    new file's mode; by default the private 0600 of a temporary file)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if permissions is not None:
            os.chmod(tmp, permissions)
        with os.fdopen(fd, mode, encoding=encoding, newline=newline) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def replace_text(path: str | os.PathLike[str], text: str) -> Path:
    """Replace ``path`` by ``text`` (UTF-8, line endings as given)."""
    with replacing(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(text)
    return Path(path)


def replace_bytes(path: str | os.PathLike[str], *parts: bytes, permissions: int | None = None) -> Path:
    """Replace ``path`` by the concatenation of ``parts``."""
    with replacing(path, "wb", permissions=permissions) as handle:
        for part in parts:
            handle.write(part)
    return Path(path)
