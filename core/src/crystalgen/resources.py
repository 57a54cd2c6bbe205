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

import logging
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("crystalgen.resources")

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
#: Where the kernel shows cgroups and this process's place in them (module attributes, so tests can point elsewhere).
CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")


def _own_cgroups() -> dict[str, str]:
    """This process's cgroup path per hierarchy: ``""`` for the unified (v2) one, else the v1 controller names
    (``"cpu,cpuacct"``); empty when unknown."""
    try:
        lines = PROC_SELF_CGROUP.read_text().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            out[parts[1]] = parts[2]
    return out


def _levels(base: Path, relative: str) -> list[Path]:
    """``base/relative`` and each of its parents up to ``base``: a quota anywhere above a cgroup binds it too."""
    here = base / relative.strip("/") if relative.strip("/") else base
    levels = [here]
    while here != base and base in here.parents:
        here = here.parent
        levels.append(here)
    return levels


def _read_quota(quota_file: Path, period_file: Path | None) -> float | None:
    """CPUs granted by one quota file (v2 ``cpu.max`` "quota period", v1 ``cfs_quota_us`` + ``cfs_period_us``);
    None when the file is absent, unreadable or says unlimited."""
    try:
        if period_file is None:
            quota, period = quota_file.read_text().split()[:2]
        else:
            quota, period = quota_file.read_text().strip(), period_file.read_text().strip()
        if quota in ("max", "-1"):
            return None
        cpus = float(quota) / float(period)
    except (OSError, ValueError, ZeroDivisionError):
        return None
    return cpus if cpus > 0 else None


def _cgroup_cpu_limit() -> float | None:
    """CPUs allowed by the tightest cgroup CPU quota over this process's cgroup and its parents (v2 ``cpu.max``,
    v1 ``cpu.cfs_quota_us``), None when unlimited. Inside a container the process's cgroup is the root."""
    own = _own_cgroups()
    files: list[tuple[Path, Path | None]] = []
    for level in _levels(CGROUP_ROOT, own.get("", "/")):
        files.append((level / "cpu.max", None))
    v1 = next((path for names, path in own.items() if "cpu" in names.split(",")), "/")
    for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):
        for level in _levels(CGROUP_ROOT / mount, v1):
            files.append((level / "cpu.cfs_quota_us", level / "cpu.cfs_period_us"))
    limits = [cpus for quota, period in files if (cpus := _read_quota(quota, period)) is not None]
    return min(limits) if limits else None


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota (not the machine's count).

    A fractional quota is rounded down (1.5 CPUs -> 1): a second busy thread would be throttled, not run."""
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


#: Where the kernel counts each CPU's time (module attribute, so tests can point elsewhere).
PROC_STAT = Path("/proc/stat")
#: The kernel's per-session scheduling groups switch (module attribute, so tests can point elsewhere).
AUTOGROUP_SWITCH = Path("/proc/sys/kernel/sched_autogroup_enabled")
#: How long :func:`busy_cores` watches the CPUs.
BUSY_WINDOW_S = 0.5


def niced_work_yields() -> bool:
    """Whether other sessions' niced processes give way to ours. With autogroup scheduling on (the default of many
    desktop and VM kernels) each session is one group and groups share the CPUs equally: a process's nice then
    only orders it within its own session, so niced work elsewhere takes its full share and must count as busy."""
    try:
        return AUTOGROUP_SWITCH.read_text().strip() == "0"
    except OSError:
        return True  # no autogroup support: nice orders every process


def _cpu_times(cpus: set[int]) -> tuple[float, float] | None:
    """(total, yielding) jiffies summed over ``cpus`` from /proc/stat; yielding is time a busy thread of ours could
    have had: idle, iowait, and the time of niced processes where nice yields to us (:func:`niced_work_yields`);
    None where unreadable."""
    try:
        lines = PROC_STAT.read_text().splitlines()
    except OSError:
        return None
    niced_yields = niced_work_yields()
    total = idle = 0.0
    seen = False
    for line in lines:
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or not name[3:].isdigit() or int(name[3:]) not in cpus:
            continue
        fields = [float(x) for x in rest.split()[:8]]
        total += sum(fields)
        idle += (fields[1] if niced_yields else 0.0) + fields[3] + (fields[4] if len(fields) > 4 else 0.0)
        seen = True
    return (total, idle) if seen else None


def busy_cores(window: float = BUSY_WINDOW_S) -> float | None:
    """How many of this process's CPUs other work keeps busy right now, measured over ``window`` seconds while this
    process sleeps (niced work counts only where it would not yield to us, :func:`niced_work_yields`); None where
    /proc/stat is unavailable.

    Why not the load average: it is a one-minute moving average, so work that has just ended (an install, the
    previous command) still counts for a minute and would take threads from a machine that is idle now."""
    try:
        cpus = set(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return None
    before = _cpu_times(cpus)
    if before is None:
        return None
    import time

    time.sleep(window)
    after = _cpu_times(cpus)
    if after is None or after[0] <= before[0]:
        return None
    elapsed, idle = after[0] - before[0], after[1] - before[1]
    return len(cpus) * max(0.0, 1.0 - idle / elapsed)


def local_processes() -> int:
    """Processes of this job on this machine: torchrun's ``LOCAL_WORLD_SIZE`` (1 outside torchrun)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return 1


