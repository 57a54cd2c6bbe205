"""Sampling cost of CDVAE (docs/benchmarks.md, "CDVAE"): crystals per second for annealed Langevin with the paper's
5,000 steps (50 levels x 100) and for predictor-corrector with 1,000 and 500 model evaluations (50 levels x
(19 + 1) and x (9 + 1) corrector + predictor calls: the model has T = 50 levels, so "steps" counts model calls).

Each sampler generates the same ``--num`` crystals (same seed, so the same z, N and lattices) from a trained
checkpoint, in one batch; wall and CPU time of the whole sampler loop are reported with the number of model
calls and the decodable fraction. Decoding is not timed (it is the same for every sampler). With ``--reference``
the decoded crystals of each sampler are also scored by the metrics suite (validity, COV, property statistics),
so that speed and quality sit side by side.

Usage (2-core CPU, no GPU; say whether the machine was shared):
    python bench/cdvae_sampling.py --ckpt runs/<run>/checkpoints/best.ckpt --num 100 --threads 2
    python bench/cdvae_sampling.py --ckpt ... --num 20 --samplers pc500 --out bench/results/cdvae_sampling.json
    python bench/cdvae_sampling.py --ckpt ... --num 100 --reference perov_5:test --workers 1
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import torch

#: name -> (sampler, options, model evaluations)
SAMPLERS = {
    "langevin5000": ("langevin", {"n_steps_each": 100, "step_lr": 1e-4}, 5000),
    "pc1000": ("pc", {"n_corrector": 19}, 1000),
    "pc500": ("pc", {"n_corrector": 9}, 500),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="CDVAE checkpoint")
    parser.add_argument("--num", type=int, default=100, help="crystals per sampler (one batch)")
    parser.add_argument("--samplers", default=",".join(SAMPLERS), help=f"comma-separated subset of {', '.join(SAMPLERS)}")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch intra-op threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--reference", help="NAME:SPLIT to score each sampler's crystals against (e.g. perov_5:test)")
    parser.add_argument("--metrics", default="validity,coverage,wdist_density,wdist_num_elems,wdist_prop",
                        help="metrics computed with --reference")
    parser.add_argument("--workers", type=int, default=1, help="processes for the metrics")
    args = parser.parse_args()

    from crystalgen.runner.allocator import keep_freed_memory
    from crystalgen.runner.models import build_sampler, load_trained
    from crystalgen.state import SampleRequest

    malloc_tuned = keep_freed_memory()  # as the crystalgen command does
    torch.set_num_threads(args.threads)
    trained = load_trained(args.ckpt, "cpu")
    model = trained.model
    reference_name, reference = _reference(args.reference, args.workers) if args.reference else (None, None)
    results = []
    for key in args.samplers.split(","):
        name, options, evaluations = SAMPLERS[key]
        sampler = build_sampler(model, name, None, options)
        torch.manual_seed(args.seed)
        condition = model.prepare_sampling(SampleRequest(args.num))
        generator = torch.Generator().manual_seed(args.seed)
        calls = [0]

        def progress(done: int, total: int, calls: list[int] = calls) -> None:
            calls[0] = done

        wall, cpu = time.perf_counter(), time.process_time()
        state = sampler.run(model, condition, generator=generator, progress=progress)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        decoded = model.decode(state, condition)
        row = {"sampler": key, "model_calls": calls[0], "expected_calls": evaluations, "crystals": args.num,
               "atoms": int(condition.data["num_atoms"].sum()), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
               "crystals_per_s": round(args.num / wall, 4), "decoded": sum(d.ok for d in decoded)}
        if reference is not None:
            row["metrics"] = _score(decoded, reference, reference_name, args)
        results.append(row)
        print(json.dumps(row), flush=True)
    report = {"checkpoint": str(args.ckpt), "preset": trained.config.get("preset"), "threads": args.threads,
              "host": platform.node(), "cpus": os.cpu_count(), "torch": torch.__version__,
              "malloc_tuned": malloc_tuned, "load_average_at_end": os.getloadavg(), "results": results}
    if args.out:
        with open(args.out, "w") as handle:
            json.dump(report, handle, indent=2)


def _reference(spec: str, workers: int):
    """(dataset name, structures) of the reference split NAME:SPLIT."""
    from crystalgen.runner.datasets import parse_split, split_structures

    name, split = parse_split(spec)
    return name, split_structures(name, split, workers=workers, progress=False)[0]


def _score(decoded, reference, reference_name, args) -> dict:
    """The suite's metrics of one sampler's crystals (keys and values as in metrics.json)."""
    from crystalgen.metrics import evaluate

    result = evaluate([d.structure for d in decoded], reference, metrics=args.metrics.split(","),
                      reference_name=reference_name, failures=[d.reason for d in decoded],
                      workers=args.workers, progress=False)
    return {k: v for k, v in result.items() if isinstance(v, (int, float))}


if __name__ == "__main__":
    main()
