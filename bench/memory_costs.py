"""Peak memory of each metric stage that builds graphs or all-pairs arrays, against its estimate (the calibration of
crystalgen.metrics.memory).

Each point runs in a fresh Python process with one thread and crystalgen's malloc tuning (as the ``crystalgen``
command runs): the stage's model is loaded and warmed up on a small crystal, the kernel's peak-RSS mark is reset
(/proc/self/clear_refs), the stage runs once on the point's crystals, and the point records the increase of the peak
RSS over the RSS before the stage, the estimate of crystalgen.metrics.memory, and the counts behind it (estimated
edges and angles; the graph's actual ones where the stage has a graph). ``ratio`` = measured / estimated must stay
at most 1 for every point: the constants are meant to be conservative.

Stages: ``chgnet`` (energies + crystal features of one batch, crystalgen.metrics.chgnet_backend.predict_batch),
``relax`` (a CHGNet relaxation of 3 FIRE steps, positions + cell), ``dimenet`` (CDVAE's DimeNet++ property model on
built CrystalNN graphs; needs $CRYSTALGEN_CDVAE_PROP_MODELS), ``distances`` (Structure.distance_matrix),
``matcher`` (StructureMatcher.fit of a crystal and a perturbed copy), ``fingerprint`` (CrystalNN site fingerprints;
recorded, no cost model). Crystals: Pb at random positions (at least 0.5 A apart) in a cubic cell at a given
volume per atom, fcc Cu supercells (perturbed by 0.05 A), rock-salt MgO, and MP-20 test crystals.

    OMP_NUM_THREADS=1 CRYSTALGEN_DATA=DATA CRYSTALGEN_CDVAE_PROP_MODELS=MODELS \\
        python bench/memory_costs.py --out bench/results/memory_costs.json

DATA is a folder holding the CDVAE benchmark CSVs (``crystalgen data fetch mp_20`` downloads them), MODELS the folder of CDVAE's property-model weights (perovskite/, carbon/, mp20/).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np

MB = 1024**2

#: (stage, label, crystal specs) of every calibration point
POINTS: list[tuple[str, str, list[dict]]] = [
    *[("chgnet", f"Pb8 at {v} A^3/atom", [{"kind": "random", "n": 8, "vpa": v}]) for v in (1.0, 1.5, 2.0, 4.0, 8.0, 16.0)],
    ("chgnet", "Pb27 at 1.5 A^3/atom", [{"kind": "random", "n": 27, "vpa": 1.5}]),
    ("chgnet", "Pb20 at 0.65 A^3/atom", [{"kind": "random", "n": 20, "vpa": 0.65}]),
    ("chgnet", "MgO rock salt", [{"kind": "mgo"}]),
    ("chgnet", "Cu fcc 4x4x4 (256 atoms)", [{"kind": "fcc", "k": 4}]),
    ("chgnet", "64 MP-20 test crystals (first 64)", [{"kind": "mp20", "start": 0, "n": 64}]),
    ("chgnet", "64 MP-20 test crystals of 20 atoms", [{"kind": "mp20", "atoms": 20, "n": 64}]),
    *[("relax", f"Pb8 at {v} A^3/atom", [{"kind": "random", "n": 8, "vpa": v}]) for v in (2.0, 4.0, 8.0, 16.0)],
    ("relax", "MgO rock salt", [{"kind": "mgo"}]),
    ("relax", "MP-20 test crystal of 20 atoms", [{"kind": "mp20", "atoms": 20, "n": 1}]),
    ("dimenet", "64 MP-20 test crystals (first 64)", [{"kind": "mp20", "start": 0, "n": 64}]),
    ("dimenet", "Pb20 at 0.65 A^3/atom", [{"kind": "random", "n": 20, "vpa": 0.65}]),
    ("dimenet", "Cu fcc 6x6x6 (864 atoms)", [{"kind": "fcc", "k": 6}]),
    *[("distances", f"Cu fcc {k}x{k}x{k} ({4 * k**3} atoms)", [{"kind": "fcc", "k": k}]) for k in (6, 8, 10)],
    *[("matcher", f"Cu fcc {k}x{k}x{k} ({4 * k**3} atoms)", [{"kind": "fcc", "k": k}]) for k in (2, 3, 4)],
    ("fingerprint", "Pb20 at 0.65 A^3/atom", [{"kind": "random", "n": 20, "vpa": 0.65}]),
    ("fingerprint", "first 20 sites of Cu fcc 17x17x17 (19,652 atoms)", [{"kind": "fcc", "k": 17, "sites": 20}]),
]


# ------------------------------------------------------------------------------------------------------------
# crystals


def random_cell(n: int, volume_per_atom: float, element: str = "Pb", seed: int = 0, min_distance: float = 0.5):
    """``n`` atoms at random positions, pairwise at least ``min_distance`` apart (minimum image), in a cube."""
    from pymatgen.core import Lattice, Structure

    rng = np.random.default_rng(seed)
    lattice = Lattice.cubic((n * volume_per_atom) ** (1 / 3))
    frac: list[np.ndarray] = []
    while len(frac) < n:
        candidate = rng.random(3)
        if not frac or lattice.get_all_distances(np.array(frac), candidate[None]).min() >= min_distance:
            frac.append(candidate)
    return Structure(lattice, [element] * n, np.array(frac))


def fcc_supercell(k: int, seed: int = 0):
    from pymatgen.core import Lattice, Structure

    cell = Structure(Lattice.cubic(3.61), ["Cu"] * 4, [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]) * (k, k, k)
    noise = np.random.default_rng(seed).normal(0.0, 0.05, (len(cell), 3))
    return Structure(cell.lattice, cell.species, cell.cart_coords + noise, coords_are_cartesian=True)


def rock_salt_mgo():
    from pymatgen.core import Lattice, Structure

    a = 4.21
    return Structure(Lattice([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]]), ["Mg", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def mp20_test(spec: dict) -> list:
    import pandas as pd
    from pymatgen.core import Structure

    from crystalgen.testing import benchmark_data_root

    root = benchmark_data_root()
    if root is None:
        raise SystemExit("set CRYSTALGEN_DATA to the folder holding mp_20/")
    rows = pd.read_csv(root / "mp_20" / "test.csv", nrows=3000)["cif"]  # the first 3,000 hold 64 of 20 atoms
    structures = [Structure.from_str(c, fmt="cif") for c in rows]
    if "atoms" in spec:
        structures = [s for s in structures if len(s) == spec["atoms"]]
    start = spec.get("start", 0)
    return structures[start:start + spec["n"]]


def crystals(specs: list[dict]) -> list:
    out = []
    for spec in specs:
        if spec["kind"] == "random":
            out.append(random_cell(spec["n"], spec["vpa"]))
        elif spec["kind"] == "fcc":
            out.append(fcc_supercell(spec["k"]))
        elif spec["kind"] == "mgo":
            out.append(rock_salt_mgo())
        else:
            out.extend(mp20_test(spec))
    return out


# ------------------------------------------------------------------------------------------------------------
# one point, in this (fresh) process


def _status(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def _stage(stage: str, structures: list, specs: list[dict]):
    """(run: the measured call, estimate in bytes, counts) for ``stage``; set-up work happens here, unmeasured."""
    from crystalgen.metrics import memory

    if stage in ("chgnet", "relax"):
        from crystalgen.metrics.chgnet_backend import _relax_one, load_chgnet, predict_batch, predict_cost

        model = load_chgnet()
        model.graph_converter.set_isolated_atom_response("error")
        predict_batch(model, [rock_salt_mgo()])  # warm-up: lazy initialisation is not the stage's cost
        cost = predict_cost(model) if stage == "chgnet" else memory.CHGNET_RELAX
        counts = [cost.counts(len(s), s.volume) for s in structures]
        graphs = [model.graph_converter(s) for s in structures]
        actual = {"edges": sum(int(g.atom_graph.shape[0]) for g in graphs), "angles": sum(int(g.bond_graph.shape[0]) for g in graphs)}
        del graphs
        estimate = sum(cost.of(s) for s in structures)
        if stage == "chgnet":
            run = lambda: predict_batch(model, structures)  # noqa: E731
        else:
            _relax_one((rock_salt_mgo(), 0.1, 1, True, "0.3.0"))
            run = lambda: [_relax_one((s, 0.1, 3, True, "0.3.0")) for s in structures]  # noqa: E731
        return run, estimate, {"estimated_edges": sum(c[0] for c in counts), "estimated_angles": sum(c[1] for c in counts), **actual}
    if stage == "dimenet":
        from crystalgen.metrics.cdvae_property.crystalnn_graph import crystalnn_graphs
        from crystalgen.metrics.properties import get_predictor

        predictor = get_predictor("cdvae_mp_20")
        predictor.predict([rock_salt_mgo()])
        graphs = crystalnn_graphs(structures, workers=1)
        items = list(enumerate(graphs))
        counts = [predictor.graph_counts(g) for g in graphs]
        out = np.full(len(items), np.nan)
        estimate = sum(memory.dimenet_cost(*c) for c in counts)
        totals = {"atoms": sum(c[0] for c in counts), "edges": sum(c[1] for c in counts), "triplets_upper_bound": sum(c[2] for c in counts)}
        return (lambda: predictor._predict_batch(items, out)), estimate, totals
    if stage == "distances":
        s = structures[0]
        return (lambda: s.distance_matrix), memory.DISTANCE_MATRIX.estimate(len(s), len(s)), {"pairs": len(s) ** 2}
    if stage == "matcher":
        from crystalgen.metrics.sun import _matches, default_matcher

        s = structures[0]
        other = fcc_supercell(int(round((len(s) / 4) ** (1 / 3))), seed=1)
        matcher = default_matcher()
        _matches(matcher, rock_salt_mgo(), rock_salt_mgo())
        return (lambda: _matches(matcher, s, other)), memory.STRUCTURE_MATCHER.estimate(len(s), len(other)), {"pairs": len(s) * len(other)}
    if stage == "fingerprint":
        from crystalgen.metrics.fingerprints import _crystalnn, structure_fingerprint

        s = structures[0]
        structure_fingerprint(rock_salt_mgo())
        sites = specs[0].get("sites")
        if sites:
            return (lambda: [_crystalnn().featurize(s, i) for i in range(sites)]), None, {"sites": sites}
        return (lambda: structure_fingerprint(s)), None, {"sites": len(s)}
    raise ValueError(f"unknown stage {stage!r}")


def measure(stage: str, specs: list[dict]) -> dict:
    structures = crystals(specs)
    run, estimate, counts = _stage(stage, structures, specs)
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark (VmHWM) to the current RSS
    before = _status("VmRSS")
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    peak = _status("VmHWM")
    measured = peak - before
    return {"crystals": len(structures), "atoms": sum(len(s) for s in structures),
            "volume_per_atom": [round(s.volume / len(s), 3) for s in structures][:3], **counts,
            "measured_mb": measured / MB, "estimated_mb": None if estimate is None else estimate / MB,
            "ratio": None if estimate is None else measured / estimate, "seconds": seconds, "rss_before_mb": before / MB}


# ------------------------------------------------------------------------------------------------------------
# driver


def code_commit() -> str:
    """HEAD of the checkout this script runs from, with "+dirty" when tracked files under core/ differ from it."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "core"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def run_point(stage: str, label: str, specs: list[dict], timeout: float) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    command = [sys.executable, __file__, "--point", json.dumps({"stage": stage, "specs": specs})]
    try:
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"stage": stage, "label": label, "error": f"timed out after {timeout:.0f} s"}
    if done.returncode != 0:
        return {"stage": stage, "label": label, "error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return {"stage": stage, "label": label, **json.loads(done.stdout.strip().splitlines()[-1])}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--stages", nargs="+", default=["chgnet", "relax", "dimenet", "distances", "matcher", "fingerprint"])
    p.add_argument("--timeout", type=float, default=300, help="seconds per point")
    p.add_argument("--out", type=Path, help="write the results as JSON (e.g. bench/results/memory_costs.json)")
    p.add_argument("--point", help=argparse.SUPPRESS)  # internal: measure one point in this process
    args = p.parse_args()
    if args.point:
        import torch

        from crystalgen.runner.allocator import keep_freed_memory

        torch.set_num_threads(1)
        keep_freed_memory()
        point = json.loads(args.point)
        print(json.dumps(measure(point["stage"], point["specs"])))
        return
    report = {"command": " ".join(["python", *sys.argv]), "commit": code_commit(),
              "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": f"{platform.node()} {os.cpu_count()} cores, CPU only", "load_average_at_start": os.getloadavg(),
              "versions": {name: version(name) for name in ("torch", "chgnet", "pymatgen", "matminer", "torch_geometric")},
              "threads": 1, "measured": "peak RSS increase over the RSS before the stage (VmHWM after clear_refs)",
              "points": []}
    for stage, label, specs in POINTS:
        if stage not in args.stages:
            continue
        result = run_point(stage, label, specs, args.timeout)
        report["points"].append(result)
        if "error" in result:
            print(f"{stage:11s} {label:45s} error: {result['error']}", flush=True)
        else:
            ratio = "" if result["ratio"] is None else f"ratio {result['ratio']:.2f}"
            estimate = "" if result["estimated_mb"] is None else f"estimate {result['estimated_mb']:8.1f} MB"
            print(f"{stage:11s} {label:45s} measured {result['measured_mb']:8.1f} MB  {estimate}  {ratio}  "
                  f"{result['seconds']:.1f} s", flush=True)
    report["load_average_at_end"] = os.getloadavg()
    ratios = [r["ratio"] for r in report["points"] if r.get("ratio") is not None]
    report["max_ratio"] = max(ratios) if ratios else None
    print(f"largest measured / estimated: {report['max_ratio']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
