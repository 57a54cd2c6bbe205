"""GemsDiff's MP-20 fidelity run within the issue's CPU budget (docs/gemsdiff.md, "Not done"): train with torchrun on
2 processes for 120 minutes, sample one crystal for each of the first ``--compositions`` MP-20 test compositions,
score them as generation (validity, density EMD, CHGNet-energy EMD, Frechet distance of CHGNet embeddings, against
the whole test split) and as crystal structure prediction (match rate and RMSE at k = 1 against the true structures
of those test crystals), and write the results JSONs.

Steps (each one a command, printed and recorded with its wall and CPU time; a step whose output exists is skipped,
so the same command continues an interrupted run):

    train       torchrun --standalone --nproc_per_node 2 -m crystalgen train gemsdiff --data mp_20 --run-dir WORK/run
                  --no-progress threads=1 data.batch_size=16 data.workers=0 data.max_val_rows=1024
                  trainer.max_minutes=120 trainer.max_epochs=1000 trainer.val_every=1 trainer.checkpoint_every=1
                (the small preset; 2 x 16 = its batch of 32; the time budget ends training; validation on 1,024
                crystals each epoch picks best.ckpt, the EMA weights)
    csp         crystalgen task csp gemsdiff --ckpt WORK/run/checkpoints/best.ckpt --input mp_20:test -n 1000 -k 1
                  --out WORK/csp   (ancestral, T = 100; candidates in WORK/csp, match rate in WORK/csp/metrics)
    generation  crystalgen evaluate WORK/csp --reference mp_20:test --out WORK/generation
                  --metrics validity,wdist_density,wdist_num_elems,wdist_prop,fcd --property-predictor chgnet_energy

Results: OUT_PREFIX_run.json (commands, commit, load, wall and CPU time per step, training steps and epochs, the last
validation losses), OUT_PREFIX_generation_metrics.json and OUT_PREFIX_csp_metrics.json (the metrics.json of each
evaluation). ``--tiny`` checks the whole chain in minutes (a few training steps on 64 crystals, 4 compositions,
DDIM with 5 steps) and writes nothing under bench/results unless --out-prefix says so.

Usage, from the repository root, with nothing else heavy running (2-core CPU; CRYSTALGEN_DATA set):
    OMP_NUM_THREADS=1 python bench/gemsdiff_fidelity.py --work runs/gemsdiff-fidelity-mp20 \
        --out-prefix bench/results/gemsdiff_fidelity_mp20
    OMP_NUM_THREADS=1 nice -n 10 python bench/gemsdiff_fidelity.py --tiny --work /tmp/gemsdiff-fidelity-tiny
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import load_average, provenance  # noqa: E402

GENERATION_METRICS = "validity,wdist_density,wdist_num_elems,wdist_prop,fcd"


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def commands(args: argparse.Namespace, work: Path) -> dict[str, tuple[list[str], Path]]:
    """step -> (command, the file whose presence marks the step done)."""
    run, csp, generation = work / "run", work / "csp", work / "generation"
    train = ["torchrun", "--standalone", "--nproc_per_node", str(args.nproc), "-m", "crystalgen", "train", "gemsdiff",
             "--data", "mp_20", "--run-dir", str(run), "--no-progress", "threads=1", "data.workers=0",
             f"data.batch_size={32 // args.nproc}", "trainer.val_every=1", "trainer.checkpoint_every=1"]
    sample_options = ["--threads", str(args.nproc), "--no-progress", "--seed", "0"]
    if args.tiny:
        train += ["trainer.max_minutes=null", "trainer.max_epochs=2", "data.max_train_rows=64", "data.max_val_rows=32"]
        sample_options += ["--sampler", "ddim", "--steps", "5"]
    else:
        train += [f"trainer.max_minutes={args.minutes}", "trainer.max_epochs=1000", "data.max_val_rows=1024"]
    return {
        "train": (train, run / "checkpoints" / "best.ckpt"),
        "csp": (["crystalgen", "task", "csp", "gemsdiff", "--ckpt", str(run / "checkpoints" / "best.ckpt"), "--input",
                 "mp_20:test", "-n", str(args.compositions), "-k", "1", "--out", str(csp), "--batch-size", "128",
                 "--workers", str(args.nproc), *sample_options], csp / "metrics" / "metrics.json"),
        "generation": (["crystalgen", "evaluate", str(csp), "--reference", "mp_20:test", "--out", str(generation),
                        "--metrics", GENERATION_METRICS, "--property-predictor", "chgnet_energy", "--workers",
                        str(args.nproc), "--no-progress"], generation / "metrics.json"),
    }


def run_step(name: str, cmd: list[str], done: Path) -> dict[str, object]:
    if done.exists():
        print(f"[{name}] {done} exists: not repeated", flush=True)
        return {"command": shlex.join(cmd), "skipped": f"{done} existed"}
    print(f"[{name}] {shlex.join(cmd)}", flush=True)
    cpu, wall = children_cpu(), time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return {"command": shlex.join(cmd), "wall_s": round(time.perf_counter() - wall, 1),
            "cpu_s": round(children_cpu() - cpu, 1), "load_average_after": load_average()}


def training_summary(run: Path) -> dict[str, object]:
    """Steps and epochs of the run's train_log.csv, and the last value logged in each of its columns."""
    log = run / "train_log.csv"
    if not log.exists():
        return {"missing": str(log)}
    rows = list(csv.DictReader(log.open()))
    summary: dict[str, object] = {"last_logged_step": max(int(r["step"]) for r in rows),
                                  "epochs": max(int(r["epoch"]) for r in rows) + 1}
    for row in rows:
        for key, value in row.items():
            try:
                number = float(value)
            except (TypeError, ValueError):
                continue
            if key not in ("step", "epoch"):
                summary[f"last_{key}"] = number
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="directory of the run, the samples and the evaluations")
    parser.add_argument("--out-prefix", help="results files OUT_PREFIX_{run,generation_metrics,csp_metrics}.json")
    parser.add_argument("--minutes", type=float, default=120.0, help="training budget (the issue's: 120)")
    parser.add_argument("--nproc", type=int, default=2, help="torchrun processes (and evaluation workers)")
    parser.add_argument("--compositions", type=int, default=1000, help="first N MP-20 test compositions")
    parser.add_argument("--tiny", action="store_true", help="check the chain: a few steps, 4 compositions, DDIM 5")
    parser.add_argument("--steps", default="train,csp,generation", help="comma-separated subset of the steps")
    args = parser.parse_args()
    if args.tiny:
        args.compositions = min(args.compositions, 4)
    if shutil.which("torchrun") is None:
        raise SystemExit("torchrun is not on PATH: activate the environment crystalgen is installed in")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, object] = {**provenance(), "tiny": args.tiny, "compositions": args.compositions,
                                 "minutes": args.minutes, "nproc": args.nproc, "steps": {}}
    steps = report["steps"]
    assert isinstance(steps, dict)
    chosen = args.steps.split(",")

    def write() -> None:
        report["load_average_at_end"] = load_average()
        text = json.dumps(report, indent=2) + "\n"
        (work / "fidelity_run.json").write_text(text)
        if args.out_prefix:
            Path(f"{args.out_prefix}_run.json").write_text(text)

    for name, (cmd, done) in commands(args, work).items():
        if name in chosen:
            steps[name] = run_step(name, cmd, done)
            if name == "train":
                report["training"] = training_summary(work / "run")
            write()
    for name, source in (("generation_metrics", work / "generation" / "metrics.json"),
                         ("csp_metrics", work / "csp" / "metrics" / "metrics.json")):
        if source.exists() and args.out_prefix:
            shutil.copyfile(source, f"{args.out_prefix}_{name}.json")
    write()


if __name__ == "__main__":
    main()
