"""Cost of one reconstruction step of StructRepDiff: R_str of a batch of systems and its gradient with respect to the
Cartesian positions, with a preset's descriptor (default the paper's: L <= 1, mu 0..20 A by 0.1, eta 1/20/90, r_c 20 A).

This is the inner loop of basin hopping (6 trials x 7 hops x 300 Adam steps per crystal), so its time per pair is
what decides whether reconstructing 100 test crystals takes minutes or hours. Random test crystals of a benchmark
dataset are repeated ``--trials`` times with random positions in their cells, as the reconstruction starts; the
pair list is built once (as the Verlet list is reused between steps) and the step is timed ``--repeats`` times.

    CRYSTALGEN_DATA=DATA python bench/structrepdiff_ead.py --dataset carbon_24 -n 4 --threads 1

Prints (and with --out writes as JSON) pairs per step, milliseconds per step and nanoseconds per pair, for the
``table`` method (and ``exact`` with --exact, which is far slower).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from crystalgen.runner.allocator import keep_freed_memory
from crystalgen.testing import benchmark_structures
from crystalgen_structrepdiff.descriptor import StructureDescriptor
from crystalgen_structrepdiff.model import StructRepDiff
from crystalgen_structrepdiff.transform import ead_parameters


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, help="perov_5 | carbon_24 | mp_20 (under $CRYSTALGEN_DATA)")
    p.add_argument("--preset", default="paper", help="model preset whose descriptor settings are timed")
    p.add_argument("-n", "--num-crystals", type=int, default=4, help="random test crystals in the batch")
    p.add_argument("--trials", type=int, default=6, help="copies of each crystal (the paper's trials)")
    p.add_argument("--repeats", type=int, default=10, help="timed steps (after one warm-up step)")
    p.add_argument("--skin", type=float, default=1.0, help="pair list radius = cutoff + skin, as in reconstruction")
    p.add_argument("--exact", action="store_true", help="also time the exact radial basis")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    return p.parse_args(argv)


def batch_of(dataset: str, n: int, trials: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(positions (N, 3), atomic numbers (N,), cells (S, 3, 3), atoms per system (S,)): every crystal ``trials``
    times, atoms placed uniformly at random in its cell, float32."""
    generator = torch.Generator().manual_seed(seed)
    positions, numbers, cells, counts = [], [], [], []
    for _, structure in benchmark_structures(dataset, "test", n=n, seed=seed):
        lattice = torch.tensor(structure.lattice.matrix, dtype=torch.float32)
        z = torch.tensor(structure.atomic_numbers)
        for _ in range(trials):
            positions.append(torch.rand(len(structure), 3, generator=generator) @ lattice)
            numbers.append(z)
            cells.append(lattice)
            counts.append(len(structure))
    return torch.cat(positions), torch.cat(numbers), torch.stack(cells), torch.tensor(counts)


def time_steps(descriptor: StructureDescriptor, batch, skin: float, repeats: int) -> dict:
    """Milliseconds per step (R_str, a scalar loss, its gradient) over ``repeats`` steps after a warm-up."""
    positions, numbers, cells, counts = batch
    pairs = descriptor.pairs(positions, cells, counts, skin)
    target = descriptor(positions, numbers, counts, pairs).detach() * 1.01

    def step() -> None:
        x = positions.detach().requires_grad_(True)
        loss = (descriptor(x, numbers, counts, pairs) - target).abs().mean()
        torch.autograd.grad(loss, x)

    step()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    ms = 1e3 * statistics.median(times)
    return {"pairs": int(pairs.centre.numel()), "ms_per_step_median": ms, "ms_per_step_min": 1e3 * min(times),
            "ns_per_pair": 1e6 * ms / pairs.centre.numel()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    malloc_tuned = keep_freed_memory()
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = OmegaConf.load(StructRepDiff.presets()[args.preset]).model
    params = ead_parameters(cfg.transform.ead)
    batch = batch_of(args.dataset, args.num_crystals, args.trials, args.seed)
    result = {"dataset": args.dataset, "preset": args.preset, "num_crystals": args.num_crystals, "trials": args.trials,
              "atoms": int(batch[0].shape[0])}
    for method in ("table", "exact") if args.exact else ("table",):
        descriptor = StructureDescriptor(params, method, float(cfg.transform.table_spacing), dtype=torch.float32)
        result[method] = time_steps(descriptor, batch, args.skin, args.repeats)
        print(f"{method}: {json.dumps(result[method])}", file=sys.stderr, flush=True)
    result["machine"] = {"host": platform.node(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                         "torch": torch.__version__, "malloc_tuned": malloc_tuned, "load_average": os.getloadavg()}
    result["command"] = " ".join(["python", *sys.argv])
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
