"""Where a benchmark figure came from: command, commit, machine, load and library versions.

Every results file under bench/results/ should say how to reproduce it and on what machine and load it was measured
(docs/benchmarks.md cites the files; tests/test_doc_figures.py checks the numbers the docs quote from them).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version

PACKAGES = ("crystalgen-core", "crystalgen-cdvae", "crystalgen-symmcd", "crystalgen-structrepdiff", "torch", "numpy",
            "pymatgen", "matminer", "smact")


def commit() -> str:
    """HEAD of the checkout the script runs from, with ``+dirty`` when tracked files differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True,
                               check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in packages:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def load_average() -> list[float]:
    """1-, 5- and 15-minute load averages, rounded to 2 decimals (the machine has os.cpu_count() cores)."""
    return [round(x, 2) for x in os.getloadavg()]


def provenance() -> dict[str, object]:
    return {
        "command": " ".join(["python", *sys.argv]),
        "commit": commit(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
        "versions": versions(),
        "load_average_at_start": load_average(),
    }
