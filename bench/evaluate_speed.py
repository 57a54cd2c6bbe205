"""Evaluation speed: CDVAE's protocol (serial, and in its parallel p_map form) versus crystalgen, same numbers.

CDVAE's ``scripts/compute_metrics.py`` builds one ``Crystal`` object per generated and per reference crystal
(SMACT validity, matminer's CrystalNN "ops" and Magpie fingerprints), with ``p_map`` over all cores, then computes
COV, diversity and the property EMDs serially, and recomputes the reference side on every run. Here that protocol
is bench/metrics.py's ``serial_metrics`` (CDVAE's functions reimplemented as CDVAE calls them), run

- serially (one process), and
- in the p_map form: the ``Crystal`` objects built by a pool of ``--workers`` processes, chunk size 1 as p_map;

against ``crystalgen.metrics.evaluate`` (CDVAE metric set, default fast fingerprint backend, ``--workers``
processes), run in a fresh child interpreter so that its imports count as they do for a user, with an empty
reference cache (cold: every fingerprint computed). The three alternate ``--rounds``
times in this one process, each measured with the load average before and after (the machine may be shared:
the ratios hold within a round). The metric values of the three must agree.

First, with ``--n-fingerprints N``, the structure fingerprint alone on N generated crystals in this process
(matminer's site loop vs the fast backend, alternating, CPU and wall time): the stage that dominates.

Then (``--n-warm``, default 10,000) crystalgen alone on that many generated crystals with the reference cache
filled by the cold runs (warm), the time a user sees on the second evaluation against the same split.

The "generated" crystals are MP-20 validation (then training) crystals with every atom displaced by N(0, 0.05 A)
and the cell strained by up to 2 % (seeded), as in bench/metrics.py.

Usage (2 cores, CRYSTALGEN_DATA holding mp_20/):
    python bench/evaluate_speed.py --n-generated 1000 --out bench/results/evaluate_speed_mp20_1000.json
    python bench/evaluate_speed.py --n-reference 1000 --n-warm 0 ...   # the reference split's first crystals only
    python bench/evaluate_speed.py --n-generated 10000 --n-warm 0 --sides cdvae_p_map,crystalgen_cold ...
        # 10,000 without the serial side (its ~19,000 crystals take over an hour of one core)
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from metrics import (  # noqa: E402 - bench/metrics.py, the CDVAE-protocol implementation
    CDVAE_METRICS,
    COMPARED,
    generated_set,
    load_split,
    serial_crystals,
    serial_metrics,
)
from provenance import commit  # noqa: E402

STRUCT_CUTOFF, COMP_CUTOFF = 0.4, 10.0  # CDVAE's MP-20 COV cutoffs
SIDES = ("cdvae_serial", "cdvae_p_map", "crystalgen_cold")
N_PROPERTY_SAMPLES, SEED = 1000, 0


def _p_map_crystal(structure):
    return serial_crystals([structure])[0]


def p_map_builder(workers: int):
    """CDVAE's ``p_map(lambda x: Crystal(x), ...)``: a process pool over single crystals, results in order."""

    def build(structures):
        with multiprocessing.get_context("forkserver").Pool(workers) as pool:
            return pool.map(_p_map_crystal, structures, chunksize=1)

    return build


def cdvae(generated, reference, build=serial_crystals) -> tuple[dict, float]:
    t = time.perf_counter()
    values, _ = serial_metrics(generated, reference, STRUCT_CUTOFF, COMP_CUTOFF, N_PROPERTY_SAMPLES, SEED, None,
                               build=build)
    return values, time.perf_counter() - t


CRYSTALGEN_CHILD = """
import json, os, pickle, sys, warnings
warnings.simplefilter("ignore")
def main():
    generated, reference, workers, metrics, compared = pickle.load(open(sys.argv[1], "rb"))
    from crystalgen.metrics import evaluate
    out = evaluate(generated, reference, metrics=metrics, reference_name="mp_20", workers=workers, progress=False)
    print(json.dumps({k: out.get(k) for k in compared if k in out}))
if __name__ == "__main__":
    main()
"""


