"""The fast CrystalNN fingerprint and a cold ``crystalgen.metrics.evaluate`` from two versions of the code, alternating.

Why: issue 23 asks for the fast fingerprint to get faster where the profile says; this measures the code before and
after a change on the same crystals, in one script, on the same cores. Each source tree (``--side LABEL=REF``: a
commit unpacked with git archive, or ``.`` for this checkout; bench/run_metrics.py's ``source_tree``) is put first on
PYTHONPATH of a child process, so both sides use the same interpreter and packages. Per round and side:

- ``fingerprints``: a child computes ``crystalnn_fingerprints`` of the generated and reference crystals (matminer
  for the sites and values it hands on, as ``fingerprint_backend: fast`` does) after a warm-up on two crystals, and
  reports the CPU seconds of that call alone (no imports, no featuriser construction);
- ``evaluate M/N``: a fresh child runs ``evaluate`` (CDVAE's metric set without the property EMD, ``--workers``
  processes, an empty metrics cache) of the first M generated against the first N reference crystals; the CPU
  seconds of its whole process tree (interpreter start, imports, worker processes) are sampled from here.

Sides alternate within each round (their order swapping between rounds) and the load average is recorded around
each measurement. "Generated" crystals are perturbed MP-20 validation crystals (bench/metrics.py), the reference the
first crystals of the MP-20 test split. The values of the two sides are compared.

    CRYSTALGEN_DATA=DATA OMP_NUM_THREADS=1 nice -n 10 python bench/fingerprint_versions.py --side before=REF \
        --side after=. --rounds 2 --out bench/results/fingerprint_versions.json
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from evaluate_speed import TreeCPU  # noqa: E402
from metrics import CDVAE_METRICS, COMPARED, generated_set, load_split  # noqa: E402
from provenance import load_average, provenance  # noqa: E402
from run_metrics import source_tree  # noqa: E402

CHILD_FINGERPRINTS = """
import json, pickle, sys, time, warnings
import numpy as np
warnings.simplefilter("ignore")
from crystalgen.metrics.crystal_features import _matminer_shells, _matminer_sites, compact
from crystalgen.metrics.crystalnn.fingerprint import crystalnn_fingerprints
structures = pickle.load(open(sys.argv[1], "rb"))
crystals = [compact(s) for s in structures["generated"] + structures["reference"]]
crystalnn_fingerprints(crystals[:2], _matminer_sites, _matminer_shells)  # imports, featurisers, tables
start = time.process_time()
values = crystalnn_fingerprints(crystals, _matminer_sites, _matminer_shells)
cpu = time.process_time() - start
np.save(sys.argv[2], np.array([v if v is not None else np.full(61, np.nan) for v in values]))
print(json.dumps({"cpu_seconds": cpu, "n_crystals": len(crystals), "n_sites": sum(len(c[1]) for c in crystals)}))
"""

CHILD_EVALUATE = """
import json, os, pickle, sys, tempfile, time, warnings
warnings.simplefilter("ignore")
def main():
    os.environ["CRYSTALGEN_CACHE"] = tempfile.mkdtemp(prefix="crystalgen-versions-")  # cold
    structures = pickle.load(open(sys.argv[1], "rb"))
    n_generated, n_reference, workers = (int(x) for x in sys.argv[2:5])
    from crystalgen.metrics import evaluate
    start = time.perf_counter()
    out = evaluate(structures["generated"][:n_generated], structures["reference"][:n_reference],
                   metrics=json.loads(sys.argv[5]), reference_name="mp_20", workers=workers, progress=False)
    print(json.dumps({"evaluate_wall_seconds": time.perf_counter() - start,
                      "values": {k: out.get(k) for k in json.loads(sys.argv[6]) if k in out}}))
if __name__ == "__main__":
    main()
