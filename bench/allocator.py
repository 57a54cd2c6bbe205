"""CPU time of a command with and without crystalgen's malloc tuning (docs/benchmarks.md, "Allocator").

Runs the command ``--repeat`` times with ``CRYSTALGEN_MALLOC_TUNING=0`` and as many times with the default
(glibc mmap and trim thresholds raised, crystalgen.runner.allocator), alternating, and reports user, system and
wall seconds of each run from the children's resource usage.

    OMP_NUM_THREADS=1 python bench/allocator.py --repeat 2 --out bench/results/allocator_cdvae.json -- \\
        crystalgen sample cdvae --ckpt RUN/checkpoints/best.ckpt -n 100 --out /tmp/alloc --option n_steps_each=2 --no-progress
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path


def measure(command: list[str], tuned: bool) -> dict:
    """One run of ``command``; its user, system and wall seconds and peak resident memory."""
    env = dict(os.environ, CRYSTALGEN_MALLOC_TUNING="1" if tuned else "0")
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"command failed (exit {os.waitstatus_to_exitcode(status)}): {' '.join(command)}")
    return {"tuned": tuned, "user_s": round(usage.ru_utime, 2), "system_s": round(usage.ru_stime, 2),
            "wall_s": round(wall, 2), "max_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each setting (alternating)")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="the command to time, after --")
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to time after --")
    runs = [measure(command, tuned) for _ in range(args.repeat) for tuned in (False, True)]
    for row in runs:
        print(json.dumps(row), flush=True)
    report = {"command": " ".join(command), "host": platform.node(), "cpus": os.cpu_count(),
              "libc": " ".join(platform.libc_ver()), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
              "load_average_at_end": os.getloadavg(), "runs": runs}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
