"""StructRepDiff reconstruction fidelity and speed from the true descriptor (no training needed; paper Table 1).

For random test crystals of a benchmark dataset: compute R with the model's transform, reconstruct the positions from
R_str by batched basin hopping (atoms and cell read from R), and compare with the original by StructureMatcher
(stol 0.5, angle_tol 10, ltol 0.3). The scaler (and, with --loss-weighting spread, the loss weights) come from R of
random training crystals. Prints
and optionally writes (--out, JSON) the match rate, RMSE, seconds per crystal (wall and CPU) and optimiser steps.

    CRYSTALGEN_DATA=DATA nice python bench/structrepdiff_reconstruction.py --dataset perov_5 -n 100 --seed 0

Every option of the model's ``reconstruction`` block can be overridden (e.g. --loss-threshold 0.02, --trials 2).
--batch-crystals sets how many crystals share one batched optimisation (1 = one crystal at a time, for the
batching comparison). The machine, thread count and load average are recorded with the numbers.

To see what a longer search recovers without repeating the crystals that already matched, --retry an earlier
result of the same draw (the committed bench/results files work): only its unmatched crystals are reconstructed.

    python bench/structrepdiff_reconstruction.py --dataset mp_20 -n 100 --hops 7 \
        --retry bench/results/structrepdiff_recon100_mp_20_cumulative_h1_exit.json --retry-limit 16

To use several cores without threads fighting over small kernels, split the draw into shards run side by side and
merge them (the merge recomputes every metric from the stored structures):

    python bench/structrepdiff_reconstruction.py --dataset perov_5 -n 100 --threads 1 --shard 0/2 --out a.json &
    python bench/structrepdiff_reconstruction.py --dataset perov_5 -n 100 --threads 1 --shard 1/2 --out b.json
    python bench/structrepdiff_reconstruction.py --merge a.json b.json --results bench/results/perov_5.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf
from pymatgen.core import Structure

from crystalgen.data.crystal import collate
from crystalgen.metrics import reconstruction as reconstruction_metrics
from crystalgen.runner.allocator import keep_freed_memory
from crystalgen.testing import benchmark_structures
from crystalgen_structrepdiff.ead import ANGULAR
from crystalgen_structrepdiff.model import StructRepDiff
from crystalgen_structrepdiff.reconstruction import LOSS_WEIGHTINGS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import provenance  # noqa: E402

#: Keys of the model's ``reconstruction`` block that the command line can override.
INT_SETTINGS = ("trials", "hops", "iterations", "check_every", "max_pairs", "relocate_atoms")
FLOAT_SETTINGS = ("lr", "lr_final", "hop_step", "relocate_closer_than", "loss_threshold", "d_min_penalty", "skin", "std_floor", "d_min_weight")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", help="perov_5 | carbon_24 | mp_20 (under $CRYSTALGEN_DATA)")
    p.add_argument("--shard", default="0/1", help="I/N: reconstruct every N-th of the drawn crystals, from the I-th")
    p.add_argument("--merge", type=Path, nargs="+", help="merge the --out files of shards instead of running")
    p.add_argument("-n", "--num-crystals", type=int, default=100, help="random test crystals (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the crystal draw and of the reconstruction")
    p.add_argument("--preset", default="paper", help="model preset whose EAD and reconstruction settings are used")
    p.add_argument("--train-crystals", type=int, default=500, help="random training crystals for the feature std")
    p.add_argument("--batch-crystals", type=int, default=16, help="crystals reconstructed together in one batch")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, help="write the results with every structure as JSON here (what --merge reads; "
                   "it holds dataset crystals, so keep it out of the repository)")
    p.add_argument("--results", type=Path, help="write the results without structures as JSON here (per crystal: id, "
                   "loss, steps, matched; what bench/results/ keeps)")
    p.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "crystalgen" / "structrepdiff_bench",
                   help="where the training std is cached between runs")
    p.add_argument("--retry", type=Path, help="an earlier --out or --results file of the same draw: reconstruct only "
                   "the crystals it did not match (StructureMatcher), e.g. to measure what more hops recover")
    p.add_argument("--retry-limit", type=int, help="with --retry: only the first K of those crystals (draw order)")
    p.add_argument("--loss-weighting", choices=LOSS_WEIGHTINGS, help="none (the presets' and paper's plain L1) or spread")
    p.add_argument("--no-early-exit", action="store_true", help="run every hop (loss_threshold null, as the paper)")
    p.add_argument("--angular", choices=ANGULAR, help="EAD angular convention (default: the preset's, cumulative)")
    for key in INT_SETTINGS:
        p.add_argument("--" + key.replace("_", "-"), type=int)
    for key in FLOAT_SETTINGS:
        p.add_argument("--" + key.replace("_", "-"), type=float)
    return p.parse_args(argv)


def model_for(args: argparse.Namespace) -> StructRepDiff:
    cfg = OmegaConf.load(StructRepDiff.presets()[args.preset]).model
    for key in INT_SETTINGS + FLOAT_SETTINGS:
        value = getattr(args, key)
        if value is not None:
            cfg.decoder[key] = value
    if args.loss_weighting:
        cfg.decoder.loss_weighting = args.loss_weighting
    if args.angular:
        cfg.transform.ead.angular = args.angular
    if args.no_early_exit:
        cfg.decoder.loss_threshold = None
    return StructRepDiff(cfg).to(args.device)


def training_statistics(model: StructRepDiff, args: argparse.Namespace) -> None:
    """Fit the scaler on random training crystals (cached by dataset, preset EAD settings and count)."""
    digest = hashlib.sha256(json.dumps(model.encoder.cache_key(), sort_keys=True).encode()).hexdigest()[:12]
    key = f"{args.dataset}-{digest}-{args.train_crystals}-{args.seed}.pt"
    path = args.cache / key
    if path.is_file():
        stats = torch.load(path, weights_only=True)
        model.scaler.mean.copy_(stats["mean"])
        model.scaler.std.copy_(stats["std"])
        model.max_atoms_seen.fill_(int(stats["max_atoms"]))
        return
    transform = type(model).transform(model.cfg)
    train = [transform(s) for _, s in benchmark_structures(args.dataset, "train", n=args.train_crystals, seed=args.seed)]
    model.fit_statistics(train)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"mean": model.scaler.mean, "std": model.scaler.std, "max_atoms": int(model.max_atoms_seen)}, path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.merge:
        result = merge([json.loads(path.read_text()) for path in args.merge])
    elif args.dataset:
        result = run(args)
    else:
        raise SystemExit("give --dataset to run or --merge to combine shards")
    summary = {k: v for k, v in result.items() if k not in ("per_crystal",)}
    print(json.dumps(summary, indent=1, default=str))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, default=str))
    if args.results:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        per_crystal = [{k: v for k, v in c.items() if k not in ("structure", "true")} for c in result["per_crystal"]]
        args.results.write_text(json.dumps({**result, "per_crystal": per_crystal}, indent=1, default=str))
    return 0


def run(args: argparse.Namespace) -> dict:
    """Reconstruct this shard's crystals; returns the result with every structure (for merging)."""
    index, count = (int(x) for x in args.shard.split("/"))
    malloc_tuned = keep_freed_memory()  # as the crystalgen command does
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = model_for(args)
    training_statistics(model, args)
    transform = type(model).transform(model.cfg)
    crystals = benchmark_structures(args.dataset, "test", n=args.num_crystals, seed=args.seed)
    if args.retry:
        crystals = unmatched_in(args.retry, crystals)[:args.retry_limit]
    crystals = crystals[index::count]
    items = [transform(s) for _, s in crystals]
    generator = torch.Generator(device=args.device).manual_seed(args.seed + index)
    load_before = os.getloadavg()
    wall, cpu = time.perf_counter(), time.process_time()
    decoded = []
    for start in range(0, len(items), args.batch_crystals):
        batch = collate(items[start:start + args.batch_crystals]).to(args.device)
        decoded.extend(model.reconstruct(batch, generator=generator))
        print(f"  {len(decoded)}/{len(items)} crystals, {time.perf_counter() - wall:.0f} s", file=sys.stderr, flush=True)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    per_crystal = [{"id": cid, "loss": d.info.get("reconstruction_loss"), "steps": d.info.get("reconstruction_steps", 0),
                    "structure": d.structure.as_dict() if d.structure is not None else None, "true": s.as_dict()}
                   for (cid, s), d in zip(crystals, decoded, strict=True)]
    return scored({
        "dataset": args.dataset, "seed": args.seed, "preset": args.preset, "shards": [args.shard],
        "reconstruction": dict(vars(model.decoder.settings)), "loss_weighting": model.decoder.loss_weighting,
        "std_floor": model.decoder.std_floor, "d_min_weight": model.decoder.d_min_weight,
        "ead": model.encoder.ead, "batch_crystals": args.batch_crystals,
        "seconds_wall_total": wall, "seconds_cpu_total": cpu,
        "machine": {"host": platform.node(), "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "device": args.device, "malloc_tuned": malloc_tuned, "load_average_before": load_before, "load_average_after": os.getloadavg()},
        "command": " ".join(["python", *sys.argv]), "provenance": provenance(),
        "retry_of": str(args.retry) if args.retry else None,
        "per_crystal": per_crystal,
    })


def unmatched_in(path: Path, crystals: list[tuple[str, Structure]]) -> list[tuple[str, Structure]]:
    """The drawn ``crystals`` that the earlier run in ``path`` did not match, in draw order."""
    earlier = json.loads(path.read_text())
    matched = {c["id"] for c in earlier["per_crystal"] if c["matched"]}
    ids = {c["id"] for c in earlier["per_crystal"]}
    missing = [cid for cid, _ in crystals if cid not in ids]
    if missing:
        raise SystemExit(f"{path}: {len(missing)} crystals of this draw (e.g. {missing[0]}) are not in the earlier run; "
                         "give the same --dataset, -n and --seed as it used")
    return [(cid, s) for cid, s in crystals if cid not in matched]


def merge(shards: list[dict]) -> dict:
    """One result from shards of the same draw and settings: crystals pooled, times summed, metrics recomputed."""
    first = shards[0]
    for other in shards[1:]:
        for key in ("dataset", "seed", "preset", "reconstruction", "ead", "loss_weighting", "std_floor", "d_min_weight", "retry_of"):
            if other.get(key) != first.get(key):
                raise SystemExit(f"cannot merge shards with different {key}: {first.get(key)!r} vs {other.get(key)!r}")
    return scored({**first, "shards": [s for shard in shards for s in shard["shards"]],
                   "seconds_wall_total": sum(s["seconds_wall_total"] for s in shards),
                   "seconds_cpu_total": sum(s["seconds_cpu_total"] for s in shards),
                   "machine": [s["machine"] for s in shards], "command": [s["command"] for s in shards],
                   "provenance": [s.get("provenance") for s in shards],
                   "per_crystal": [c for s in shards for c in s["per_crystal"]]})


def scored(result: dict) -> dict:
    """``result`` with the match rates, RMSEs, times per crystal and step counts of its ``per_crystal`` entries."""
    crystals = result["per_crystal"]
    pred = [Structure.from_dict(c["structure"]) if c["structure"] else None for c in crystals]
    truth = [Structure.from_dict(c["true"]) for c in crystals]
    metrics = reconstruction_metrics(pred, truth, workers=1, progress=False)
    raw = raw_match(pred, truth)
    for entry, matched in zip(crystals, raw["matched"], strict=True):
        entry["matched"] = matched
    losses = sorted(c["loss"] for c in crystals if c["loss"] is not None)
    n = len(crystals)
    return {**result, "num_crystals": n,
            "match_rate": metrics["match_rate"], "rms_dist": metrics["rms_dist"], "n_recon_valid": metrics["n_recon_valid"],
            "match_rate_structure_matcher_only": raw["match_rate"], "rms_dist_structure_matcher_only": raw["rms_dist"],
            "seconds_per_crystal_wall": result["seconds_wall_total"] / n, "seconds_per_crystal_cpu": result["seconds_cpu_total"] / n,
            "adam_steps_per_crystal": sum(c["steps"] for c in crystals) / n,
            "loss_median": losses[len(losses) // 2] if losses else None}


def raw_match(pred: list[Structure | None], truth: list[Structure]) -> dict:
    """StructureMatcher alone (no validity screen), to separate reconstruction failures from invalid compositions."""
    import warnings

    from pymatgen.analysis.structure_matcher import StructureMatcher

    from crystalgen.metrics.reconstruction import MATCHER_TOLERANCES

    matcher = StructureMatcher(**MATCHER_TOLERANCES)
    matched, rms = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for p, s in zip(pred, truth, strict=True):
            r = matcher.get_rms_dist(p, s) if p is not None else None
            matched.append(r is not None)
            if r is not None:
                rms.append(float(r[0]))
    return {"matched": matched, "match_rate": sum(matched) / len(matched), "rms_dist": sum(rms) / len(rms) if rms else float("nan")}


if __name__ == "__main__":
    raise SystemExit(main())
