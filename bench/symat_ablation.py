"""SyMat's ablation (the paper's Table 3): score matching on interatomic distances versus on coordinates, Perov-5.

Why: issue #19 asks for the ablation's direction on Perov-5. Both arms are the same `crystalgen train symat` run
(preset, data, batch, seed, number of epochs) apart from ``model.score_target``; both train a FIXED number of
epochs, not a time budget, so the machine's load cannot favour one arm. The arms train at the same time, one process
and one thread each; then each samples the same number of crystals with the preset's sampler (same seed) and is
evaluated with the suite against the test split, with SyMat's COV cutoffs and with CDVAE's.

    OMP_NUM_THREADS=1 python bench/symat_ablation.py --epochs 8 --samples 500 --work /tmp/symat_ablation \\
        --out bench/results/symat_ablation_perov_5.json

Writes the commands, commit, versions, load averages, and per arm: training steps and seconds, final losses,
sampling seconds and the metrics.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import time
from pathlib import Path

from provenance import PACKAGES, load_average, provenance, versions  # bench/ is the script's folder

RECORDED = (*PACKAGES, "crystalgen-symat")
ARMS = {"distance": "model.score_target=distance", "coordinate": "model.score_target=coordinate"}
METRICS = ("n_samples", "struct_valid", "comp_valid", "valid", "cov_recall", "cov_precision", "amsd_recall",
           "amsd_precision", "wdist_density", "wdist_num_elems", "wdist_prop", "cov_struct_cutoff", "cov_comp_cutoff")


def crystalgen(*args: str) -> list[str]:
    return [sys.executable, "-m", "crystalgen", *args]


def last_values(run_dir: Path) -> dict[str, float]:
    """The last logged value of each training metric (train_log.csv rows: step, epoch, metric, value, wall_time)."""
    out: dict[str, float] = {}
    with (run_dir / "train_log.csv").open() as f:
        for row in csv.DictReader(f):
            out[row["metric"]] = float(row["value"])
            out["step"] = float(row["step"])
    return out


def timed(command: list[str], log: Path) -> dict[str, object]:
    started = time.perf_counter()
    with log.open("w") as f:
        code = subprocess.run(command, stdout=f, stderr=subprocess.STDOUT).returncode
    if code != 0:
        raise SystemExit(f"failed ({code}): {' '.join(command)}; see {log}")
    return {"command": " ".join(command), "seconds": round(time.perf_counter() - started, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="perov_5")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    result: dict[str, object] = {**provenance(), "versions": versions(RECORDED), "arms": {}}
    # both arms train at once (one process each), so that they share whatever else the machine does
    training: dict[str, tuple[subprocess.Popen, float, list[str]]] = {}
    for arm, override in ARMS.items():
        run_dir = args.work / arm
        command = crystalgen("train", "symat", "--data", args.data, "--run-dir", str(run_dir), "--no-progress",
                             "threads=1", f"data.batch_size={args.batch_size}", "trainer.max_minutes=null",
                             f"trainer.max_epochs={args.epochs}", f"trainer.seed={args.seed}", override)
        log = (args.work / f"{arm}-train.log").open("w")
        training[arm] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), time.perf_counter(), command)
    for arm, (process, started, command) in training.items():
        if process.wait() != 0:
            raise SystemExit(f"training {arm} failed; see {args.work / f'{arm}-train.log'}")
        result["arms"][arm] = {"train": {"command": " ".join(command), "seconds": round(time.perf_counter() - started, 1),
                                         "last_logged": last_values(args.work / arm)}}
    result["load_average_after_training"] = load_average()
    for arm in ARMS:
        run_dir = args.work / arm
        samples = run_dir / "samples"
        entry = result["arms"][arm]
        entry["sample"] = timed(crystalgen("sample", "symat", "--ckpt", str(run_dir / "checkpoints" / "best.ckpt"),
                                           "-n", str(args.samples), "--seed", str(args.seed), "--out", str(samples),
                                           "--threads", "1", "--no-progress"), args.work / f"{arm}-sample.log")
        for cutoffs in ("symat", "cdvae"):
            out = run_dir / f"metrics-{cutoffs}"
            entry[f"evaluate_{cutoffs}"] = timed(
                crystalgen("evaluate", str(samples), "--reference", f"{args.data}:test", "--cov-cutoffs", cutoffs,
                           "--metrics", "validity,coverage,wdist_density,wdist_num_elems,wdist_prop", "--threads", "1",
                           "--out", str(out), "--no-progress"), args.work / f"{arm}-evaluate-{cutoffs}.log")
            metrics = json.loads((out / "metrics.json").read_text())
            entry[f"metrics_{cutoffs}_cutoffs"] = {k: metrics[k] for k in METRICS if k in metrics}
        args.out.write_text(json.dumps(result, indent=1) + "\n")  # partial results survive
    result["load_average_at_end"] = load_average()
    args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
