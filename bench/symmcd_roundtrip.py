"""SymmCD representation round trip on benchmark splits: structure -> (G, k, X', S, A') -> structure.

Every crystal goes through the preprocessing transform and the sampler's decoder (crystalgen_symmcd.round_trip)
and is compared with the original by pymatgen's StructureMatcher. Writes a JSON with the rates, every failure
and every match that needed ``attempt_supercell`` by material id and reason (no structures), the process CPU time
of the Wyckoff analysis (the preprocessing transform) per split, the command, the code's commit and the load
average; prints a summary for docs/benchmarks.md.

    CRYSTALGEN_DATA=DATA OMP_NUM_THREADS=1 nice -n 5 python bench/symmcd_roundtrip.py \
        --datasets perov_5 mp_20 --split test --workers 1 --out bench/results/symmcd_roundtrip.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pandas as pd
from pymatgen.core import Structure


class TimedTransform:
    """The preprocessing transform, adding the process CPU seconds of each call to ``seconds``."""

    def __init__(self) -> None:
        from crystalgen_symmcd.transform import AsymmetricUnitTransform

        self.inner = AsymmetricUnitTransform()
        self.seconds = 0.0

    def __call__(self, structure: Structure):
        start = time.process_time()
        try:
            return self.inner(structure)
        finally:
            self.seconds += time.process_time() - start


def _one(args: tuple[str, str]) -> tuple[str, dict]:
    import warnings

    warnings.filterwarnings("ignore")
    from crystalgen_symmcd.round_trip import round_trip

    mid, cif = args
    transform = TimedTransform()
    try:
        r = round_trip(Structure.from_str(cif, fmt="cif"), transform)
        return mid, {"status": r.status, "reason": r.reason, "spacegroup": r.spacegroup,
                     "num_representatives": r.num_representatives, "num_atoms": r.num_atoms,
                     "transform_cpu_seconds": transform.seconds}
    except Exception as exc:  # a crash is a failure with its reason, never the end of the benchmark
        return mid, {"status": "error", "reason": f"{type(exc).__name__}: {exc}", "transform_cpu_seconds": transform.seconds}


def run(root: Path, name: str, split: str, workers: int, limit: int | None) -> dict:
    frame = pd.read_csv(root / name / f"{split}.csv", usecols=["material_id", "cif"])
    if limit:
        frame = frame.head(limit)
    rows = list(zip(frame["material_id"].astype(str), frame["cif"]))
    start = time.perf_counter()
    load_before = os.getloadavg()[0]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = dict(pool.map(_one, rows, chunksize=16))
    seconds = time.perf_counter() - start
    transform_cpu = sum(r.pop("transform_cpu_seconds") for r in results.values())
    counts = Counter(r["status"] for r in results.values())
    ok = counts["match"] + counts["match_supercell"]
    reps = [r["num_representatives"] for r in results.values() if r.get("num_representatives")]
    atoms = [r["num_atoms"] for r in results.values() if r.get("num_atoms")]
    return {
        "dataset": name, "split": split, "crystals": len(rows), "matched": ok, "rate": ok / len(rows),
        "counts": dict(counts), "seconds": seconds, "workers": workers,
        "load_average_1min": {"start": load_before, "end": os.getloadavg()[0]},
        "wyckoff_analysis_cpu_seconds": transform_cpu, "wyckoff_analysis_ms_per_crystal": 1000 * transform_cpu / len(rows),
        "mean_representatives": sum(reps) / max(len(reps), 1), "mean_conventional_atoms": sum(atoms) / max(len(atoms), 1),
        "failures": {mid: r for mid, r in results.items() if r["status"] not in ("match", "match_supercell")},
        "supercell_matches": sorted(mid for mid, r in results.items() if r["status"] == "match_supercell"),
    }


def code_commit() -> str:
    """HEAD of the checkout this script runs from, with "+dirty" when tracked files differ from it."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "plugins/symmcd", "core"],
                               cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--datasets", nargs="+", default=["perov_5", "mp_20"])
    p.add_argument("--split", default="test")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--limit", type=int, default=None, help="first N rows only")
    p.add_argument("--out", type=Path, default=Path("bench/results/symmcd_roundtrip.json"))
    args = p.parse_args()
    from crystalgen.testing import benchmark_data_root

    root = benchmark_data_root()
    if root is None:
        raise SystemExit("set CRYSTALGEN_DATA to the folder holding the benchmark CSVs (perov_5/, mp_20/, ...)")
    report = {"machine": f"{platform.node()} {os.cpu_count()} cores, CPU only, shared with other jobs unless the load says otherwise",
              "command": " ".join(["python", *sys.argv]), "commit": code_commit(),
              "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "results": []}
    for name in args.datasets:
        r = run(root, name, args.split, args.workers, args.limit)
        report["results"].append(r)
        print(f"{name}/{args.split}: {r['matched']}/{r['crystals']} = {100 * r['rate']:.2f} % matched "
              f"({r['counts']}), {r['seconds']:.0f} s with {args.workers} workers; "
              f"mean M = {r['mean_representatives']:.2f}, mean N (conventional) = {r['mean_conventional_atoms']:.2f}; "
              f"Wyckoff analysis {r['wyckoff_analysis_cpu_seconds']:.1f} s CPU ({r['wyckoff_analysis_ms_per_crystal']:.1f} ms per crystal)")
        for mid, f in r["failures"].items():
            print(f"  {mid}: {f['status']}: {f['reason']}")
        print(f"  matched only with attempt_supercell: {', '.join(r['supercell_matches']) or 'none'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
