"""GemsDiff's ablations on MP-20 (docs/gemsdiff.md): arms of the small preset that differ only in config overrides.

Why: issue #20 asks for ablation (a) (decoding from the noisy cell) reproduced in direction and for the trap that
changes results most, the torus not mixed at T while sampling starts from uniform, measured; ablation (d) (no
Lie-algebra lattice) had not been run on MP-20. Every arm is the same `crystalgen train gemsdiff --data mp_20` (small
preset, batch 32, seed, data order, rows, number of epochs) apart from its overrides, and trains a FIXED number of
epochs, never a time budget, so that the machine's load cannot favour one arm. Arms run side by side (``--jobs``
processes of one thread each). Each arm then samples one crystal for each of the same first ``--compositions``
MP-20 test compositions from its last checkpoint (EMA weights; the same number of steps for every arm) with the same
sampler and seed, scored as crystal structure prediction (match rate and RMSE at k = 1 against those test crystals)
and as generation against the whole test split (validity, density, element-count and CHGNet-energy distances, and
the Frechet distance of CHGNet embeddings).

Default arms (``--arm NAME=KEY=VALUE [KEY=VALUE ...]`` replaces them; ``NAME=`` is the preset as it is):
    paper       the small preset: the paper's method at CPU size, cell decoded from the identity with the volume prior
    unit_cube   model.volume_prior=false                        the cell decoded from the unit cube itself (eq. 11):
                                                                the baseline of ablation (a), which cannot take the
                                                                volume prior
    noisy_cell  model.denoiser.decode_from=noisy model.volume_prior=false
                                                                ablation (a): decode from the noisy cell (eq. 9c)
    matrix      model.lattice_space=matrix                      ablation (d): DDPM on the cell's 9 entries
    torus6e3    model.processes.frac_coords.beta_end=6.0e-3     the unmixed torus at T: sigma_T 0.309 -> 0.510
    paper_seed1 trainer.seed=1                                  the preset again with another initialisation and data
                                                                order (same sampler seed): how far two trainings of
                                                                one arm differ, the scale any difference must beat
Compare noisy_cell with unit_cube (the direction of Table 4's (a)), matrix and torus6e3 with paper, and each
difference with the one between paper and paper_seed1.

Steps per arm (each a command, printed and recorded with its wall and CPU time; a step whose output exists is
skipped, so the same command continues an interrupted run; an interrupted training resumes from its last.ckpt):
    train       python -m crystalgen train gemsdiff --data mp_20 --run-dir WORK/ARM/run --no-progress threads=1
                  data.workers=0 data.batch_size=32 trainer.max_minutes=null trainer.max_epochs=EPOCHS
                  trainer.seed=SEED [data.max_train_rows=ROWS] data.max_val_rows=256 OVERRIDES
    csp         python -m crystalgen task csp gemsdiff --ckpt WORK/ARM/run/checkpoints/last.ckpt --input mp_20:test
                  -n COMPOSITIONS -k 1 --seed SEED --out WORK/ARM/csp --threads 1 --workers 1
                  (ancestral, T = 100 unless --sampler/--steps)
    generation  python -m crystalgen evaluate WORK/ARM/csp --reference mp_20:test --out WORK/ARM/generation
                  --metrics validity,wdist_density,wdist_num_elems,wdist_prop,fcd --property-predictor chgnet_energy
                  --workers 1 --threads 1   (Table 4's columns: CHGNet energies and embeddings stand in for ALIGNN's;
                  the reference's are computed once, about 2 CPU-minutes, then cached)

Arm length and cost of the defaults (``--epochs 10``, all 11,249 rows of the shared MP-20 training split: 352 steps
of 32 crystals per epoch, 3,520 per arm; 1,000 compositions), as measured on 2 cores with two arms side by side
(bench/results/gemsdiff_ablation_mp20_2026-12-07.json): training about 690 CPU-seconds per arm (0.2 per step),
CSP about 215 (sampling at T = 100 and matching), the generation metrics seconds once CHGNet has seen the reference
(about 2 CPU-minutes, once, cached). Six arms, two at a time (``--jobs 2``), take about 50 minutes. A longer arm
scales the training part only (about 70 CPU-seconds per epoch).

Usage, from the repository root (2-core CPU, nothing else heavy running; CRYSTALGEN_DATA set):
    OMP_NUM_THREADS=1 python bench/gemsdiff_ablation.py --work runs/gemsdiff-ablation-mp20 --jobs 2 \\
        --out bench/results/gemsdiff_ablation_mp20_DATE.json      # DATE: the day of the run
    OMP_NUM_THREADS=1 nice -n 19 python bench/gemsdiff_ablation.py --tiny --work /tmp/gemsdiff-ablation-tiny \\
        --out /tmp/gemsdiff-ablation-tiny/ablation.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from provenance import PACKAGES, load_average, provenance, versions  # bench/ is the script's folder
from timed_steps import run_step, training_summary

RECORDED = (*PACKAGES, "crystalgen-gemsdiff")
ARMS = {"paper": [], "unit_cube": ["model.volume_prior=false"],
        "noisy_cell": ["model.denoiser.decode_from=noisy", "model.volume_prior=false"],
        "matrix": ["model.lattice_space=matrix"], "torus6e3": ["model.processes.frac_coords.beta_end=6.0e-3"],
        "paper_seed1": ["trainer.seed=1"]}
GENERATION_METRICS = "validity,wdist_density,wdist_num_elems,wdist_prop,fcd"  # Table 4's columns, CHGNet for ALIGNN
KEPT = ("n_samples", "valid", "struct_valid", "comp_valid", "wdist_density", "wdist_density_n", "wdist_num_elems",
        "wdist_num_elems_n", "wdist_prop", "wdist_prop_n", "fcd", "fcd_n", "match_rate@1", "rms_dist@1", "csp_n_matched@1", "csp_n")


def crystalgen(*args: str) -> list[str]:
    return [sys.executable, "-m", "crystalgen", *args]


def parse_arm(text: str) -> tuple[str, list[str]]:
    """``NAME=KEY=VALUE [KEY=VALUE ...]`` -> (name, overrides); ``NAME=`` has none."""
    name, sep, rest = text.partition("=")
    if not sep or not name:
        raise SystemExit(f"--arm {text!r}: write NAME=OVERRIDES, e.g. noisy_cell=model.denoiser.decode_from=noisy")
    return name, shlex.split(rest)


def train_command(args: argparse.Namespace, run: Path, overrides: list[str]) -> list[str]:
    """A fresh training, or the continuation of one that was interrupted after its first checkpoint."""
    if (run / "checkpoints" / "last.ckpt").exists():
        return crystalgen("train", "gemsdiff", "--resume", str(run), "--no-progress")
    if run.exists():
        shutil.rmtree(run)  # stopped before any checkpoint: nothing to continue
    rows = [f"data.max_train_rows={args.train_rows}"] if args.train_rows else []
    return crystalgen("train", "gemsdiff", "--data", args.data, "--run-dir", str(run), "--no-progress", "threads=1",
                      "data.workers=0", f"data.batch_size={args.batch_size}", "trainer.max_minutes=null",
                      f"trainer.max_epochs={args.epochs}", f"trainer.seed={args.seed}", *rows,
                      f"data.max_val_rows={args.val_rows}", "trainer.val_every=1", "trainer.checkpoint_every=1",
                      *overrides)


def arm_steps(args: argparse.Namespace, arm: Path, overrides: list[str]) -> dict[str, tuple[list[str], Path]]:
    """step -> (command, the file whose presence marks the step done)."""
    run, csp, generation = arm / "run", arm / "csp", arm / "generation"
    sampler = (["--sampler", args.sampler] if args.sampler else []) + (["--steps", str(args.steps)] if args.steps else [])
    return {
        # the step's record, written when the training has finished, marks it done
        "train": (train_command(args, run, overrides) if not (arm / "train.json").exists() else [], arm / "train.json"),
        "csp": (crystalgen("task", "csp", "gemsdiff", "--ckpt", str(run / "checkpoints" / "last.ckpt"), "--input",
                           f"{args.data}:test", "-n", str(args.compositions), "-k", "1", "--seed", str(args.seed),
                           "--out", str(csp), "--batch-size", "128", "--threads", "1", "--workers", "1",
                           "--no-progress", *sampler), csp / "metrics" / "metrics.json"),
        "generation": (crystalgen("evaluate", str(csp), "--reference", f"{args.data}:test", "--out", str(generation),
                                  "--metrics", GENERATION_METRICS, "--property-predictor", "chgnet_energy",
                                  "--workers", "1", "--threads", "1", "--no-progress"),
                       generation / "metrics.json"),
    }


def kept(path: Path) -> dict[str, object]:
    metrics = json.loads(path.read_text())
    return {k: metrics[k] for k in KEPT if k in metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arm", action="append", help="NAME=KEY=VALUE [KEY=VALUE ...] (repeatable; default: the 6 arms above)")
    parser.add_argument("--data", default="mp_20")
    parser.add_argument("--epochs", type=int, default=10, help="fixed number of training epochs of every arm")
    parser.add_argument("--train-rows", type=int, default=0, help="first N training crystals (0: all)")
    parser.add_argument("--val-rows", type=int, default=256, help="first N validation crystals (losses logged)")
    parser.add_argument("--batch-size", type=int, default=32, help="the small preset's")
    parser.add_argument("--compositions", type=int, default=1000, help="first N test compositions, one crystal each")
    parser.add_argument("--sampler", help="sampler of every arm (default: the model's, ancestral)")
    parser.add_argument("--steps", type=int, help="sampling steps (default: T = 100)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (data order) and sampling seed")
    parser.add_argument("--jobs", type=int, default=2, help="arms run side by side, one thread each")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--tiny", action="store_true", help="check the chain: 64 crystals, 2 epochs, 4 compositions")
    args = parser.parse_args()
    if args.tiny:
        args.train_rows, args.val_rows, args.epochs, args.compositions = 64, 32, 2, 4
    arms = dict(parse_arm(a) for a in args.arm) if args.arm else ARMS
    args.work.mkdir(parents=True, exist_ok=True)
    result: dict[str, object] = {
        **provenance(), "versions": versions(RECORDED), "tiny": args.tiny, "data": args.data, "epochs": args.epochs,
        "train_rows": args.train_rows or "all", "val_rows": args.val_rows, "batch_size": args.batch_size,
        "compositions": args.compositions, "sampler": args.sampler or "model default", "steps": args.steps or "T",
        "seed": args.seed, "jobs": args.jobs, "checkpoint": "last (EMA weights)"}
    arms_result: dict[str, dict[str, object]] = {}
    result["arms"] = arms_result
    lock = threading.Lock()

    def write() -> None:
        with lock:
            result["load_average_at_end"] = load_average()
            args.out.write_text(json.dumps(result, indent=1) + "\n")  # partial results survive

    def chain(name: str, overrides: list[str]) -> None:
        arm = args.work / name
        arm.mkdir(exist_ok=True)
        records: dict[str, object] = {}
        entry: dict[str, object] = {"overrides": overrides, "steps": records}
        arms_result[name] = entry
        for step, (cmd, done) in arm_steps(args, arm, overrides).items():
            saved = arm / f"{step}.json"  # the step's record, kept so that a continued run still reports its cost
            if saved.exists():
                print(f"[{name} {step}] {saved} exists: not repeated", flush=True)
                record = json.loads(saved.read_text())
            else:
                record = run_step(f"{name} {step}", cmd, done, log=arm / f"{step}.log")
                if "skipped" not in record:
                    saved.write_text(json.dumps(record, indent=1) + "\n")
            records[step] = record
            if step == "train":
                training = training_summary(arm / "run")
                entry["training"] = training
                steps, cpu = training.get("last_logged_step"), record.get("cpu_s")
                if isinstance(steps, int) and steps > 0 and isinstance(cpu, float):
                    entry["train_cpu_s_per_step"] = round(cpu / steps, 3)  # start-up and validation included
            elif step == "csp":
                entry["csp_metrics"] = kept(done)
            else:
                entry["generation_metrics"] = kept(done)
            write()

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for future in [pool.submit(chain, name, overrides) for name, overrides in arms.items()]:
            future.result()
    write()


if __name__ == "__main__":
    main()
