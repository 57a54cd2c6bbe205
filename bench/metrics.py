"""Benchmark of the metrics suite: CDVAE's generation metrics against the MP-20 test split.

Two measurements (docs/benchmarks.md, "Metrics"):

1. ``compare``: M generated crystals (default 1,000) against the 9,046 MP-20 test crystals, through a
   straightforward serial implementation written below the way CDVAE's ``scripts/compute_metrics.py`` does it (one
   Crystal object per structure, a per-site CrystalNN loop, itertools.product over oxidation states, reference
   fingerprints recomputed every run, scipy cdist), and through crystalgen twice: with an empty reference cache
   (cold) and with it filled (warm; parallel workers, vectorised distances). The numbers must agree.
2. ``full``: crystalgen's CDVAE generation metrics (validity, COV-R/P, diversity, density / #elements EMD, and
   the property EMD when a property predictor is available) for N generated crystals (default 10,000) against the
   MP-20 test split. With ``--part all`` it runs after ``compare`` with the reference cache filled; the cold cost
   of the reference side is the compare part's cold - warm difference.

There is no trained model here: the "generated" crystals are MP-20 validation crystals (then training crystals
to reach N) with every atom displaced by N(0, 0.05 A) per Cartesian axis and the lattice strained by up to 2%
(seeded), so some of them are invalid, as generated crystals are.

Usage (2-core CPU, no GPU):
    CRYSTALGEN_DATA=DATA python bench/metrics.py --part all
    python bench/metrics.py --part compare --n-compare 1000
    python bench/metrics.py --part cold-ratio --n-compare 50 --n-reference 200 --rounds 3 --workers 2 \
        --out bench/results/metrics_cold_ratio.json

3. ``cold-ratio``: the first-run comparison, both sides in each round (order alternating, each in a child process,
   a new empty cache for crystalgen each time), load average and CPU time of the process tree recorded per side;
   smaller sets, so that it can be repeated.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import pickle
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import load_average, provenance  # noqa: E402

NOISE = 0.05  # Angstrom, per Cartesian axis
STRAIN = 0.02  # maximum relative strain of the lattice


# ------------------------------------------------------------------------------------------------------------
# inputs


def load_split(name: str, split: str, limit: int | None = None):
    """The split's crystals in file order; with ``limit``, only the first rows are read and parsed."""
    from crystalgen.metrics import read_samples
    from crystalgen.testing import benchmark_data_root

    root = benchmark_data_root()
    if root is None:
        raise SystemExit("set CRYSTALGEN_DATA to the folder holding mp_20/")
    if limit:
        import pandas as pd
        from pymatgen.core import Structure

        frame = pd.read_csv(root / name / f"{split}.csv", usecols=["cif"], nrows=limit)
        return [Structure.from_str(cif, fmt="cif") for cif in frame["cif"]]
    structures, failures, _ = read_samples(root / name / f"{split}.csv", progress=False)
    return [s for s in structures if s is not None]


def perturbed(structures, seed: int = 0):
    """Each crystal with Gaussian atom displacements and a random lattice strain (the stand-in "generated" set)."""
    from pymatgen.core import Lattice, Structure

    rng = np.random.default_rng(seed)
    out = []
    for s in structures:
        strain = np.eye(3) + rng.uniform(-STRAIN, STRAIN, size=(3, 3))
        lattice = Lattice(s.lattice.matrix @ strain)
        cart = s.frac_coords @ lattice.matrix + rng.normal(scale=NOISE, size=(len(s), 3))
        out.append(Structure(lattice, s.species, cart, coords_are_cartesian=True))
    return out


def generated_set(n: int):
    val = load_split("mp_20", "val", n)
    base = val if len(val) >= n else val + load_split("mp_20", "train", n - len(val))
    return perturbed(base[:n])


def property_predictor():
    """CDVAE's MP-20 formation-energy model when crystalgen.metrics.properties can load it, else None."""
    try:
        from crystalgen.metrics.properties import get_predictor

        return get_predictor("cdvae_mp_20")
    except Exception as exc:  # noqa: BLE001 - the benchmark runs without it and says so
        print(f"property predictor unavailable ({type(exc).__name__}: {exc}); wdist_prop is skipped")
        return None


