"""Keep freed memory in the process instead of returning it to the OS after every tensor (glibc malloc).

glibc serves blocks above its mmap threshold with fresh mmap pages and gives the top of the heap back (trim) as soon
as it is free. A sampler or optimiser that allocates and frees the same large intermediates at every step then pays
page faults and zeroing of new pages each time: on the CDVAE decoder (100 Perov-5 crystals, one thread) a quarter
of the CPU time was in the kernel, and raising both thresholds cut the wall time of `crystalgen sample` by about a
quarter (docs/benchmarks.md, "Allocator"). The price is that the process keeps up to the threshold of freed memory.

Used by the ``crystalgen`` command and the benchmark scripts; a library caller can call :func:`keep_freed_memory`
itself. It changes nothing when the C library is not glibc, when ``CRYSTALGEN_MALLOC_TUNING=0``, or when the user
already chose settings through ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or ``GLIBC_TUNABLES``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform

log = logging.getLogger("crystalgen")

#: mallopt parameter numbers from glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3

#: 256 MiB: above the largest per-step intermediates of the shipped models at their default batch sizes
DEFAULT_THRESHOLD = 256 * 1024 * 1024

USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def keep_freed_memory(threshold: int = DEFAULT_THRESHOLD) -> bool:
    """Raise glibc's mmap and trim thresholds to ``threshold`` bytes; True when they were set."""
    if threshold <= 0:
        raise ValueError(f"malloc threshold must be positive, got {threshold}")
    if os.environ.get("CRYSTALGEN_MALLOC_TUNING", "1") == "0" or any(key in os.environ for key in USER_SETTINGS):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        done = bool(libc.mallopt(M_MMAP_THRESHOLD, threshold)) and bool(libc.mallopt(M_TRIM_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False
    log.debug("glibc malloc: mmap and trim thresholds set to %d bytes (%s)", threshold, "ok" if done else "refused")
    return done
