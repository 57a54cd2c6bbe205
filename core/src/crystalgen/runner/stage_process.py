"""Run one stage of ``crystalgen run`` as a child ``crystalgen`` command.

Why: the stage that builds the largest graphs (evaluation: CHGNet, property models) is the one the kernel's
out-of-memory killer picks. In a child process that kill ends the stage, not the run: the parent still writes the
report, which says what happened and how to complete the run. The child is the very command the report prints, so
that command is known to work. Its output passes through unchanged (progress bars included), and its tail is kept
to name the reason of a failure.
"""

from __future__ import annotations

import codecs
import io
import os
import signal
import subprocess
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class ChildResult:
    returncode: int
    reason: str  # empty when the child succeeded

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def child_command(argv: list[str]) -> list[str]:
    """``crystalgen <argv>`` run by this interpreter (the same installation, whatever is on PATH)."""
    return [sys.executable, "-m", "crystalgen", *argv]


def run_child(argv: list[str]) -> ChildResult:
    """``crystalgen <argv>`` in a child interpreter with this process's environment (threads and memory settings
    travel in it); stderr is echoed as it comes and its last lines explain a failure."""
    proc = subprocess.Popen(child_command(argv), stderr=subprocess.PIPE, env=dict(os.environ))
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    tail = ""
    assert isinstance(proc.stderr, io.BufferedReader)  # PIPE without text mode
    while chunk := proc.stderr.read1(4096):
        text = decoder.decode(chunk)
        sys.stderr.write(text)
        sys.stderr.flush()
        tail = (tail + text)[-8000:]
    code = proc.wait()
    return ChildResult(code, "" if code == 0 else failure_reason(code, tail))


def failure_reason(returncode: int, stderr_tail: str) -> str:
    """One line: the signal that killed the child, else its own error line, else the last line of its traceback."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        hint = ": the kernel's out-of-memory killer sends it when memory runs out" if name == "SIGKILL" else ""
        return f"killed by {name}{hint}"
    lines = [ln.strip() for ln in stderr_tail.replace("\r", "\n").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ": error: " in ln and ln.startswith("crystalgen ")]
    if errors:
        return errors[-1].split(": error: ", 1)[1]
    last = next((ln for ln in reversed(lines) if not ln.startswith("(set CRYSTALGEN_TRACEBACK")), "")
    return f"exit code {returncode}" + (f": {last}" if last else "")