# ------------------------------------------------------------------------------------------------------------
# the straightforward serial implementation (the shape of CDVAE's compute_metrics.py)


class SerialCrystal:
    def __init__(self, structure, featurisers):
        crystalnn, magpie = featurisers
        self.structure = structure
        counts = Counter(site.specie.Z for site in structure)
        elems = sorted(counts)
        reduced = np.array([counts[e] for e in elems])
        reduced = reduced // np.gcd.reduce(reduced)
        self.comp_valid = serial_smact_validity(elems, reduced.tolist())
        dist = structure.distance_matrix + np.diag(np.ones(len(structure)) * 10.5)
        self.struct_valid = bool(dist.min() >= 0.5 and structure.volume >= 0.1)
        self.valid = self.comp_valid and self.struct_valid
        from pymatgen.core import Composition

        self.comp_fp = magpie.featurize(Composition({int(z): n for z, n in counts.items()}))
        try:
            self.struct_fp = np.array([crystalnn.featurize(structure, i) for i in range(len(structure))]).mean(axis=0)
        except Exception:  # noqa: BLE001 - as CDVAE: no fingerprint -> invalid
            self.valid = False
            self.comp_fp = self.struct_fp = None


def serial_smact_validity(elems, counts) -> bool:
    import smact
    from pymatgen.core import Element

    symbols = [Element.from_Z(z).symbol for z in elems]
    if len(symbols) == 1:
        return True
    if all(s in smact.metals for s in symbols):
        return True
    try:
        elements = [smact.Element(s) for s in symbols]
    except Exception:  # noqa: BLE001
        return False
    enegs = [e.pauling_eneg for e in elements]
    for ox in itertools.product(*[e.oxidation_states_smact14 or [] for e in elements]):
        if sum(q * n for q, n in zip(ox, counts)) != 0:
            continue
        if old_pauling_test(ox, enegs):
            return True
    return False


def old_pauling_test(ox, enegs) -> bool:
    """smact 2.2.1's eneg_states_test as CDVAE called it: an opposite-sign pair with a missing electronegativity
    raised TypeError, which CDVAE read as 'OK'; any other pair with one fails the assignment."""
    for (o1, e1), (o2, e2) in itertools.combinations(list(zip(ox, enegs)), 2):
        opposite = (o1 > 0 and o2 < 0) or (o1 < 0 and o2 > 0)
        if e1 is None or e2 is None:
            return opposite
        if (o1 > 0 and o2 < 0 and e1 >= e2) or (o1 < 0 and o2 > 0 and e1 <= e2):
            return False
    return True


@functools.cache
def cdvae_featurisers():
    """Built once per process, as CDVAE's module-level ``CrystalNNFP`` and ``CompFP``."""
    from matminer.featurizers.composition.composite import ElementProperty
    from matminer.featurizers.site.fingerprint import CrystalNNFingerprint

    return CrystalNNFingerprint.from_preset("ops"), ElementProperty.from_preset("magpie")


def serial_crystals(structures):
    """CDVAE's ``[Crystal(x) for x in ...]``, in this process."""
    import warnings

    warnings.filterwarnings("ignore")
    featurisers = cdvae_featurisers()
    return [SerialCrystal(s, featurisers) for s in structures]


