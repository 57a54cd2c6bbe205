"""How much of the machine one crystalgen process takes: CPU threads and a memory budget.

Why this exists: a 2-core machine is often shared, and torch's default of one intra-op thread per core makes every
step many times slower when other jobs hold those cores; and a generated crystal can be arbitrarily dense or large,
so any stage that builds a graph from it (an interatomic potential, a property model, a denoiser) must size its
batches by what the graphs will hold, not by a count of crystals, and refuse a crystal that alone would not fit.

Threads: :func:`plan_threads` picks the count (``--threads``, the run config's ``threads``, ``$CRYSTALGEN_THREADS``,
else the cores this process may use, fewer when the load average says they are busy) and :func:`apply_threads`
sets it for torch and for worker processes started afterwards.

Memory: :func:`memory_budget` is the working memory, in bytes, that one batch of any stage may take (``--memory-gb``,
the run config's ``memory_gb``, ``$CRYSTALGEN_MEMORY_GB``, else :data:`DEFAULT_MEMORY_GB`); :func:`pack_by_cost`
packs items into batches under it, and :func:`over_budget_reason` words the refusal of an item that alone exceeds it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

#: Environment variables that carry the settings into worker processes and child commands.
THREADS_ENV = "CRYSTALGEN_THREADS"
MEMORY_ENV = "CRYSTALGEN_MEMORY_GB"

#: Working memory of one batch when nothing else is said: about a quarter of an 8 GB laptop, with the ~1 GB that
#: torch, pymatgen and a model take besides it. core/tests/test_metrics_memory.py runs the default metric set with
#: it under a 3 GB address-space limit (dense crystals refused, a 2,048-atom one priced at 1.5 GB computed).
DEFAULT_MEMORY_GB = 2.0

#: Densest solid known at ambient pressure (osmium, g/cm^3): a generated crystal above this is not physical.
DENSEST_KNOWN_G_CM3 = 22.59

GB = 1024**3


# -- threads -----------------------------------------------------------------------------------------------------
def _cgroup_cpu_limit() -> float | None:
    """CPUs allowed by the cgroup quota (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``), None when unlimited."""
    candidates = [
        (Path("/sys/fs/cgroup/cpu.max"), None),
        (Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us"), Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us")),
    ]
    for quota_file, period_file in candidates:
        try:
            if period_file is None:
                quota, period = quota_file.read_text().split()[:2]
            else:
                quota, period = quota_file.read_text().strip(), period_file.read_text().strip()
        except (OSError, ValueError):
            continue
        if quota in ("max", "-1"):
            return None
        try:
            return max(float(quota) / float(period), 1.0)
        except (ValueError, ZeroDivisionError):
            return None
    return None


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (not the machine's count)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_cpu_limit()
    if quota is not None:
        cores = min(cores, math.floor(quota))
    return max(1, cores)


def load_average() -> float | None:
    """The 1-minute load average, None where the platform has none."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


@dataclass(frozen=True)
class ThreadPlan:
    """The intra-op thread count chosen for this process, and why (recorded in run metadata)."""

    threads: int
    source: str  # "option" (--threads / config), "environment" ($CRYSTALGEN_THREADS) or "auto"
    usable_cores: int
    load_average: float | None
    warning: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {"threads": self.threads, "source": self.source, "usable_cores": self.usable_cores,
                "load_average": None if self.load_average is None else round(self.load_average, 2)}


def plan_threads(requested: int | str | None = None) -> ThreadPlan:
    """Threads for this process: ``requested`` (an int; None or "auto" = decide), else ``$CRYSTALGEN_THREADS``,
    else the usable cores minus those the 1-minute load average shows busy (at least one).

    ``warning`` is set when the load average exceeds the usable cores: the machine is oversubscribed and every
    thread of ours competes with another job.
    """
    cores = usable_cores()
    load = load_average()
    if requested in (None, "auto"):
        requested = os.environ.get(THREADS_ENV) or None
        source = "environment" if requested else "auto"
    else:
        source = "option"
    if requested not in (None, "auto"):
        try:
            threads = int(requested)
        except (TypeError, ValueError):
            raise ValueError(f"threads must be a positive whole number or 'auto', got {requested!r}") from None
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
    else:
        busy = round(load) if load is not None else 0
        threads = max(1, cores - busy)
    warning = None
    if load is not None and load > cores:
        warning = (f"the 1-minute load average is {load:.1f}, above the {cores} core(s) this process may use: "
                   f"other jobs compete for them; running with {threads} thread(s) (--threads N to choose)")
    return ThreadPlan(threads, source, cores, load, warning)


