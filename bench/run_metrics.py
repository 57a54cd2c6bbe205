"""Metrics of `crystalgen run MODEL` (default `small` preset, embedded data) from two versions of the code, run
by run in alternation, so that a model rebuilt from named parts can be compared with the code before.

Why: issue #17 asks that the plugins built from named parts give metrics within noise of the code before. Each
source tree (``--side LABEL=REF``; REF a commit, unpacked with git archive, or ``.`` for this checkout) is put first on
PYTHONPATH and the run goes through ``python -m crystalgen``, so both sides use the same interpreter and packages.
Runs are one at a time, niced, with ``--threads 1`` and an empty preprocessing and metrics cache each, alternating
sides per model so that a drift in the machine's load hits both alike. The presets stop training on a time budget,
so the number of training steps each run reached is recorded beside its metrics.

    OMP_NUM_THREADS=1 python bench/run_metrics.py --side before=58fe074 --side after=. \\
        --models cdvae symmcd structrepdiff --work /tmp/run_metrics --out bench/results/run_metrics_parts.json

``--set KEY=VALUE`` (repeatable) passes a config override to every run. With ``--set trainer.max_minutes=null --set
trainer.max_epochs=N`` both sides train the same steps whatever the machine's load, so their metrics can be compared
on a shared machine (the steps reached under a time budget are not).

Writes the commands, commits, load averages, versions and, per run, the exit code, wall and CPU time, training
steps, and the headline metrics of metrics/metrics.json.

``--side-set LABEL:KEY=VALUE`` (repeatable) gives an override to one side only, so two sides on the same code can
compare a setting; ``--seeds S ...`` repeats every model and side with ``trainer.seed=S``, sides alternating within
each seed, so that a difference can be set against seed noise:

    OMP_NUM_THREADS=1 python bench/run_metrics.py --side raw=. --side ema=. --side-set ema:trainer.ema_decay=0.999 \
        --models structrepdiff --seeds 1 2 --jobs 2 --set trainer.max_minutes=null --set trainer.max_epochs=40 \
        --work /tmp/ema_small --out bench/results/structrepdiff_ema_small.json

``--existing LABEL=RUN_DIR`` (repeatable, instead of --side) records run directories made earlier by ``crystalgen
run``, as they are: model, preset, threads and load average at the start (resources.json), training steps and
metrics; ``--note`` says where they came from (which code, which command), which the folders do not record.

    python bench/run_metrics.py --existing before=/tmp/mainjob/runs/symmcd-embedded-20261206-235252 \
        --note "..." --out bench/results/run_metrics_existing.json
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
import platform
import subprocess
import sys
import tarfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from provenance import versions  # bench/ is the script's folder

ROOT = Path(__file__).resolve().parents[1]
RECORDED = ("torch", "pymatgen", "smact", "matminer", "chgnet")  # library versions in the results
SOURCES = ("core/src", "plugins/symmcd/src", "plugins/cdvae/src", "plugins/structrepdiff/src")
METRICS = ("n_samples", "struct_valid", "comp_valid", "valid", "cov_recall", "cov_precision", "wdist_density",
           "wdist_num_elems", "wdist_prop", "d_sg", "templates_unique", "templates_in_train_pct", "struct_div",
           "comp_div")


def source_tree(ref: str, work: Path) -> tuple[Path, str]:
    """(root of the source tree, commit): this checkout for ``.``, else ``ref`` unpacked from git."""
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD" if ref == "." else ref], check=True,
                            capture_output=True, text=True).stdout.strip()
    if ref == ".":
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return ROOT, commit + ("-dirty" if dirty else "")
    target = work / f"src-{commit[:10]}"
    if not target.is_dir():
        archive = work / f"{commit[:10]}.tar"
        subprocess.run(["git", "-C", str(ROOT), "archive", "-o", str(archive), commit, "core", "plugins"], check=True)
        with tarfile.open(archive) as tar:
            tar.extractall(target, filter="data")
    return target, commit


def training_steps(run_dir: Path) -> int | None:
    """The last global step of train_log.csv (the presets stop on a time budget, so this varies with load)."""
    log = run_dir / "train_log.csv"
    if not log.is_file():
        return None
    with log.open() as f:
        steps = [int(row["step"]) for row in csv.DictReader(f) if (row.get("step") or "").isdigit()]
    return max(steps) if steps else None


def one_run(model: str, label: str, tree: Path, work: Path, overrides: list[str],
            seed: int | None = None) -> dict[str, object]:
    name = f"{label}-{model}" + ("" if seed is None else f"-seed{seed}")
    overrides = [*overrides, *([] if seed is None else [f"trainer.seed={seed}"])]
    run_dir, cache = work / name, work / f"cache-{name}"
    command = ["nice", "-n", "10", sys.executable, "-m", "crystalgen", "run", model, "--run-dir", str(run_dir),
               "--threads", "1", "--no-progress", *overrides]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(tree / s) for s in SOURCES), CRYSTALGEN_CACHE=str(cache),
               OMP_NUM_THREADS="1")
    load_before = os.getloadavg()
    started = time.perf_counter()
    with open(work / f"{name}.log", "w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        # wait4: this run's own CPU time (its evaluation child included), exact even with --jobs runs side by side
        _, status, usage = os.wait4(process.pid, 0)
        code = process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    metrics_file = run_dir / "metrics" / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    sampling = run_dir / "samples" / "sampling.json"
    ema_weights = json.loads(sampling.read_text()).get("ema_weights") if sampling.is_file() else None
    return {"model": model, "side": label, "seed": seed, "overrides": overrides, "sampled_with_ema_weights": ema_weights,
            "command": " ".join(command), "exit_code": code, "wall_s": round(wall, 1),
            "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
            "training_steps": training_steps(run_dir), "load_average_before": load_before,
            "load_average_at_end": os.getloadavg(),
            "metrics": {k: metrics[k] for k in METRICS if k in metrics}, "metrics_status": metrics.get("status")}


def existing_run(label: str, run_dir: Path) -> dict[str, object]:
    """What an earlier run directory holds, for comparison with new runs."""
    metrics_file = run_dir / "metrics" / "metrics.json"
    metrics = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    resources = json.loads((run_dir / "resources.json").read_text()) if (run_dir / "resources.json").is_file() else []
    config = (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").is_file() else ""
    preset = next((line.split(":", 1)[1].strip() for line in config.splitlines() if line.startswith("preset:")), None)
    sampling = run_dir / "samples" / "sampling.json"
    model = json.loads(sampling.read_text()).get("model") if sampling.is_file() else None
    return {"side": label, "run_dir": str(run_dir), "model": model, "preset": preset,
            "started": resources[0].get("at") if resources else None,
            "threads": resources[0].get("threads") if resources else None,
            "training_steps": training_steps(run_dir), "metrics": {k: metrics[k] for k in METRICS if k in metrics},
            "metrics_status": metrics.get("status")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", action="append", default=[], help="LABEL=REF (a commit, or . for this checkout)")
    parser.add_argument("--existing", action="append", default=[], help="LABEL=RUN_DIR of an earlier crystalgen run")
    parser.add_argument("--note", default="", help="with --existing: where the run directories came from")
    parser.add_argument("--models", nargs="+", default=["cdvae", "symmcd", "structrepdiff"])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="config override given to every run, e.g. trainer.max_minutes=null with a fixed "
                             "trainer.max_epochs, so that both sides train the same number of steps whatever the load")
    parser.add_argument("--side-set", dest="side_overrides", action="append", default=[], metavar="LABEL:KEY=VALUE",
                        help="config override given to the runs of one side only")
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs side by side (each niced, one thread); with a fixed max_epochs the metrics do not "
                             "depend on it, only wall times do")
    parser.add_argument("--seeds", nargs="+", type=int, default=[None],
                        help="repeat each model and side with trainer.seed=S (default: the preset's seed)")
    parser.add_argument("--work", type=Path, help="folder for the source trees, run folders and logs (with --side)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.existing:
        runs = [existing_run(label, Path(path)) for label, _, path in (e.partition("=") for e in args.existing)]
        args.out.write_text(json.dumps({"script": "bench/run_metrics.py " + " ".join(sys.argv[1:]), "note": args.note,
                                        "runs": runs}, indent=1) + "\n")
        return
    if not args.side or args.work is None:
        parser.error("give --side LABEL=REF (twice, to compare) and --work, or --existing LABEL=RUN_DIR")
    args.work.mkdir(parents=True, exist_ok=True)
    sides = {}
    for item in args.side:
        label, _, ref = item.partition("=")
        sides[label] = source_tree(ref or ".", args.work)
    side_overrides: dict[str, list[str]] = {label: [] for label in sides}
    for item in args.side_overrides:
        label, _, override = item.partition(":")
        if label not in sides or "=" not in override:
            parser.error(f"--side-set {item!r}: give LABEL:KEY=VALUE with LABEL one of {sorted(sides)}")
        side_overrides[label].append(override)
    plan = [(model, label, tree, seed) for model in args.models
            for seed, (label, (tree, _)) in itertools.product(args.seeds, sides.items())]
    runs: list[dict] = []
    lock = threading.Lock()

    def run_one(model: str, label: str, tree: Path, seed: int | None) -> None:
        run = one_run(model, label, tree, args.work, [*args.overrides, *side_overrides[label]], seed)
        with lock:
            runs.append(run)
            print(json.dumps(run), flush=True)
            args.out.write_text(json.dumps(result(args, sides, runs), indent=1) + "\n")  # partial results survive

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for future in [pool.submit(run_one, *item) for item in plan]:
            future.result()


def result(args: argparse.Namespace, sides: dict[str, tuple[Path, str]], runs: list[dict]) -> dict[str, object]:
    return {"script": "bench/run_metrics.py " + " ".join(sys.argv[1:]),
            "commits": {label: commit for label, (_, commit) in sides.items()}, "host": platform.node(),
            "cpus": os.cpu_count(), "overrides": args.overrides, "side_overrides": args.side_overrides, "jobs": args.jobs, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "versions": versions(RECORDED),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "runs": runs}


if __name__ == "__main__":
    main()