def serial_metrics(generated, reference, struct_cutoff, comp_cutoff, n_samples, seed, predictor, build=serial_crystals):
    """CDVAE's generation metrics; ``build`` turns structures into SerialCrystal objects (serial, or p_map-like)."""
    import warnings

    from scipy.spatial.distance import cdist, pdist
    from scipy.stats import wasserstein_distance

    from crystalgen.metrics.cdvae_constants import MAGPIE_MEANS, MAGPIE_STDS

    warnings.filterwarnings("ignore")
    scale = lambda x: np.nan_to_num((np.array(x, dtype=float) - MAGPIE_MEANS) / MAGPIE_STDS, nan=0.0)  # noqa: E731
    timings = {}
    t = time.perf_counter()
    crys = build(generated)
    gt = build(reference)
    timings["crystals_and_fingerprints"] = time.perf_counter() - t
    t = time.perf_counter()
    valid_idx = [i for i, c in enumerate(crys) if c.valid]
    if len(valid_idx) > n_samples:
        valid_idx = [valid_idx[i] for i in np.random.default_rng(seed).choice(len(valid_idx), n_samples, replace=False)]
    samples = [crys[i] for i in valid_idx]
    out = {
        "comp_valid": np.mean([c.comp_valid for c in crys]),
        "struct_valid": np.mean([c.struct_valid for c in crys]),
        "valid": np.mean([c.valid for c in crys]),
        "comp_div": pdist(scale([c.comp_fp for c in samples])).mean(),
        "struct_div": pdist(np.array([c.struct_fp for c in samples])).mean(),
        "wdist_density": wasserstein_distance([c.structure.density for c in samples],
                                              [c.structure.density for c in gt]),
        "wdist_num_elems": wasserstein_distance([len(set(c.structure.species)) for c in samples],
                                                [len(set(c.structure.species)) for c in gt]),
    }
    fp = [c for c in crys if c.struct_fp is not None]
    s_d = cdist(np.array([c.struct_fp for c in fp]), np.array([c.struct_fp for c in gt]))
    c_d = cdist(scale([c.comp_fp for c in fp]), scale([c.comp_fp for c in gt]))
    out["cov_recall"] = np.mean((s_d.min(axis=0) <= struct_cutoff) & (c_d.min(axis=0) <= comp_cutoff))
    out["cov_precision"] = np.sum((s_d.min(axis=1) <= struct_cutoff) & (c_d.min(axis=1) <= comp_cutoff)) / len(crys)
    out["amsd_recall"], out["amsd_precision"] = s_d.min(axis=0).mean(), s_d.min(axis=1).mean()
    out["amcd_recall"], out["amcd_precision"] = c_d.min(axis=0).mean(), c_d.min(axis=1).mean()
    timings["statistics_and_coverage"] = time.perf_counter() - t
    if predictor is not None:
        t = time.perf_counter()
        out["wdist_prop"] = wasserstein_distance(predictor.predict([c.structure for c in samples]),
                                                 predictor.predict([c.structure for c in gt]))
        timings["property"] = time.perf_counter() - t
    return {k: float(v) for k, v in out.items()}, timings


# ------------------------------------------------------------------------------------------------------------
# runs


CDVAE_METRICS = ["validity", "coverage", "diversity", "wdist_density", "wdist_num_elems", "wdist_prop"]
COMPARED = ["comp_valid", "struct_valid", "valid", "cov_recall", "cov_precision", "amsd_recall", "amsd_precision",
            "amcd_recall", "amcd_precision", "comp_div", "struct_div", "wdist_density", "wdist_num_elems", "wdist_prop"]


def ours(generated, reference, workers, predictor):
    from crystalgen.metrics import evaluate

    metrics = CDVAE_METRICS if predictor is not None else CDVAE_METRICS[:-1]
    t = time.perf_counter()
    out = evaluate(generated, reference, metrics=metrics, reference_name="mp_20", workers=workers,
                   property_predictor=predictor.name if predictor is not None else None, progress=False)
    return out, time.perf_counter() - t


def run_full(args, generated, reference, predictor, cache_state: str) -> dict:
    out, seconds = ours(generated, reference, args.workers, predictor)
    print(f"full ({cache_state} reference cache): {len(generated)} crystals vs {len(reference)}: {seconds:.1f} s",
          flush=True)
    return {"cache": cache_state, "seconds": seconds,
            "metrics": {k: out.get(k) for k in COMPARED + ["n_samples", "n_valid", "cov_n_fingerprints"]}}


