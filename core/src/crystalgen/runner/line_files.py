"""Line-oriented run files (train_log.csv, samples.jsonl) read as their complete lines, and replaced atomically.

Why: these files are appended to while a run goes on, so a kill can leave the last line cut off. Writers end every
line with a newline; a last line without one is torn and is dropped by every reader (with a warning), so that a
report of an interrupted run shows what was complete instead of failing. A file that must be rewritten (a log cut
back to a checkpoint's step) is written to a temporary file beside it and renamed into place: a crash during the
rewrite leaves the old file whole, never an empty or half one.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

log = logging.getLogger("crystalgen.run_files")


def complete_text(path: str | Path) -> str:
    """The text of ``path`` up to its last newline (a torn last line is dropped with a warning)."""
    text = Path(path).read_text(encoding="utf-8", errors="replace")
    if text and not text.endswith("\n"):
        cut = text.rfind("\n") + 1
        log.warning("%s: ignoring its torn last line %r (the writer was interrupted)", path, text[cut:][:80])
        text = text[:cut]
    return text


def replace_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file in the same folder renamed into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