@dataclass(frozen=True)
class ThreadPlan:
    """The intra-op thread count chosen for this process, and why (recorded in run metadata)."""

    threads: int
    source: str  # "option" (--threads / config), "environment" ($CRYSTALGEN_THREADS) or "auto"
    usable_cores: int
    load_average: float | None
    warning: str | None = None
    processes: int = 1  # processes of the job sharing this machine's cores (torchrun's LOCAL_WORLD_SIZE)
    busy_cores: float | None = None  # cores other work kept busy when the plan was made (auto only)

    def as_dict(self) -> dict[str, object]:
        return {"threads": self.threads, "source": self.source, "usable_cores": self.usable_cores,
                "load_average": None if self.load_average is None else round(self.load_average, 2),
                "processes": self.processes,
                "busy_cores": None if self.busy_cores is None else round(self.busy_cores, 2)}


def _thread_count(value: int | str, where: str) -> int:
    """``value`` as a thread count, or a ValueError that names where it came from and what is accepted."""
    text = str(value).strip()
    if isinstance(value, bool) or not text.isdigit():
        raise ValueError(f"{where} must be a whole number of threads (at least 1) or 'auto', got {value!r}")
    if int(text) < 1:
        raise ValueError(f"{where} must be at least 1 (or 'auto'), got {value!r}")
    return int(text)


def plan_threads(requested: int | str | None = None) -> ThreadPlan:
    """Threads for this process: ``requested`` (an int; None or "auto" = decide), else ``$CRYSTALGEN_THREADS``,
    else the usable cores minus those other work keeps busy now (:func:`busy_cores`; the 1-minute load average
    where that cannot be measured), at least one, shared by the job's processes on this machine (under torchrun
    each of N local processes takes 1/N).

    ``warning`` is set when the load average exceeds the usable cores: the machine is oversubscribed and every
    thread of ours competes with another job.
    """
    cores = usable_cores()
    load = load_average()
    processes = local_processes()
    busy: float | None = None
    environment = os.environ.get(THREADS_ENV, "").strip()
    if requested is not None and str(requested).strip().lower() != "auto":
        threads, source = _thread_count(requested, "threads (--threads or the run configuration's 'threads')"), "option"
    elif environment and environment.lower() != "auto":
        threads, source = _thread_count(environment, f"${THREADS_ENV}"), "environment"
    else:
        busy = busy_cores()
        idle_cores = cores - round(busy if busy is not None else (load or 0.0))
        threads, source = max(1, idle_cores // processes), "auto"
    warning = None
    if load is not None and load > cores:
        warning = (f"the 1-minute load average is {load:.1f}, above the {cores} core(s) this process may use: "
                   f"other jobs compete for them; running with {threads} thread(s) (--threads N to choose)")
    return ThreadPlan(threads, source, cores, load, warning, processes, busy)


def apply_threads(plan: ThreadPlan) -> None:
    """Use ``plan.threads`` intra-op threads in torch, and tell worker processes started later the same."""
    import torch

    torch.set_num_threads(plan.threads)
    os.environ[THREADS_ENV] = str(plan.threads)


def apply_process_resources(threads: int | str | None = None) -> dict[str, dict[str, object]]:
    """Plan and apply this process's share of the machine once, at the start of a verb (before any torch work or
    worker pool), log the plan's one-line warning, and return the record every results file carries:
    ``{"threads": ThreadPlan.as_dict()}``."""
    plan = plan_threads(threads)
    apply_threads(plan)
    if os.environ.get("RANK", "0") == "0":  # under torchrun one process speaks for all
        if plan.warning:
            log.warning("%s", plan.warning)
        busy = "" if plan.busy_cores is None else f", {plan.busy_cores:.1f} busy now"
        log.info("threads: %d (%s; %d usable core(s)%s, load average %s)", plan.threads, plan.source,
                 plan.usable_cores, busy, "unknown" if plan.load_average is None else f"{plan.load_average:.2f}")
    return {"threads": plan.as_dict()}


def flat_record(record: Mapping[str, Mapping[str, object]]) -> dict[str, object]:
    """A resources record as flat keys for flat results files (metrics.json): ``{"threads": {"threads": 2,
    "source": "auto"}}`` -> ``{"threads": 2, "threads_source": "auto"}``."""
    return {(group if key == group else f"{group}_{key}"): value
            for group, values in record.items() for key, value in values.items()}


def one_thread_per_worker() -> None:
    """Initializer of worker processes: the workers share the cores among themselves, so each keeps one intra-op
    thread (as torch's DataLoader workers do); set before torch loads in a fresh worker, and in torch when a
    forked worker inherited it."""
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", THREADS_ENV):
        os.environ[name] = "1"
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


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
