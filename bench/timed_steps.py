"""Commands of a long benchmark chain run as resumable steps, each recorded with its wall and CPU time.

Why: the GemsDiff benchmarks (gemsdiff_fidelity.py, gemsdiff_ablation.py) chain trainings, sampling and evaluations
that take hours; a step whose output exists is not repeated, so the same command continues an interrupted chain.
CPU time is the child's own (``os.wait4``), so it stays right when several steps run side by side in threads.
"""

from __future__ import annotations

import csv
import os
import shlex
import subprocess
import time
from pathlib import Path

from provenance import commit, load_average  # bench/ is the script's folder


def run_step(name: str, cmd: list[str], done: Path, log: Path | None = None) -> dict[str, object]:
    """Run ``cmd`` unless ``done`` exists; its output goes to ``log`` (else to this process's), one OpenMP thread.

    Returns the command, the commit it ran on (the steps of a continued chain can span commits), and its wall and CPU
    seconds (the child and every process it waited for, e.g. torchrun's workers), or that it was skipped. A failure
    stops the chain with the command and the log to read."""
    if done.exists():
        print(f"[{name}] {done} exists: not repeated", flush=True)
        return {"command": shlex.join(cmd), "skipped": f"{done} existed"}
    print(f"[{name}] {shlex.join(cmd)}" + (f" > {log}" if log else ""), flush=True)
    code_commit = commit()  # at the start: the checkout may move on while a long step runs
    wall = time.perf_counter()
    out = log.open("w") if log else None
    try:
        process = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT if out else None,
                                   env={**os.environ, "OMP_NUM_THREADS": "1"})
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    finally:
        if out:
            out.close()
    code = process.returncode
    if code != 0:
        raise SystemExit(f"[{name}] failed with exit code {code}: {shlex.join(cmd)}" + (f"; see {log}" if log else ""))
    return {"command": shlex.join(cmd), "commit": code_commit, "wall_s": round(time.perf_counter() - wall, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1), "load_average_after": load_average()}


def training_summary(run: Path) -> dict[str, object]:
    """Optimiser steps and epochs of a run, and the last value of each metric, from its train_log.csv (one row per
    value: step, epoch, metric, value, wall_time)."""
    log = run / "train_log.csv"
    if not log.exists():
        return {"missing": str(log)}
    rows = list(csv.DictReader(log.open()))
    if not rows:
        return {"empty": str(log)}
    summary: dict[str, object] = {"last_logged_step": max(int(r["step"]) for r in rows),
                                  "epochs": max(int(r["epoch"]) for r in rows) + 1}
    for row in rows:
        summary[f"last_{row['metric']}"] = float(row["value"])
    return summary
