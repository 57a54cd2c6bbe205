"""Cell size of sampled crystals against the true structures of the same compositions (docs/benchmarks.md, the
GemsDiff density gap): for each CSP sample folder, the median cell volume and the median ratio of its volume per
atom to that of the test crystal whose composition it was given (``input_index`` of samples.jsonl, the split's row).

Usage (CRYSTALGEN_DATA holding mp_20/):
    python bench/cell_volumes.py --split mp_20:test --rows 1000 --out bench/results/gemsdiff_cell_volumes_mp20.json \
        NAME=FOLDER ...
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from metrics import load_split  # noqa: E402
from provenance import provenance  # noqa: E402


def cell_volumes(folder: Path, truth_volume_per_atom: list[float]) -> dict:
    rows = [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines() if line.strip()]
    ok = [r for r in rows if r["ok"]]
    ratios = [r["volume"] / r["num_atoms"] / truth_volume_per_atom[r["input_index"]] for r in ok]
    return {"folder": str(folder), "crystals": len(rows), "decoded": len(ok),
            "median_cell_volume": statistics.median(r["volume"] for r in ok),
            "median_volume_per_atom_ratio_to_truth": statistics.median(ratios)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("samples", nargs="+", help="NAME=FOLDER: a sample folder with samples.jsonl")
    parser.add_argument("--split", default="mp_20:test", help="DATASET:SPLIT the compositions came from")
    parser.add_argument("--rows", type=int, default=1000, help="its first rows (the compositions sampled)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    dataset, split = args.split.split(":")
    truth = [s.volume / len(s) for s in load_split(dataset, split, args.rows)]
    report = {**provenance(), "split": args.split, "rows": args.rows, "samples": {}}
    for item in args.samples:
        name, folder = item.split("=", 1)
        report["samples"][name] = cell_volumes(Path(folder), truth)
        print(name, report["samples"][name], flush=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
