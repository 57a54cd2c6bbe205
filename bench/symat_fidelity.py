"""SyMat generation fidelity of one trained checkpoint, beside the paper's Table 1: sample, then evaluate.

Why: issue #19 asks for Perov-5 and Carbon-24 fidelity within a CPU budget, with SyMat's own COV cutoffs and with
CDVAE's. Each sampling arm (``--arm NAME=N[:KEY=VALUE,...]``, sampler options for `crystalgen sample --option`) runs
`crystalgen sample` from the checkpoint with one thread; the arms run side by side (``--jobs``). Each arm's crystals
are then evaluated against the test split with both cutoff sets. The training itself is a separate `torchrun ...
crystalgen train symat` (its command is passed in ``--train-command`` and recorded, with its log's last lines).

    OMP_NUM_THREADS=1 python bench/symat_fidelity.py --ckpt RUN/checkpoints/best.ckpt --data perov_5 \\
        --arm preset=1000 --arm paper=200:n_steps_each=100 --train-log RUN.log --train-command "torchrun ..." \\
        --work /tmp/symat_fidelity --out bench/results/symat_fidelity_perov_5.json

Writes the commands, commit, versions, load averages and, per arm, the sampling seconds, counts and the metrics
with each cutoff set.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from provenance import PACKAGES, load_average, provenance, versions  # bench/ is the script's folder

RECORDED = (*PACKAGES, "crystalgen-symat")
METRICS = ("n_samples", "struct_valid", "comp_valid", "valid", "cov_recall", "cov_precision", "amsd_recall",
           "amsd_precision", "amcd_recall", "amcd_precision", "wdist_density", "wdist_num_elems", "wdist_prop",
           "cov_struct_cutoff", "cov_comp_cutoff")


def crystalgen(*args: str) -> list[str]:
    return [sys.executable, "-m", "crystalgen", *args]


def parse_arm(text: str) -> tuple[str, int, list[str]]:
    """``NAME=N[:K=V,K=V]`` -> (name, number of crystals, sampler options)."""
    name, _, rest = text.partition("=")
    count, _, options = rest.partition(":")
    return name, int(count), [o for o in options.split(",") if o]


def training_summary(log: Path) -> dict[str, object]:
    """Steps, epochs and seconds of the training, from its log's 'training stopped after N steps (...), S s' line and
    the last 'epoch E/...' line, so that the figures can be quoted as numbers."""
    lines = log.read_text().splitlines()
    summary: dict[str, object] = {"log_tail": lines[-6:]}
    for line in lines:
        if line.startswith("epoch ") and "/" in line:
            summary["epochs"] = int(line.split()[1].split("/")[0])
        elif line.startswith("training stopped after "):
            summary["steps"] = int(line.split()[3])
            summary["seconds"] = float(line.rsplit(",", 1)[1].split()[0])
    return summary


def run(command: list[str], log: Path) -> float:
    started = time.perf_counter()
    with log.open("w") as f:
        code = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise SystemExit(f"failed ({code}): {' '.join(command)}; see {log}")
    return round(time.perf_counter() - started, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--data", default="perov_5")
    parser.add_argument("--arm", action="append", required=True, help="NAME=N[:KEY=VALUE,...] sampler options")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-command", default="", help="the training command that made the checkpoint")
    parser.add_argument("--train-log", type=Path, help="its log; the last lines are recorded")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    arms = [parse_arm(a) for a in args.arm]
    result: dict[str, object] = {
        **provenance(), "versions": versions(RECORDED), "checkpoint": str(args.ckpt),
        "train_command": args.train_command,
        "train": training_summary(args.train_log) if args.train_log else None, "arms": {}}
    started = time.perf_counter()
    sampling = {}
    for name, count, options in arms:
        command = crystalgen("sample", "symat", "--ckpt", str(args.ckpt), "-n", str(count), "--seed", str(args.seed),
                             "--out", str(args.work / name), "--threads", "1", "--no-progress",
                             *[x for o in options for x in ("--option", o)])
        log = (args.work / f"{name}-sample.log").open("w")
        sampling[name] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), command)
    for name, (process, command) in sampling.items():
        if process.wait() != 0:
            raise SystemExit(f"sampling {name} failed; see {args.work / f'{name}-sample.log'}")
        info = json.loads((args.work / name / "sampling.json").read_text())
        result["arms"][name] = {"sample_command": " ".join(command), "sampling": info}
    result["sampling_wall_seconds"] = round(time.perf_counter() - started, 1)
    result["load_average_after_sampling"] = load_average()
    for name, _, _ in arms:
        for cutoffs in ("symat", "cdvae"):
            out = args.work / f"{name}-metrics-{cutoffs}"
            command = crystalgen("evaluate", str(args.work / name), "--reference", f"{args.data}:test", "--cov-cutoffs",
                                 cutoffs, "--metrics", "validity,coverage,wdist_density,wdist_num_elems,wdist_prop",
                                 "--threads", "1", "--out", str(out), "--no-progress")
            seconds = run(command, args.work / f"{name}-evaluate-{cutoffs}.log")
            metrics = json.loads((out / "metrics.json").read_text())
            result["arms"][name][f"metrics_{cutoffs}_cutoffs"] = {k: metrics[k] for k in METRICS if k in metrics}
            result["arms"][name][f"evaluate_{cutoffs}"] = {"command": " ".join(command), "seconds": seconds}
            args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")  # partial results survive
    result["load_average_at_end"] = load_average()
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")


if __name__ == "__main__":
    main()