"""


def run_child(tree: Path, name: str, code: str, args: list[str], work: Path) -> dict:
    """Run ``code`` in a fresh interpreter with ``tree``'s core first on PYTHONPATH; CPU of its process tree."""
    script = work / f"child_{name}.py"
    script.write_text(code)
    env = dict(os.environ, PYTHONPATH=str(tree / "core" / "src"), OMP_NUM_THREADS="1")
    before, cpu = load_average(), TreeCPU()
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True)
    wall, tree_cpu = time.perf_counter() - start, cpu.stop()
    if done.returncode != 0:
        raise SystemExit(f"child failed ({tree}):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result.update(process_tree_cpu_seconds=tree_cpu, wall_seconds=wall, load_before=before, load_after=load_average())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", action="append", required=True, help="LABEL=REF (a commit, or . for this checkout)")
    parser.add_argument("--n-generated", type=int, default=100, help="perturbed MP-20 crystals")
    parser.add_argument("--n-reference", type=int, default=300, help="first MP-20 test crystals")
    parser.add_argument("--evaluate", nargs="*", default=["30/270", "100/300"],
                        help="M/N: evaluate M generated against N reference crystals, cold")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--work", default=None, help="folder for unpacked trees and temporary files")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    work = Path(args.work or tempfile.mkdtemp(prefix="fingerprint-versions-"))
    work.mkdir(parents=True, exist_ok=True)
    sides = {}
    for spec in args.side:
        label, ref = spec.split("=", 1)
        sides[label] = source_tree(ref, work)
    data = work / "structures.pkl"
    data.write_bytes(pickle.dumps({"generated": generated_set(args.n_generated),
                                   "reference": load_split("mp_20", "test", args.n_reference)}))
    report = {**provenance(), "commits": {label: commit for label, (_, commit) in sides.items()},
              "n_generated": args.n_generated, "n_reference": args.n_reference, "workers": args.workers,
              "rounds": []}
    labels = list(sides)
    for r in range(args.rounds):
        order = labels if r % 2 == 0 else labels[::-1]
        result: dict = {"order": order, "fingerprints": {}, "evaluate": {}}
        for label in order:
            values = work / f"values_{label}.npy"
            result["fingerprints"][label] = run_child(sides[label][0], "fingerprints", CHILD_FINGERPRINTS, [str(data), str(values)],
                                                      work)
            print(f"round {r + 1} {label}: fingerprints {result['fingerprints'][label]['cpu_seconds']:.2f} CPU s",
                  flush=True)
        for size in args.evaluate:
            m, n = size.split("/")
            result["evaluate"][size] = {}
            for label in order:
                child = run_child(sides[label][0], "evaluate", CHILD_EVALUATE,
                                  [str(data), m, n, str(args.workers), json.dumps(CDVAE_METRICS[:-1]),
                                   json.dumps(COMPARED)], work)
                result["evaluate"][size][label] = child
                print(f"round {r + 1} {label}: evaluate {size} {child['process_tree_cpu_seconds']:.1f} CPU s "
                      f"(process tree)", flush=True)
        first, second = (np.load(work / f"values_{label}.npy") for label in labels[:2])
        result["fingerprints_max_abs_difference"] = float(np.nanmax(np.abs(first - second)))
        result["fingerprints_same_failures"] = bool((np.isnan(first) == np.isnan(second)).all())
        for by_side in result["evaluate"].values():
            a, b = (by_side[label]["values"] for label in labels[:2])
            keys = [k for k in a if a[k] is not None and b.get(k) is not None]
            by_side["max_abs_difference"] = max((abs(float(a[k]) - float(b[k])) for k in keys), default=None)
        report["rounds"].append(result)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    before, after = labels[:2]
    report["summary"] = {
        "fingerprints_cpu_ratio": [rd["fingerprints"][before]["cpu_seconds"] / rd["fingerprints"][after]["cpu_seconds"]
                                   for rd in report["rounds"]],
        "evaluate_cpu_ratio": {size: [rd["evaluate"][size][before]["process_tree_cpu_seconds"]
                                      / rd["evaluate"][size][after]["process_tree_cpu_seconds"]
                                      for rd in report["rounds"]] for size in args.evaluate},
    }
    report["load_average_at_end"] = load_average()
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["summary"], indent=1))
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
