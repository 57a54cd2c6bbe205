"""Wall time and peak memory of whole crystalgen commands, quiet or beside a known background load.

Each run starts ``--background`` busy processes (pure Python loops, one core each at full use), waits ``--warmup``
seconds so that the 1-minute load average shows them (as it does on a machine that was busy before), runs the command,
and polls the resident memory of the command's whole process tree (main process and every worker) through /proc
every ``--poll`` seconds: ``peak_tree_rss_mb`` is the largest sum seen, ``peak_process_rss_mb`` the largest single
process (exact, from the kernel's accounting through wait4). With several commands (``--case LABEL -- CMD`` given
more than once) the cases alternate run by run, so that a drift in the machine's load hits all of them alike.

    OMP_NUM_THREADS= python bench/run_resources.py --background 2 --repeat 1 \\
        --out bench/results/run_symmcd_loaded.json \\
        --case old-default -- crystalgen run symmcd --threads 2 --run-dir /tmp/r1 --no-progress \\
        --case new-default -- crystalgen run symmcd --run-dir /tmp/r2 --no-progress

``{run}`` in a command is replaced by the run's index, so that each run can write to its own directory.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _tree_rss_bytes(root: int) -> int:
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_BYTES
        except (OSError, IndexError, ValueError):
            continue
        todo.extend(_children(pid))
    return total


class TreeMemory(threading.Thread):
    """Polls the summed RSS of a process tree until stopped; keeps the peak."""

    def __init__(self, root: int, every: float) -> None:
        super().__init__(daemon=True)
        self.root, self.every, self.peak = root, every, 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            self.peak = max(self.peak, _tree_rss_bytes(self.root))
            self.done.wait(self.every)


def busy_processes(count: int) -> list[subprocess.Popen]:
    """``count`` processes that each keep one core busy (the "known background load")."""
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(count)]


def measure(command: list[str], background: int, poll: float, log: Path | None, warmup: float = 0.0) -> dict:
    load = busy_processes(background)
    try:
        time.sleep(warmup if background else 0.0)  # the 1-minute load average takes a minute to show the busy loops
        load_before = os.getloadavg()
        started = time.perf_counter()
        out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        watcher = TreeMemory(child.pid, poll)
        watcher.start()
        _, status, usage = os.wait4(child.pid, 0)
        wall = time.perf_counter() - started
        watcher.done.set()
        watcher.join()
        if log:
            out.close()
    finally:
        for p in load:
            p.kill()
            p.wait()
    return {"exit_code": os.waitstatus_to_exitcode(status), "wall_s": round(wall, 1),
            "user_s": round(usage.ru_utime, 1), "system_s": round(usage.ru_stime, 1),
            "peak_tree_rss_mb": round(watcher.peak / 2**20), "peak_process_rss_mb": round(usage.ru_maxrss / 1024),
            "load_average_before": [round(x, 2) for x in load_before],
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()]}


def _commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in ("crystalgen-core", "crystalgen-symmcd", "crystalgen-cdvae", "crystalgen-structrepdiff", "torch"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def parse_cases(argv: list[str]) -> list[tuple[str, list[str]]]:
    """``--case LABEL -- CMD ... --case LABEL -- CMD ...`` -> [(label, command)]."""
    cases: list[tuple[str, list[str]]] = []
    i = 0
    while i < len(argv):
        if argv[i] != "--case" or i + 2 >= len(argv) or argv[i + 2] != "--":
            raise SystemExit(f"expected '--case LABEL -- COMMAND ...' at {' '.join(argv[i:i + 3])!r}")
        label, j = argv[i + 1], i + 3
        while j < len(argv) and argv[j] != "--case":
            j += 1
        cases.append((label, argv[i + 3:j]))
        i = j
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--background", type=int, default=0, help="busy processes running beside the command")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each case (cases alternate)")
    parser.add_argument("--warmup", type=float, default=90.0,
                        help="seconds the busy processes run before the command starts (default 90)")
    parser.add_argument("--poll", type=float, default=0.2, help="seconds between memory polls")
    parser.add_argument("--logs", type=Path, help="folder for each run's output (default: discarded)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args, rest = parser.parse_known_args()
    cases = parse_cases(rest)
    if not cases:
        parser.error("give at least one '--case LABEL -- COMMAND'")
    if args.logs:
        args.logs.mkdir(parents=True, exist_ok=True)
    runs = []
    for index in range(args.repeat):
        for label, command in cases:
            concrete = [part.replace("{run}", str(index)) for part in command]
            log = args.logs / f"{label}-{index}.log" if args.logs else None
            row = {"case": label, "run": index, "command": " ".join(concrete),
                   **measure(concrete, args.background, args.poll, log, args.warmup)}
            print(json.dumps(row), flush=True)
            runs.append(row)
    report = {"script": " ".join([sys.argv[0], *sys.argv[1:]]), "commit": _commit(), "host": platform.node(),
              "cpus": os.cpu_count(), "background_busy_processes": args.background, "warmup_s": args.warmup,
              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "versions": _versions(), "runs": runs}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
