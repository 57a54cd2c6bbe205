"""Sampling cost of SyMat (docs/benchmarks.md, "SyMat"; issue #19, Evidence): crystals per CPU-second of the
paper's annealed Langevin (50 levels x 100 steps, the graph rebuilt at every step) and of the cheaper samplers on
one checkpoint, with the validity of what each generates.

Every sampler starts from the same z (``--seed``), so the same decoded compositions and lattices; only the
coordinates differ. The sampler loop is timed (wall and CPU seconds of this process; decoding is not timed) and the
decoded crystals are scored by the core's metrics suite (structure and composition validity by default) against
``--reference``. ``--threads`` takes a comma-separated list: every sampler runs once per thread count, so that the
cost of a second intra-op thread is measured beside the first in one script (the reason the small preset runs with
one thread).

Usage (2-core CPU, no GPU; run niced, say whether the machine was shared):
    OMP_NUM_THREADS=1 nice -n 10 python bench/symat_sampling.py --ckpt RUN/checkpoints/best.ckpt \
        --reference perov_5:test --num 100 --out bench/results/symat_sampling_perov_5.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from provenance import load_average, provenance, versions

#: name -> (sampler, steps, options); SyMat has T = 50 noise levels, so "steps" of the posterior samplers is 50
SAMPLERS = {
    "langevin50x100": ("langevin", None, {"n_steps_each": 100, "step_lr": 1e-4}),
    "langevin50x5": ("langevin", None, {"n_steps_each": 5, "step_lr": 1e-4}),
    "pc": ("pc", None, {}),
    "ddim": ("ddim", None, {}),
    "ancestral": ("ancestral", None, {}),
}
PACKAGES = ("crystalgen-core", "crystalgen-symat", "torch", "torch_geometric", "numpy", "pymatgen", "smact")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="SyMat checkpoint")
    parser.add_argument("--reference", required=True, help="NAME:SPLIT the crystals are scored against")
    parser.add_argument("--num", type=int, default=100, help="crystals per sampler (one batch)")
    parser.add_argument("--num-paper", type=int, default=None,
                        help="crystals for langevin50x100 (default --num; fewer when it is too slow)")
    parser.add_argument("--samplers", default=",".join(SAMPLERS), help=f"comma-separated subset of {', '.join(SAMPLERS)}")
    parser.add_argument("--threads", default="1", help="comma-separated torch intra-op thread counts")
    parser.add_argument("--metrics", default="validity", help="suite metrics of each sampler's crystals")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()

    from crystalgen.runner.models import build_sampler, load_trained
    from crystalgen.state import SampleRequest

    record = provenance()
    record["versions"] = versions(PACKAGES)
    trained = load_trained(args.ckpt, "cpu")
    model = trained.model
    reference_name, reference = _reference(args.reference)
    results = []
    for threads in (int(t) for t in args.threads.split(",")):
        torch.set_num_threads(threads)
        for key in args.samplers.split(","):
            name, steps, options = SAMPLERS[key]
            num = args.num_paper if key == "langevin50x100" and args.num_paper else args.num
            sampler = build_sampler(model, name, steps, options)
            torch.manual_seed(args.seed)
            condition = model.prepare_sampling(SampleRequest(num))
            generator = torch.Generator().manual_seed(args.seed)
            calls = [0]

            def progress(done: int, total: int, calls: list[int] = calls) -> None:
                calls[0] = done

            wall, cpu = time.perf_counter(), time.process_time()
            state = sampler.run(model, condition, generator=generator, progress=progress)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            decoded = model.decode(state, condition)
            row = {"sampler": key, "threads": threads, "model_calls": calls[0], "crystals": num,
                   "atoms": int(condition.data["num_atoms"].sum()), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
                   "crystals_per_cpu_s": round(num / cpu, 4), "crystals_per_s": round(num / wall, 4),
                   "decoded": sum(d.ok for d in decoded), "load_average": load_average(),
                   "metrics": _score(decoded, reference, reference_name, args.metrics)}
            results.append(row)
            print(json.dumps(row), flush=True)
    report = {**record, "checkpoint": Path(args.ckpt).name, "preset": trained.config.get("preset"),
              "reference": args.reference, "load_average_at_end": load_average(),
              "results": {f"{r['sampler']}_t{r['threads']}": r for r in results}}
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


def _reference(spec: str):
    """(dataset name, structures) of the reference split NAME:SPLIT."""
    from crystalgen.runner.datasets import parse_split, split_structures

    name, split = parse_split(spec)
    return name, split_structures(name, split, workers=1, progress=False)[0]


def _score(decoded, reference, reference_name: str, metrics: str) -> dict:
    """The suite's numeric results on one sampler's crystals (keys as in metrics.json)."""
    from crystalgen.metrics import evaluate

    result = evaluate([d.structure for d in decoded], reference, metrics=metrics.split(","),
                      reference_name=reference_name, failures=[d.reason for d in decoded], workers=1, progress=False)
    return {k: v for k, v in result.items() if isinstance(v, (int, float))}


if __name__ == "__main__":
    main()
