"""COV-R and COV-P as functions of the number of generated crystals (docs/benchmarks.md, "CDVAE").

COV-R asks whether each reference crystal has a generated one nearby, so it grows with the number of samples;
papers report it for 10,000 samples (CDVAE), benchmarks often draw 1,000. This script fingerprints each sample set
once (cached like a reference split), then scores nested random subsets of it, and the union of all sets, against
the reference with the suite's own ``coverage`` function.

    CRYSTALGEN_DATA=DATA python bench/coverage_vs_samples.py --reference perov_5:test \\
        --sizes 100,250,500,1000 --out bench/results/cdvae_coverage_vs_samples.json samples_a/ samples_b/
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

import numpy as np

from crystalgen.metrics.coverage import cov_cutoffs, coverage
from crystalgen.metrics.fingerprints import standardise_composition_fingerprints
from crystalgen.metrics.reference import ReferenceSet
from crystalgen.metrics.samples import read_samples
from crystalgen.runner.datasets import parse_split, split_structures


def fingerprints(structures: list, name: str, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """Structure and standardised composition fingerprints of the crystals that have both."""
    struct, comp = ReferenceSet(structures, name=name, workers=workers, progress=False).fingerprints
    ok = np.isfinite(struct).all(axis=1)
    return struct[ok], standardise_composition_fingerprints(comp[ok])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("samples", nargs="+", type=Path, help="sample directories (or any form `crystalgen evaluate` reads)")
    parser.add_argument("--reference", required=True, help="NAME:SPLIT, e.g. perov_5:test")
    parser.add_argument("--sizes", default="100,250,500,1000", help="subset sizes (comma-separated)")
    parser.add_argument("--draws", type=int, default=5, help="random subsets per size (mean and spread reported)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    name, split = parse_split(args.reference)
    reference, _ = split_structures(name, split, workers=args.workers, progress=False)
    ref_struct, ref_comp = fingerprints(reference, f"{name}:{split}", args.workers)
    struct_cut, comp_cut = cov_cutoffs(name)
    rng = np.random.default_rng(args.seed)
    sizes = [int(s) for s in args.sizes.split(",")]

    def score(struct: np.ndarray, comp: np.ndarray, total: int, n: int) -> dict:
        """Mean and std over draws of COV-R / COV-P for n of ``total`` generated crystals (failed ones count in
        COV-P's denominator, as in the suite)."""
        rows = []
        for _ in range(args.draws if n < total else 1):
            pick = rng.choice(total, size=n, replace=False)
            kept = pick[pick < len(struct)]  # rows past the fingerprinted ones stand for failed crystals
            rows.append(coverage(struct[kept], comp[kept], ref_struct, ref_comp, struct_cut, comp_cut, n_generated=n))
        recall = np.array([r["cov_recall"] for r in rows])
        precision = np.array([r["cov_precision"] for r in rows])
        return {"n": n, "draws": len(rows), "cov_recall": float(recall.mean()), "cov_recall_std": float(recall.std()),
                "cov_precision": float(precision.mean()), "cov_precision_std": float(precision.std())}

    results, pooled_struct, pooled_comp, pooled_total = [], [], [], 0
    for folder in args.samples:
        structures, _, _ = read_samples(folder, workers=args.workers, progress=False)
        built = [s for s in structures if s is not None]
        struct, comp = fingerprints(built, str(folder), args.workers)
        total = len(structures)
        pooled_struct.append(struct)
        pooled_comp.append(comp)
        pooled_total += total
        rows = [score(struct, comp, total, n) for n in sizes if n <= total]
        results.append({"samples": str(folder), "generated": total, "fingerprinted": len(struct), "subsets": rows})
        print(json.dumps(results[-1]), flush=True)
    if len(args.samples) > 1:
        struct, comp = np.concatenate(pooled_struct), np.concatenate(pooled_comp)
        union = score(struct, comp, pooled_total, pooled_total)
        results.append({"samples": "union", "generated": pooled_total, "fingerprinted": len(struct), "subsets": [union]})
        print(json.dumps(results[-1]), flush=True)
    report = {"reference": args.reference, "reference_n": len(ref_struct), "struct_cutoff": struct_cut,
              "comp_cutoff": comp_cut, "host": platform.node(), "cpus": os.cpu_count(),
              "load_average_at_end": os.getloadavg(), "results": results}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
