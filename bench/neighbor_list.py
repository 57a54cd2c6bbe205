"""Benchmark of periodic neighbour-list construction (docs/benchmarks.md, "Neighbour lists").

A batch of MP-20 test crystals (default 256, drawn with a fixed seed) at a 7 A cutoff, the CDVAE decoder's radius:

- crystalgen: one call of ``radius_graph_pbc`` on the whole batch (batched pure torch);
- pymatgen: a Python loop of ``Structure.get_all_neighbors(cutoff)`` over the same crystals, the call most
  crystal-graph code uses; also ``Structure.get_neighbor_list`` (pymatgen's compiled kernel without building
  neighbour objects), reported for context.

Each is run once to warm up, then ``--repeats`` times; the median wall time is reported, with the CPU time of
the process (a fairer figure when the machine is shared). ``--rounds`` repeats the whole comparison with the order
of the sides alternating, recording the load average after each side. Before timing, the edge sets are checked to be equal.

Usage (2-core CPU, no GPU):
    CRYSTALGEN_DATA=DATA python bench/neighbor_list.py --threads 1 --out bench/results/neighbor_list_threads1.json
    python bench/neighbor_list.py --num-crystals 256 --cutoff 7 --repeats 5 --rounds 5 --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import load_average, provenance  # noqa: E402


def timed(function, repeats: int) -> dict[str, float]:
    """Median wall and CPU seconds of ``repeats`` calls after one warm-up call."""
    function()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        function()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return {"wall_s": statistics.median(walls), "cpu_s": statistics.median(cpus)}


def edge_keys(centre, neighbour, image, num_nodes: int) -> np.ndarray:
    span = 64
    key = np.asarray(centre, dtype=np.int64) * num_nodes + np.asarray(neighbour, dtype=np.int64)
    for axis in range(3):
        key = key * (2 * span + 1) + np.asarray(image, dtype=np.int64).reshape(-1, 3)[:, axis] + span
    return np.sort(key)


def check_same_edges(structures, graph, cutoff: float) -> int:
    centres, neighbours, images, first = [], [], [], 0
    for structure in structures:
        for centre, found in enumerate(structure.get_all_neighbors(cutoff)):
            for neighbour in found:
                if abs(neighbour.nn_distance - cutoff) > 1e-6:
                    centres.append(first + centre)
                    neighbours.append(first + neighbour.index)
                    images.append(np.round(neighbour.image).astype(np.int64))
        first += len(structure)
    away = (graph.distance - cutoff).abs() > 1e-6
    target, source = graph.edge_index[1][away].numpy(), graph.edge_index[0][away].numpy()
    ours = edge_keys(target, source, graph.cell_offsets[away].numpy(), first)
    theirs = edge_keys(centres, neighbours, np.stack(images), first)
    if not np.array_equal(ours, theirs):
        raise SystemExit(f"edge sets differ: {len(ours)} edges here, {len(theirs)} from pymatgen")
    return int(graph.edge_index.shape[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--num-crystals", type=int, default=256)
    parser.add_argument("--cutoff", type=float, default=7.0, help="Angstrom")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=5, help="each round times every side; the order alternates")
    parser.add_argument("--out", help="JSON results file, e.g. bench/results/neighbor_list_threads1.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Issues encountered while parsing CIF")

    from crystalgen.geometry import radius_graph_pbc
    from crystalgen.testing import benchmark_data_root

    if benchmark_data_root() is None:
        raise SystemExit("set CRYSTALGEN_DATA to the folder holding mp_20/")
    import pandas as pd
    from pymatgen.core import Structure

    frame = pd.read_csv(benchmark_data_root() / "mp_20" / "test.csv", usecols=["material_id", "cif"])
    frame = frame.sample(n=args.num_crystals, random_state=args.seed)
    structures = [Structure.from_str(cif, fmt="cif") for cif in frame["cif"]]
    frac = torch.from_numpy(np.concatenate([s.frac_coords for s in structures]))
    lattice = torch.from_numpy(np.stack([s.lattice.matrix for s in structures]))
    num_atoms = torch.tensor([len(s) for s in structures])

    def ours():
        return radius_graph_pbc(frac, lattice, num_atoms, args.cutoff)

    cutoff, repeats = args.cutoff, args.repeats
    num_edges = check_same_edges(structures, ours(), cutoff)
    start = provenance()
    sides = {
        "crystalgen_radius_graph_pbc": ours,
        "pymatgen_get_all_neighbors_loop": lambda: [s.get_all_neighbors(cutoff) for s in structures],
        "pymatgen_get_neighbor_list_loop": lambda: [s.get_neighbor_list(cutoff) for s in structures],
    }
    rounds = []
    for index in range(args.rounds):
        # the order alternates round by round, so that a drift in the machine's load hits every side alike
        order = list(sides) if index % 2 == 0 else list(reversed(sides))
        times = {name: timed(sides[name], repeats) | {"load_average_1min": load_average()[0]} for name in order}
        ratio = {unit: times["pymatgen_get_all_neighbors_loop"][unit] / times["crystalgen_radius_graph_pbc"][unit]
                 for unit in ("wall_s", "cpu_s")}
        rounds.append({"order": order, "times": times, "speedup_vs_get_all_neighbors_wall": ratio["wall_s"],
                       "speedup_vs_get_all_neighbors_cpu": ratio["cpu_s"]})
        print(f"round {index}: " + "  ".join(f"{n} {t['wall_s'] * 1e3:.1f} ms wall / {t['cpu_s'] * 1e3:.1f} ms cpu"
                                             for n, t in times.items()), flush=True)
    report = {
        **start,
        "crystals": len(structures),
        "atoms": int(num_atoms.sum()),
        "edges": num_edges,
        "cutoff_A": args.cutoff,
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "rounds": rounds,
        "load_average_at_end": load_average(),
        "summary": {
            key: {"median": statistics.median(r[key] for r in rounds), "min": min(r[key] for r in rounds),
                  "max": max(r[key] for r in rounds)}
            for key in ("speedup_vs_get_all_neighbors_wall", "speedup_vs_get_all_neighbors_cpu")
        } | {
            f"{name}_{unit}_median": statistics.median(r["times"][name][unit] for r in rounds)
            for name in sides for unit in ("wall_s", "cpu_s")
        } | {"load_average_1min_range": [min(t["load_average_1min"] for r in rounds for t in r["times"].values()),
                                         max(t["load_average_1min"] for r in rounds for t in r["times"].values())]},
    }
    print(json.dumps(report["summary"], indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        print(f"written to {args.out}")


if __name__ == "__main__":
    main()