def crystalgen(generated, reference, workers: int, cache_dir: Path) -> tuple[dict, float]:
    """``crystalgen.metrics.evaluate`` in a fresh interpreter (a child of this process, so that its CPU is counted),
    with ``cache_dir`` as the metrics cache: its imports count, as they do for a user's ``crystalgen evaluate`` (this
    process has imported matminer for the CDVAE side; small jobs run in the calling process)."""
    import pickle

    cache_dir.mkdir(parents=True, exist_ok=True)
    inputs = cache_dir / "inputs.pkl"
    inputs.write_bytes(pickle.dumps((generated, reference, workers, CDVAE_METRICS[:-1], COMPARED)))
    env = dict(os.environ, CRYSTALGEN_CACHE=str(cache_dir), OMP_NUM_THREADS="1")
    t = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", CRYSTALGEN_CHILD, str(inputs)], env=env, capture_output=True,
                          text=True)
    seconds = time.perf_counter() - t
    if done.returncode != 0:
        raise SystemExit(f"crystalgen evaluate failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1]), seconds


class TreeCPU:
    """CPU seconds of this process and every process below it, sampled every 0.2 s in a thread.

    Pool workers started by the forkserver are its children, not ours, so the kernel's children accounting
    (os.times) never sees them; the process tree does. A process that lives less than 0.2 s may be missed.
    """

    def __init__(self) -> None:
        import psutil

        self._root = psutil.Process()
        self._start = self._sample()
        self._last = dict(self._start)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _sample(self) -> dict[tuple[int, float], float]:
        import psutil

        out = {}
        for process in [self._root, *self._root.children(recursive=True)]:
            try:
                times = process.cpu_times()
                out[(process.pid, process.create_time())] = times.user + times.system
            except psutil.Error:
                continue
        return out

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            self._last.update(self._sample())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self._last.update(self._sample())
        return sum(cpu - self._start.get(key, 0.0) for key, cpu in self._last.items())


def timed(label: str, fn, *args) -> dict:
    """Wall and CPU seconds of one side, with the load average around it (CPU time is what a busy machine
    changes least: on an idle 2-core machine the wall time would be about CPU / min(2, workers))."""
    before, tree = os.getloadavg(), TreeCPU()
    values, seconds = fn(*args)
    cpu, after = tree.stop(), os.getloadavg()
    print(f"{label}: {seconds:.1f} s wall, {cpu:.1f} s CPU (load {before[0]:.1f} -> {after[0]:.1f})", flush=True)
    return {"seconds": seconds, "cpu_seconds": cpu, "load_before": before, "load_after": after, "values": values}


def fingerprints_part(structures, rounds: int) -> dict:
    """The structure fingerprint alone, in this process: matminer's site loop vs the fast backend, alternating."""
    from crystalgen.metrics.crystal_features import _matminer_shells, compact, rebuild
    from crystalgen.metrics.crystalnn.fingerprint import crystalnn_fingerprints, preset_layout
    from crystalgen.metrics.fingerprints import site_fingerprints, structure_fingerprint

    crystals = [compact(s) for s in structures]
    deferred = []

    def fallback(crystal, sites):
        deferred.append(len(sites))
        return site_fingerprints(rebuild(crystal), sites)

    def matminer():
        out = []
        for s in structures:
            try:
                out.append(structure_fingerprint(s))
            except Exception:  # noqa: BLE001 - as the suite
                out.append(None)
        return out, None

    preset_layout(), structure_fingerprint(structures[0])  # featurisers built outside the timings
    report = {"n_crystals": len(structures), "n_sites": sum(len(s) for s in structures), "rounds": []}
    for _ in range(rounds):
        deferred.clear()
        slow = timed("matminer CrystalNNFingerprint, site loop", lambda: _wall(matminer))
        fast = timed("crystalgen fast backend", lambda: _wall(lambda: (crystalnn_fingerprints(crystals, fallback, _matminer_shells), None)))
        worst = max(float(abs(a - b).max()) for a, b in zip(slow.pop("values"), fast.pop("values"), strict=True)
                    if a is not None and b is not None)
        report["rounds"].append({"matminer": slow, "fast": fast, "max_abs_difference": worst,
                                 "deferred_sites": sum(deferred), "speedup_wall": slow["seconds"] / fast["seconds"],
                                 "speedup_cpu": slow["cpu_seconds"] / fast["cpu_seconds"]})
        print(f"  fingerprints: {report['rounds'][-1]['speedup_cpu']:.1f}x by CPU, max |difference| {worst:.1e}, "
              f"{sum(deferred)} of {report['n_sites']} sites deferred to matminer", flush=True)
    return report


def _wall(fn) -> tuple:
    t = time.perf_counter()
    values, _ = fn()
    return values, time.perf_counter() - t


def max_difference(a: dict, b: dict) -> float:
    keys = [k for k in a if k in b and a[k] is not None and b[k] is not None]
    return max(abs(float(a[k]) - float(b[k])) for k in keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-generated", type=int, default=1000)
    parser.add_argument("--n-reference", type=int, default=None, help="first N test crystals (default: all)")
    parser.add_argument("--n-warm", type=int, default=10_000, help="generated crystals for the warm run (0: skip)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="alternations of the three (0: warm run only)")
    parser.add_argument("--sides", default=",".join(SIDES),
                        help="comma-separated subset of the timed sides of each round (crystalgen_cold always runs)")
    parser.add_argument("--n-fingerprints", type=int, default=0,
                        help="first time the structure fingerprint alone on this many generated crystals, in process")
    parser.add_argument("--fingerprints-only", action="store_true", help="stop after that part")
    parser.add_argument("--out", required=True, help="JSON file for the results (bench/results/...)")
    args = parser.parse_args()
    sides = set(args.sides.split(","))
    if not sides <= set(SIDES):
        parser.error(f"--sides: unknown {sorted(sides - set(SIDES))}; choose from {', '.join(SIDES)}")

    reference = load_split("mp_20", "test", args.n_reference)
    generated = generated_set(max(args.n_generated, args.n_warm))
    compare_set = generated[: args.n_generated]
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]), "commit": commit(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, no GPU",
        "workers": args.workers, "n_generated": len(compare_set), "n_reference": len(reference), "sides": sorted(sides),
        "versions": {p: version(p) for p in ("matminer", "pymatgen", "numpy", "scipy", "smact")},
        "load_average_at_start": os.getloadavg(), "rounds": [],
    }
    if args.n_fingerprints:
        report["fingerprints"] = fingerprints_part(compare_set[: args.n_fingerprints], max(args.rounds, 1))
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
        if args.fingerprints_only:
            print(f"results written to {args.out}")
            return
    caches = Path(tempfile.mkdtemp(prefix="crystalgen-evaluate-speed-"))
    for r in range(args.rounds):
        print(f"round {r + 1}/{args.rounds}: {len(compare_set)} generated vs {len(reference)} reference", flush=True)
        result = {}
        if "cdvae_serial" in sides:
            result["cdvae_serial"] = timed("CDVAE protocol, serial", cdvae, compare_set, reference)
        if "cdvae_p_map" in sides:
            result["cdvae_p_map"] = timed(f"CDVAE protocol, p_map x{args.workers}", cdvae, compare_set, reference,
                                          p_map_builder(args.workers))
        result["crystalgen_cold"] = ours = timed("crystalgen, cold cache", crystalgen, compare_set, reference,
                                                 args.workers, caches / f"round{r}")
        result["max_abs_difference"] = {}
        for side, name in (("cdvae_serial", "serial"), ("cdvae_p_map", "p_map")):
            if side in result:
                result[f"speedup_vs_{name}"] = result[side]["seconds"] / ours["seconds"]
                result[f"cpu_ratio_{name}_to_crystalgen"] = result[side]["cpu_seconds"] / ours["cpu_seconds"]
                result["max_abs_difference"][f"{name}_vs_crystalgen"] = max_difference(result[side]["values"],
                                                                                       ours["values"])
                print(f"  {name}: {result[f'cpu_ratio_{name}_to_crystalgen']:.1f}x by CPU, "
                      f"{result[f'speedup_vs_{name}']:.1f}x by wall", flush=True)
        print(f"  max |difference| {result['max_abs_difference']}", flush=True)
        report["rounds"].append(result)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    if args.n_warm:
        # fills the reference cache when no round ran (then timed: the cold cost of the reference side)
        report["cache_fill"] = timed("crystalgen, 50 generated (fills the reference cache if empty)", crystalgen,
                                     generated[:50], reference, args.workers, caches / "round0")
        report["warm"] = timed(f"crystalgen, warm cache, {args.n_warm} generated", crystalgen,
                               generated[: args.n_warm], reference, args.workers, caches / "round0")
        report["warm"]["n_generated"] = args.n_warm
    report["load_average_at_end"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()