def run_compare(args, generated, reference, predictor) -> dict:
    subset = generated[: args.n_compare]
    _, cold_seconds = ours(subset, reference, args.workers, predictor)  # fills the cache
    our_out, our_seconds = ours(subset, reference, args.workers, predictor)
    t = time.perf_counter()
    serial_out, serial_parts = serial_metrics(subset, reference, 0.4, 10.0, 1000, 0, predictor)
    serial_seconds = time.perf_counter() - t
    diffs = {k: abs(float(our_out[k]) - serial_out[k]) for k in COMPARED if k in serial_out and k in our_out}
    print(f"compare: serial {serial_seconds:.1f} s, crystalgen cold cache {cold_seconds:.1f} s, warm cache "
          f"{our_seconds:.1f} s, speed-up (warm) {serial_seconds / our_seconds:.1f}x, max |difference| "
          f"{max(diffs.values()):.2e}", flush=True)
    return {"serial_seconds": serial_seconds, "serial_parts": serial_parts, "ours_cold_seconds": cold_seconds,
            "ours_warm_seconds": our_seconds, "speedup_warm": serial_seconds / our_seconds,
            "speedup_cold": serial_seconds / cold_seconds, "abs_differences": diffs,
            "serial": serial_out, "ours": {k: our_out.get(k) for k in COMPARED}}


def run_cold_ratio(args, generated, reference, predictor) -> dict:
    """Serial CDVAE-style script against crystalgen with an empty cache, both sides per round, order alternating.

    Both sides compute every fingerprint of the generated and reference crystals, so this is the first-run cost.
    Each side runs in a child process (``--part side``) on the same pickled crystals, and crystalgen gets a new
    empty cache folder each time; CPU time is the child's whole process tree (its worker processes and their
    forkserver are waited for before it exits; also polled per process as a cross-check), imports included, and the
    child reports its own compute wall."""
    subset, ref = generated[: args.n_compare], reference[: args.n_reference]
    crystals = Path(tempfile.mkdtemp(prefix="crystalgen-bench-cold-")) / "crystals.pkl"
    crystals.write_bytes(pickle.dumps((subset, ref)))
    rounds = []
    for index in range(args.rounds):
        order = ["serial", "crystalgen_cold"] if index % 2 == 0 else ["crystalgen_cold", "serial"]
        sides = {}
        for side in order:
            env = dict(os.environ, CRYSTALGEN_CACHE=tempfile.mkdtemp(prefix="crystalgen-bench-cold-cache-"))
            load_before, cpu_before = load_average(), _children_cpu_seconds()
            t = time.perf_counter()
            stdout, polled = _run_polling_cpu([sys.executable, __file__, "--part", "side", "--side", side,
                                               "--crystals", str(crystals), "--workers", str(args.workers)], env)
            sides[side] = {"wall_s": time.perf_counter() - t, "cpu_s": _children_cpu_seconds() - cpu_before,
                           "cpu_s_polled": polled,
                           "compute_wall_s": json.loads(stdout.strip().splitlines()[-1])["compute_wall_s"],
                           "load_average_before": load_before, "load_average_after": load_average()}
        rounds.append({"order": order, "sides": sides,
                       "speedup_wall": sides["serial"]["compute_wall_s"] / sides["crystalgen_cold"]["compute_wall_s"],
                       "speedup_cpu": sides["serial"]["cpu_s"] / sides["crystalgen_cold"]["cpu_s"]})
        print(f"round {index}: serial {sides['serial']['compute_wall_s']:.1f} s ({sides['serial']['cpu_s']:.1f} s CPU), "
              f"crystalgen cold {sides['crystalgen_cold']['compute_wall_s']:.1f} s "
              f"({sides['crystalgen_cold']['cpu_s']:.1f} s CPU)", flush=True)
    loads = [x for r in rounds for side in r["sides"].values()
             for x in (side["load_average_before"][0], side["load_average_after"][0])]
    return {"n_generated": len(subset), "n_reference": len(ref), "rounds": rounds,
            "summary": {key: {"median": statistics.median(r[key] for r in rounds), "min": min(r[key] for r in rounds),
                              "max": max(r[key] for r in rounds)} for key in ("speedup_wall", "speedup_cpu")}
            | {"load_average_1min_range": [min(loads), max(loads)]}}


