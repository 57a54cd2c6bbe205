"""Peak memory of ``crystalgen evaluate`` with the run config's default metric set, on N generated-like MP-20 crystals
against the MP-20 test split (docs/benchmarks.md).

The input is the first N crystals of the MP-20 test split, each perturbed as in bench/metrics.py (atoms displaced by
N(0, 0.05 A) per axis, lattice strained by up to 2 %, seeded), written as a CIF folder. The command is
``python -m crystalgen evaluate DIR --reference mp_20:test --train mp_20:train --metrics <runner.yaml's
evaluate.metrics>`` (templates read the training split, as ``crystalgen run`` does), run as a child process while
bench/run_resources.py polls every process of its tree (every ``--interval`` s). Recorded:

* ``peak_tree_rss_mb``: the largest sum of RSS over the command and all its worker processes at one poll (polling
  can miss a peak shorter than the interval);
* ``peak_process_rss_mb``: the largest peak RSS of any one process of the tree, main or worker, exact
  (the kernel's ru_maxrss over the waited-for descendants);
* wall time, the command, the commit, the load average before and after, versions, and whether the metrics cache
  (reference features, CHGNet predictions) was warm.

    OMP_NUM_THREADS=1 CRYSTALGEN_DATA=DATA python bench/evaluate_memory.py -n 1000 \\
        --out bench/results/evaluate_memory_mp20_1000.json

DATA is a folder holding the CDVAE benchmark CSVs (``crystalgen data fetch mp_20`` downloads them).

With an empty metrics cache the command first computes the reference's fingerprints and the training split's
Wyckoff templates (tens of minutes); run it twice to measure the warm case, as every later evaluation is. A quick
check of the script: ``-n 50 --reference embedded:test --train embedded:train``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory_costs import code_commit  # noqa: E402
from metrics import load_split, perturbed  # noqa: E402
from run_resources import measure  # noqa: E402


def default_metrics() -> list[str]:
    from importlib.resources import files

    from omegaconf import OmegaConf

    return list(OmegaConf.load(files("crystalgen") / "configs" / "runner.yaml").evaluate.metrics)


def write_samples(n: int, folder: Path) -> int:
    from pymatgen.io.cif import CifWriter

    folder.mkdir(parents=True, exist_ok=True)
    crystals = perturbed(load_split("mp_20", "test", n))
    for i, structure in enumerate(crystals):
        CifWriter(structure).write_file(folder / f"{i:06d}.cif")
    return len(crystals)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", type=int, default=1000, help="generated-like crystals (default 1000)")
    p.add_argument("--reference", default="mp_20:test", help="--reference of the command (default mp_20:test)")
    p.add_argument("--train", default="mp_20:train", help="--train of the command (default mp_20:train)")
    p.add_argument("--workers", type=int, help="--workers of the command (default: its own, all cores)")
    p.add_argument("--memory-gb", help="--memory-gb of the command (default: its own)")
    p.add_argument("--interval", type=float, default=0.2, help="seconds between polls of the process tree")
    p.add_argument("--out", type=Path, help="write the results as JSON (e.g. bench/results/evaluate_memory_mp20_1000.json)")
    args = p.parse_args()
    from crystalgen.metrics.cache import cache_root

    cache = cache_root() / "metrics"
    with tempfile.TemporaryDirectory(prefix="crystalgen-evaluate-memory-") as tmp:
        samples, out = Path(tmp) / "samples", Path(tmp) / "metrics"
        n = write_samples(args.n, samples)
        command = [sys.executable, "-m", "crystalgen", "evaluate", str(samples), "--reference", args.reference,
                   "--train", args.train, "--metrics", ",".join(default_metrics()), "--out", str(out), "--no-progress"]
        command += ["--workers", str(args.workers)] if args.workers else []
        command += ["--memory-gb", args.memory_gb] if args.memory_gb else []
        report = {"command": " ".join(["python", *sys.argv]), "evaluate_command": " ".join(command[1:]),
                  "commit": code_commit(), "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "machine": f"{platform.node()} {os.cpu_count()} cores, CPU only", "n_samples": n,
                  "metrics_cache": str(cache), "cache_warm_at_start": cache.is_dir() and any(cache.iterdir()),
                  "versions": {name: version(name) for name in ("torch", "chgnet", "pymatgen", "matminer")},
                  "omp_num_threads": os.environ.get("OMP_NUM_THREADS", "1")}
        log = Path(tmp) / "evaluate.log"
        report.update(measure(command, background=0, poll=args.interval, log=log))
        report["output_tail"] = log.read_text(errors="replace").strip().splitlines()[-5:]
        metrics_file = out / "metrics.json"
        if metrics_file.is_file():
            result = json.loads(metrics_file.read_text())
            report["metrics"] = {k: result.get(k) for k in ("status", "n_valid", "cov_recall", "wdist_prop", "wdist_prop_predictor",
                                                            "wdist_prop_n_refused", "d_sg", "templates_unique")}
    print(f"{n} crystals: exit {report['exit_code']}, {report['wall_s']:.0f} s, peak tree RSS {report['peak_tree_rss_mb']:.0f} MB "
          f"(sum over processes, polled), peak single process {report['peak_process_rss_mb']:.0f} MB")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