def apply_threads(plan: ThreadPlan) -> None:
    """Use ``plan.threads`` intra-op threads in torch, and tell worker processes started later the same."""
    import torch

    torch.set_num_threads(plan.threads)
    os.environ[THREADS_ENV] = str(plan.threads)


# -- memory ------------------------------------------------------------------------------------------------------
def memory_budget(gb: float | str | None = None) -> int:
    """Working memory of one batch in bytes: ``gb``, else ``$CRYSTALGEN_MEMORY_GB``, else DEFAULT_MEMORY_GB."""
    source = "memory budget"
    if gb is None:
        gb = os.environ.get(MEMORY_ENV) or DEFAULT_MEMORY_GB
        source = f"${MEMORY_ENV}" if os.environ.get(MEMORY_ENV) else source
    try:
        value = float(gb)
    except (TypeError, ValueError):
        raise ValueError(f"{source} must be a number of gigabytes, got {gb!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{source} must be a positive number of gigabytes, got {gb!r}")
    return int(value * GB)


def set_memory_budget(gb: float | str | None) -> int:
    """Make ``gb`` the budget of this process and of the workers it starts later; returns it in bytes."""
    budget = memory_budget(gb)
    if gb is not None:
        os.environ[MEMORY_ENV] = repr(budget / GB)
    return budget


def pack_by_cost(costs: Sequence[float], budget: float, max_items: int | None = None) -> tuple[list[list[int]], list[int]]:
    """Pack items, in order, into batches whose summed cost stays within ``budget`` (and ``max_items``).

    Returns (batches of indices, indices refused): an item whose cost alone exceeds the budget, or is not finite,
    goes into no batch; the caller reports it with :func:`over_budget_reason`.
    """
    batches: list[list[int]] = []
    refused: list[int] = []
    current: list[int] = []
    total = 0.0
    for i, cost in enumerate(costs):
        if not math.isfinite(cost) or cost > budget:
            refused.append(i)
            continue
        if current and (total + cost > budget or (max_items is not None and len(current) >= max_items)):
            batches.append(current)
            current, total = [], 0.0
        current.append(i)
        total += cost
    if current:
        batches.append(current)
    return batches, refused


def neighbours_within(num_atoms: int, volume: float, cutoff: float) -> float:
    """Expected neighbours of one atom within ``cutoff`` Angstrom at the cell's number density (images included).

    Exact on average over positions; what a graph of that cutoff holds per atom, to within the fluctuations of a
    small cell, known before any neighbour search runs.
    """
    if volume <= 0 or not math.isfinite(volume):
        return math.inf
    return num_atoms / volume * 4.0 / 3.0 * math.pi * cutoff**3


def density_phrase(mass_amu: float, num_atoms: int, volume: float) -> str:
    """``density 529 g/cm^3 (0.65 A^3 per atom)``, with a verdict when no known solid is that dense."""
    if volume <= 0 or not math.isfinite(volume):
        return f"cell volume {volume:.3g} A^3"
    density = mass_amu / volume * 1.66053906660  # amu/A^3 -> g/cm^3
    text = f"density {density:.3g} g/cm^3 ({volume / max(num_atoms, 1):.3g} A^3 per atom)"
    if density > DENSEST_KNOWN_G_CM3:
        text += f": physically impossible, denser than any known solid (osmium, {DENSEST_KNOWN_G_CM3} g/cm^3)"
    return text


def over_budget_reason(what: str, cost: float, budget: float, *, structure=None) -> str:
    """Why an item was refused: ``what`` (e.g. "its CHGNet graph") needs ``cost`` bytes, above ``budget``; with the
    crystal's size and density when a pymatgen Structure is given."""
    text = (f"{what} would need about {cost / GB:.2g} GB, above the memory budget of {budget / GB:.2g} GB "
            f"(--memory-gb or ${MEMORY_ENV} to raise it)")
    if structure is not None:
        try:
            phrase = density_phrase(float(structure.composition.weight), len(structure), float(structure.volume))
        except Exception:  # noqa: BLE001 - a broken structure still gets the budget part of the reason
            phrase = None
        if phrase:
            text += f"; {len(structure)} atoms, {phrase}"
    return text
