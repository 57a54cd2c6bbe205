"""Line-oriented run files (train_log.csv, samples.jsonl) read as their complete lines, and replaced atomically.

Why: these files are appended to while a run goes on, so a kill can leave the last line cut off. Writers end every
line with a newline; a last line without one is torn and is dropped by every reader (with a warning), so that a
report of an interrupted run shows what was complete instead of failing. A file that must be rewritten (a log cut
back to a checkpoint's step) is replaced atomically (crystalgen.atomic): a crash during the rewrite leaves the old
file whole, never an empty or half one.
"""

from __future__ import annotations

import logging
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
