"""GemsDiff's unmixed torus at T (docs/gemsdiff.md, "torus at T"): how far the last training level of the fractional
coordinates is from the uniform distribution that sampling starts from, and what that does to samples.

Part ``analytic``: for each ``--beta-ends`` value, the linear schedule of ``--num-steps`` betas from ``--beta-start``
gives sigma_T = sqrt(1 - abar_T) (eq. 16). The wrapped normal WN(0, sigma_T^2) on the circle has Fourier modes
exp(-2 pi^2 sigma^2 n^2) (appendix D); reported: the first mode, the largest density ratio p / uniform, the total
variation distance from uniform in one coordinate and for the three coordinates of an atom (product density, on a
grid) and KL(uniform || WN) per coordinate (the prior-mismatch term a sampler started from uniform pays).

Part ``train``: one small-preset GemsDiff per beta_end trained on the first ``--train-rows`` MP-20 training crystals
for a FIXED number of epochs (no time budget: the load does not decide the result), one thread, niced; then
``--num`` MP-20 test compositions (the same for every model, ``--seed``) sampled with the ancestral sampler from
each run's last (EMA) checkpoint. Run the script niced: the training subprocess inherits its priority, and scored against the whole test split. CPU time of each training and sampling is
recorded (children's CPU time for the training subprocess).

Part ``gap`` (after ``train``, on its checkpoints in ``--work-dir``; merged into an existing ``--out``): the mismatch
at the level sampling starts from, measured on the model. For ``--gap-crystals`` MP-20 validation crystals at t = T,
the position loss (eq. 20, mean squared fractional displacement error per atom) of each model when x_T is drawn as in
training (WN(x_0, sigma_T^2)) and when it is drawn uniformly (what sampling feeds it; the target is then the lift of
x_0 nearest x_T), beside the loss of predicting no move.

Usage (2-core CPU, one thread per process):
    OMP_NUM_THREADS=1 nice -n 10 python bench/gemsdiff_torus_mixing.py --part analytic,train \
        --out bench/results/gemsdiff_torus_mixing.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import load_average, provenance  # noqa: E402


def sigma_at_end(beta_start: float, beta_end: float, num_steps: int) -> float:
    """sqrt(1 - abar_T) of linear betas (the core's ``wrapped_normal`` schedule, float64)."""
    betas = np.linspace(beta_start, beta_end, num_steps, dtype=np.float64)
    return float(math.sqrt(1.0 - np.prod(1.0 - betas)))


def wrapped_normal_density(x: np.ndarray, sigma: float, images: int = 8) -> np.ndarray:
    """Density of WN(0, sigma^2) on [0, 1) at ``x`` (image sum over |k| <= images)."""
    k = np.arange(-images, images + 1)[:, None]
    return np.exp(-((x[None, :] + k) ** 2) / (2 * sigma**2)).sum(0) / (sigma * math.sqrt(2 * math.pi))


#: 3 (N - 1) relative coordinates of a crystal of N = 10 atoms (MP-20 holds 1 to 20): a translation does not matter
CRYSTAL_COORDS = 27


def tv_product(sigma: float, coords: int, draws: int = 200_000, seed: int = 0) -> float:
    """Total variation distance between uniform and a product of ``coords`` WN(0, sigma^2): E_U|prod p - 1| / 2 by
    Monte Carlo over uniform draws (a crystal's coordinates at T given its clean ones, against the sampler's prior)."""
    u = np.random.default_rng(seed).random((draws, coords))
    log_ratio = np.log(wrapped_normal_density(u.ravel(), sigma)).reshape(draws, coords).sum(1)
    return float(0.5 * np.abs(np.exp(log_ratio) - 1).mean())


def analytic(beta_start: float, beta_ends: list[float], num_steps: int, grid: int = 4096) -> list[dict[str, float]]:
    x = (np.arange(grid) + 0.5) / grid
    rows = []
    for beta_end in beta_ends:
        sigma = sigma_at_end(beta_start, beta_end, num_steps)
        p = wrapped_normal_density(x, sigma)
        p = p / p.mean()  # exact normalisation on the grid
        coarse = p.reshape(64, -1).mean(1)  # 64^3 product grid for the 3-coordinate distance
        joint = coarse[:, None, None] * coarse[None, :, None] * coarse[None, None, :]
        rows.append({"beta_end": beta_end, "sigma_T": sigma, "abar_T": 1 - sigma**2,
                     "first_fourier_mode": math.exp(-2 * math.pi**2 * sigma**2),
                     "max_density_ratio": float(p.max()), "min_density_ratio": float(p.min()),
                     "tv_1d": float(0.5 * np.abs(p - 1).mean()), "tv_3d": float(0.5 * np.abs(joint - 1).mean()),
                     "kl_uniform_to_wn_1d": float(-np.log(p).mean()),
                     f"tv_crystal_{CRYSTAL_COORDS}_coords": tv_product(sigma, CRYSTAL_COORDS)})
    return rows


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def train(beta_end: float, run_dir: Path, args: argparse.Namespace) -> dict[str, object]:
    cmd = [sys.executable, "-m", "crystalgen", "train", "gemsdiff", "--data", "mp_20",
           "--threads", "1", "--no-progress", "--run-dir", str(run_dir), "--seed", str(args.seed),
           "trainer.max_minutes=null", f"trainer.max_epochs={args.epochs}", f"data.max_train_rows={args.train_rows}",
           f"data.max_val_rows={args.val_rows}", f"trainer.val_every={args.epochs}",
           f"trainer.checkpoint_every={args.epochs}", "data.workers=0",
           f"model.processes.frac_coords.beta_end={beta_end}"]
    cpu, wall = children_cpu(), time.perf_counter()
    subprocess.run(cmd, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    return {"command": " ".join(cmd), "cpu_s": round(children_cpu() - cpu, 1),
            "wall_s": round(time.perf_counter() - wall, 1), "load_average_after": load_average()}


def sample(ckpt: Path, formulas: list[str], reference: list, reference_name: str, args: argparse.Namespace) -> dict:
    from crystalgen.metrics import evaluate
    from crystalgen.runner.models import build_sampler, load_trained
    from crystalgen.state import SampleRequest

    model = load_trained(ckpt, "cpu").model
    sampler = build_sampler(model, "ancestral", None, {})
    torch.manual_seed(args.seed)
    condition = model.prepare_sampling(SampleRequest(len(formulas), composition=formulas))
    cpu = time.process_time()
    state = sampler.run(model, condition, generator=torch.Generator().manual_seed(args.seed))
    cpu = time.process_time() - cpu
    decoded = model.decode(state, condition)
    scores = evaluate([d.structure for d in decoded], reference, metrics=args.metrics.split(","),
                      reference_name=reference_name, failures=[d.reason for d in decoded], workers=1, progress=False)
    return {"sampling_cpu_s": round(cpu, 1), "decoded": sum(d.ok for d in decoded),
            "metrics": {k: v for k, v in scores.items() if isinstance(v, (int, float))}}


def level_t_gap(ckpt: Path, structures: list, seed: int) -> dict[str, float]:
    """Position loss at t = T with x_T from the forward process and from the uniform prior (see the docstring)."""
    from crystalgen import collate
    from crystalgen.runner.models import load_trained
    from crystalgen_gemsdiff.lattice_coords import lattice_to_coords

    trained = load_trained(ckpt, "cpu")
    model = trained.model
    model.eval()
    transform = type(model).transform(trained.config.model)
    batch = collate([transform(s) for s in structures])
    crystal, n = batch.batch, batch.num_graphs
    t = torch.full((n,), model.num_steps, dtype=torch.long)
    torch.manual_seed(seed)
    x0 = torch.remainder(batch.frac_coords.float(), 1.0)
    process = model.process("frac_coords")
    lattice = model.process("lattice").add_noise(lattice_to_coords(batch.lattice.double()).float(), t).x_t
    lattice[:, :3] = 0.0  # no rotation noise, as in training
    condition = model._condition(batch.atom_types, batch.num_atoms)
    forward = process.add_noise(x0, t[crystal])
    uniform = torch.rand_like(x0)
    rows = {}
    for name, x_t, target in (("forward", forward.x_t, forward.target),
                              ("uniform", uniform, uniform + torch.remainder(x0 - uniform + 0.5, 1.0) - 0.5)):
        with torch.no_grad():
            predicted = model.denoise({"frac_coords": x_t, "lattice": lattice}, t, condition)["frac_coords"]
        rows[f"loss_{name}"] = float((predicted - target).square().sum(-1).mean())
        rows[f"loss_{name}_no_move"] = float((x_t - target).square().sum(-1).mean())
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", default="analytic,train", help="comma-separated: analytic, train")
    parser.add_argument("--beta-start", type=float, default=1e-6)
    parser.add_argument("--beta-ends", default="2e-3,6e-3", help="comma-separated beta_T values (2e-3: Table 1)")
    parser.add_argument("--num-steps", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=12, help="training epochs of each model (fixed)")
    parser.add_argument("--train-rows", type=int, default=960, help="first MP-20 training rows (batch 32)")
    parser.add_argument("--val-rows", type=int, default=64)
    parser.add_argument("--num", type=int, default=50, help="test compositions sampled by each model")
    parser.add_argument("--metrics", default="validity,wdist_density,wdist_num_elems")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", help="run directories (default: a temporary directory)")
    parser.add_argument("--gap-crystals", type=int, default=256, help="validation crystals of part gap")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    parts = args.part.split(",")
    beta_ends = [float(b) for b in args.beta_ends.split(",")]
    report: dict[str, object] = {**provenance(), "beta_start": args.beta_start, "num_steps": args.num_steps}
    if parts == ["gap"] and args.out and Path(args.out).exists():  # added to the file of the earlier parts
        report = {**json.loads(Path(args.out).read_text()), "gap_provenance": provenance()}

    def write() -> None:
        report["load_average_at_end"] = load_average()
        if args.out:
            Path(args.out).write_text(json.dumps(report, indent=2) + "\n")

    if "analytic" in parts:
        report["analytic"] = {f"{b:g}": row for b, row in zip(beta_ends, analytic(args.beta_start, beta_ends, args.num_steps))}
        print(json.dumps(report["analytic"], indent=1), flush=True)
        write()
    if "train" in parts:
        from crystalgen.runner.datasets import parse_split, split_structures

        name, split = parse_split("mp_20:test")
        reference = split_structures(name, split, workers=1, progress=False)[0]
        picked = random.Random(args.seed).sample(range(len(reference)), args.num)
        formulas = [reference[i].composition.formula.replace(" ", "") for i in picked]
        work = Path(args.work_dir or tempfile.mkdtemp(prefix="gemsdiff-torus-"))
        runs: dict[str, object] = {}
        report["train"] = {"epochs": args.epochs, "train_rows": args.train_rows, "batch_size": 32,
                           "steps": args.epochs * math.ceil(args.train_rows / 32), "test_compositions": args.num,
                           "runs": runs}
        for beta_end in beta_ends:
            key = f"{beta_end:g}"
            run_dir = work / f"beta_end_{key}"
            row: dict[str, object] = {"sigma_T": sigma_at_end(args.beta_start, beta_end, args.num_steps),
                                      "training": train(beta_end, run_dir, args)}
            row.update(sample(run_dir / "checkpoints" / "last.ckpt", formulas, reference, name, args))
            runs[key] = row
            print(json.dumps({key: row}), flush=True)
            write()
    if "gap" in parts:
        from crystalgen.runner.datasets import split_structures

        work = Path(args.work_dir) if args.work_dir else None
        if work is None:
            raise SystemExit("part gap reads the checkpoints of part train: give --work-dir")
        structures = split_structures("mp_20", "val", workers=1, progress=False)[0][: args.gap_crystals]
        report["gap"] = {"crystals": len(structures), "level": args.num_steps, "runs": {
            f"{b:g}": level_t_gap(work / f"beta_end_{b:g}" / "checkpoints" / "last.ckpt", structures, args.seed)
            for b in beta_ends}}
        print(json.dumps(report["gap"], indent=1), flush=True)
    write()


if __name__ == "__main__":
    main()