def run_side(args) -> None:
    """One side of ``cold-ratio`` in this (child) process; prints its compute wall time as the last line (JSON)."""
    subset, ref = pickle.loads(Path(args.crystals).read_bytes())
    t = time.perf_counter()
    if args.side == "serial":
        serial_metrics(subset, ref, 0.4, 10.0, 1000, 0, None)
    else:
        ours(subset, ref, args.workers, None)
    wall = time.perf_counter() - t
    _stop_forkserver()
    print(json.dumps({"compute_wall_s": wall}))


def _stop_forkserver() -> None:
    """Wait for multiprocessing's forkserver, which reaps the worker processes it forked: only then do their CPU
    seconds reach this process's children and, when it exits, the parent's (otherwise they are lost with it)."""
    from multiprocessing import forkserver

    server = getattr(forkserver, "_forkserver", None)
    if server is not None and hasattr(server, "_stop"):
        server._stop()


def _run_polling_cpu(command: list[str], env: dict[str, str]) -> tuple[str, float]:
    """Run ``command``; return its stdout and the CPU seconds of its process tree, polled every 0.2 s per process
    (a cross-check of the kernel's children accounting; misses at most the last 0.2 s of each process)."""
    import psutil

    seen: dict[int, float] = {}
    with tempfile.TemporaryFile(mode="w+") as out:
        child = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.DEVNULL, text=True)
        root = psutil.Process(child.pid)
        while child.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            for process in tree:
                try:
                    times = process.cpu_times()
                    seen[process.pid] = times.user + times.system
                except psutil.NoSuchProcess:
                    continue
            time.sleep(0.2)
        if child.wait() != 0:
            raise SystemExit(f"{' '.join(command)} failed with exit code {child.returncode}")
        out.seek(0)
        return out.read(), sum(seen.values())


def _children_cpu_seconds() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return children.ru_utime + children.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("full", "compare", "all", "cold-ratio", "side"), default="all")
    parser.add_argument("--side", choices=("serial", "crystalgen_cold"), help="side: which side to run (internal)")
    parser.add_argument("--crystals", help="side: pickled (generated, reference) crystals (internal)")
    parser.add_argument("--rounds", type=int, default=3, help="cold-ratio: rounds of both sides, order alternating")
    parser.add_argument("--n-reference", type=int, default=None, help="cold-ratio: first N reference crystals")
    parser.add_argument("--n-generated", type=int, default=10_000)
    parser.add_argument("--n-compare", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cache", help="cache folder (default: a fresh temporary one, so the first run is cold)")
    parser.add_argument("--out", default="bench_metrics.json", help="where to write the numbers (JSON)")
    args = parser.parse_args()
    if args.part == "side":
        run_side(args)
        return
    cache = Path(args.cache or tempfile.mkdtemp(prefix="crystalgen-bench-cache-"))
    reference = load_split("mp_20", "test", args.n_reference if args.part == "cold-ratio" else None)
    generated = generated_set(args.n_generated if args.part in ("full", "all") else args.n_compare)
    predictor = property_predictor()
    report = {**provenance(), "workers": args.workers, "n_reference": len(reference),
              "property_predictor": predictor.name if predictor is not None else None}
    if args.part == "cold-ratio":
        report["cold_ratio"] = run_cold_ratio(args, generated, reference, predictor)
    os.environ["CRYSTALGEN_CACHE"] = str(cache)
    cold = not (cache / "metrics").exists()
    if args.part in ("compare", "all"):
        report["compare"] = run_compare(args, generated, reference, predictor)
    if args.part in ("full", "all"):
        # after "compare" the reference fingerprints are cached: that part measured what computing them costs
        state = "cold" if cold and args.part == "full" else "warm"
        report["full"] = run_full(args, generated, reference, predictor, state)
    report["load_average_at_end"] = load_average()
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"numbers written to {args.out}")


if __name__ == "__main__":
    main()
