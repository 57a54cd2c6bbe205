"""Sampling cost and quality of GemsDiff (docs/gemsdiff.md): the ancestral sampler over all T = 100 levels against
the official code's update rule (`gemsdiff_code`) and
DDIM at fewer steps, from one checkpoint, on the compositions of a test split.

``--num`` crystals of a reference split are drawn at random (``--seed``); each sampler generates one crystal for
each of their compositions, in one batch, from the same generator seed. Reported per sampler: model calls, wall and
CPU time of the sampler loop (decoding not timed), crystals per CPU-second, the decodable fraction, and the suite's
metrics against the whole split (validity, density and number-of-elements distances by default).

Usage (2-core CPU, no GPU; say whether the machine was shared):
    python bench/gemsdiff_sampling.py --ckpt runs/<run>/checkpoints/best.ckpt --reference mp_20:test --num 200 \
        --out bench/results/gemsdiff_sampling_mp20_short.json
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch
from provenance import PACKAGES, load_average, provenance, versions  # bench/ is the script's folder

#: name -> (sampler, steps)
SAMPLERS = {"ancestral100": ("ancestral", None), "code100": ("gemsdiff_code", None), "ddim20": ("ddim", 20),
            "ddim10": ("ddim", 10)}
RECORDED = (*PACKAGES, "crystalgen-gemsdiff")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="GemsDiff checkpoint")
    parser.add_argument("--reference", required=True, help="NAME:SPLIT whose compositions are sampled (e.g. mp_20:test)")
    parser.add_argument("--num", type=int, default=200, help="crystals per sampler (one batch)")
    parser.add_argument("--samplers", default=",".join(SAMPLERS), help=f"comma-separated subset of {', '.join(SAMPLERS)}")
    parser.add_argument("--metrics", default="validity,wdist_density,wdist_num_elems", help="suite metrics")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--workers", type=int, default=1, help="processes for the metrics")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args()

    from crystalgen.metrics import evaluate
    from crystalgen.runner.datasets import parse_split, split_structures
    from crystalgen.runner.models import build_sampler, load_trained
    from crystalgen.state import SampleRequest

    torch.set_num_threads(args.threads)
    started = {**provenance(), "versions": versions(RECORDED)}
    trained = load_trained(args.ckpt, "cpu")
    model = trained.model
    name, split = parse_split(args.reference)
    reference = split_structures(name, split, workers=args.workers, progress=False)[0]
    print(f"reference {args.reference}: {len(reference)} structures", flush=True)
    picked = random.Random(args.seed).sample(range(len(reference)), args.num)
    formulas = [reference[i].composition.formula.replace(" ", "") for i in picked]
    results = []
    for key in args.samplers.split(","):
        sampler_name, steps = SAMPLERS[key]
        sampler = build_sampler(model, sampler_name, steps, {})
        torch.manual_seed(args.seed)
        condition = model.prepare_sampling(SampleRequest(args.num, composition=formulas))
        calls = [0]

        def progress(done: int, total: int, calls: list[int] = calls) -> None:
            calls[0] = done

        wall, cpu = time.perf_counter(), time.process_time()
        state = sampler.run(model, condition, generator=torch.Generator().manual_seed(args.seed), progress=progress)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        decoded = model.decode(state, condition)
        scores = evaluate([d.structure for d in decoded], reference, metrics=args.metrics.split(","), reference_name=name,
                          failures=[d.reason for d in decoded], workers=args.workers, progress=False)
        row = {"sampler": key, "model_calls": calls[0], "crystals": args.num,
               "atoms": int(condition.data["num_atoms"].sum()), "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
               "crystals_per_cpu_s": round(args.num / cpu, 4), "decoded": sum(d.ok for d in decoded),
               "composition_kept": sum(d.ok and d.structure.composition.formula.replace(" ", "") == f
                                       for d, f in zip(decoded, formulas)),
               "metrics": {k: v for k, v in scores.items() if isinstance(v, (int, float))}}
        results.append(row)
        print(json.dumps(row), flush=True)
        if args.out:  # after every sampler, so that a long run keeps what it has measured
            write_report(args, started, trained.config.get("preset"), results)


def write_report(args: argparse.Namespace, started: dict[str, object], preset: object, results: list[dict]) -> None:
    report = {**started, "checkpoint": str(args.ckpt), "preset": preset, "reference": args.reference,
              "threads": args.threads, "load_average_at_end": load_average(), "results": results}
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
