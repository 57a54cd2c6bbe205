"""SymmCD representation round trip on benchmark splits: structure -> (G, k, X', S, A') -> structure.

Every crystal goes through the preprocessing transform and the sampler's decoder (crystalgen_symmcd.round_trip)
and is compared with the original by pymatgen's StructureMatcher. Writes a JSON with the rates and every
failure by material id and reason, and prints a summary for docs/benchmarks.md.

    CRYSTALGEN_DATA=/work/shared/data nice python bench/symmcd_roundtrip.py --datasets perov_5 mp_20 --split test \
        --workers 2 --out bench/results/symmcd_roundtrip.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
from pymatgen.core import Structure


def _one(args: tuple[str, str]) -> tuple[str, dict]:
    import warnings

    warnings.filterwarnings("ignore")
    from crystalgen_symmcd.round_trip import round_trip

    mid, cif = args
    try:
        r = round_trip(Structure.from_str(cif, fmt="cif"))
        return mid, {"status": r.status, "reason": r.reason, "spacegroup": r.spacegroup,
                     "num_representatives": r.num_representatives, "num_atoms": r.num_atoms}
    except Exception as exc:  # a crash is a failure with its reason, never the end of the benchmark
        return mid, {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}


def run(root: Path, name: str, split: str, workers: int, limit: int | None) -> dict:
    frame = pd.read_csv(root / name / f"{split}.csv", usecols=["material_id", "cif"])
    if limit:
        frame = frame.head(limit)
    rows = list(zip(frame["material_id"].astype(str), frame["cif"]))
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = dict(pool.map(_one, rows, chunksize=16))
    seconds = time.perf_counter() - start
    counts = Counter(r["status"] for r in results.values())
    ok = counts["match"] + counts["match_supercell"]
    reps = [r["num_representatives"] for r in results.values() if r.get("num_representatives")]
    atoms = [r["num_atoms"] for r in results.values() if r.get("num_atoms")]
    return {
        "dataset": name, "split": split, "crystals": len(rows), "matched": ok, "rate": ok / len(rows),
        "counts": dict(counts), "seconds": seconds, "workers": workers,
        "mean_representatives": sum(reps) / max(len(reps), 1), "mean_conventional_atoms": sum(atoms) / max(len(atoms), 1),
        "failures": {mid: r for mid, r in results.items() if r["status"] not in ("match", "match_supercell")},
        "supercell_matches": sorted(mid for mid, r in results.items() if r["status"] == "match_supercell"),
    }


def main() -> None:
    import os

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["perov_5", "mp_20"])
    p.add_argument("--split", default="test")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--limit", type=int, default=None, help="first N rows only")
    p.add_argument("--out", type=Path, default=Path("bench/results/symmcd_roundtrip.json"))
    args = p.parse_args()
    root = Path(os.environ.get("CRYSTALGEN_DATA", "/work/shared/data"))
    report = {"machine": f"{platform.node()} {os.cpu_count()} cores, CPU only", "results": []}
    for name in args.datasets:
        r = run(root, name, args.split, args.workers, args.limit)
        report["results"].append(r)
        print(f"{name}/{args.split}: {r['matched']}/{r['crystals']} = {100 * r['rate']:.2f} % matched "
              f"({r['counts']}), {r['seconds']:.0f} s with {args.workers} workers; "
              f"mean M = {r['mean_representatives']:.2f}, mean N (conventional) = {r['mean_conventional_atoms']:.2f}")
        for mid, f in r["failures"].items():
            print(f"  {mid}: {f['status']}: {f['reason']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
