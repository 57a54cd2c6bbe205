"""What a `crystalgen run` directory records, gathered into one results file: threads, training, sampling, validity.

`bench/run_resources.py` measures wall time and memory of whole commands; the run directories those commands leave
hold the rest (the automatic thread choice in resources.json, training steps in train_log.csv, sampling time in
samples/sampling.json, the generation metrics in metrics/metrics.json, the CSP scores of a run conditioned on a
split's compositions in metrics/csp/metrics.json, the run's duration in run.log). This script reads them so that the
docs can cite a file; ``--wall`` adds a whole command's wall time measured outside (e.g. by /usr/bin/time):

    python bench/run_summary.py --run quiet-symmcd=/tmp/bench/q-symmcd --run loaded-auto=/tmp/bench/l-new \\
        --out bench/results/run_summary_symmcd.json
    python bench/run_summary.py --run small=/tmp/gd/run --wall small=422.8 --out bench/results/gemsdiff_run_small_csp.json
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import provenance  # noqa: E402


def summarise(run_dir: Path) -> dict[str, object]:
    """The figures of one run directory; a missing file leaves its figures out and is named under ``missing``."""
    found: dict[str, object] = {"run_dir": str(run_dir), "missing": []}
    missing: list[str] = found["missing"]  # type: ignore[assignment]
    resources = run_dir / "resources.json"
    if resources.exists():
        train = [entry for entry in json.loads(resources.read_text()) if entry.get("stage") == "train"]
        if train:
            found["train_threads"] = train[0]["threads"]
    else:
        missing.append("resources.json")
    log = run_dir / "train_log.csv"
    if log.exists():
        rows = list(csv.DictReader(log.open()))
        found["last_logged_step"] = max(int(r["step"]) for r in rows)
        found["epochs"] = max(int(r["epoch"]) for r in rows) + 1
    else:
        missing.append("train_log.csv")
    sampling = run_dir / "samples" / "sampling.json"
    if sampling.exists():
        data = json.loads(sampling.read_text())
        timings = data.get("timings", {})
        found["sampling"] = {"num_samples": data.get("num_samples")} | {
            k: timings.get(k) for k in ("total_seconds", "sampler_seconds", "decode_seconds")}
    else:
        missing.append("samples/sampling.json")
    run_log = run_dir / "run.log"
    if run_log.exists():
        found["log"] = log_figures(run_log.read_text())
    else:
        missing.append("run.log")
    metrics = run_dir / "metrics" / "metrics.json"
    if metrics.exists():
        data = json.loads(metrics.read_text())
        found["metrics"] = {k: data.get(k) for k in ("n_samples", "struct_valid", "comp_valid", "valid", "cov_recall",
                                                      "cov_precision", "wdist_density", "wdist_prop")}
    else:
        missing.append("metrics/metrics.json")
    csp = run_dir / "metrics" / "csp" / "metrics.json"
    if csp.exists():  # only runs conditioned on a split's compositions have it, so its absence is not missing
        data = json.loads(csp.read_text())
        found["csp"] = {k: v for k, v in data.items() if k in ("csp_n", "csp_candidates")
                        or k.startswith(("match_rate@", "rms_dist@", "csp_n_matched@"))}
    finished = re.findall(r"run finished in ([\d.]+) s", (run_dir / "run.log").read_text()) if (run_dir / "run.log").exists() else []
    if finished:
        found["run_seconds"] = float(finished[-1])
    else:
        missing.append("run.log (a 'run finished' line)")
    return found


#: run.log lines of `crystalgen run` -> the figures they carry (the last match counts)
LOG_FIGURES = {
    "train_steps": (re.compile(r"training stopped after (\d+) steps"), int),
    "train_seconds": (re.compile(r"training stopped after \d+ steps .*, ([\d.]+) s$", re.M), float),
    "run_seconds": (re.compile(r"run finished in ([\d.]+) s"), float),
}


def log_figures(text: str) -> dict[str, float]:
    """Training steps and seconds and the whole run's seconds from a run.log; evaluation (and the rest: loading,
    report) is what remains of ``run_seconds`` after training and sampling."""
    found: dict[str, float] = {}
    for key, (pattern, kind) in LOG_FIGURES.items():
        matches = pattern.findall(text)
        if matches:
            found[key] = kind(matches[-1])
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", action="append", required=True, metavar="LABEL=DIR", help="a run directory")
    parser.add_argument("--wall", action="append", default=[], metavar="LABEL=SECONDS",
                        help="wall time of a run's whole command, measured outside it")
    parser.add_argument("--out", required=True, help="JSON results file")
    args = parser.parse_args()
    runs = {}
    for item in args.run:
        label, sep, path = item.partition("=")
        if not sep or not Path(path).is_dir():
            raise SystemExit(f"--run {item!r}: expected LABEL=DIR with an existing run directory")
        runs[label] = summarise(Path(path))
    for item in args.wall:
        label, sep, seconds = item.partition("=")
        if not sep or label not in runs:
            raise SystemExit(f"--wall {item!r}: expected LABEL=SECONDS with the LABEL of a --run")
        runs[label]["command_wall_seconds"] = float(seconds)
    Path(args.out).write_text(json.dumps({**provenance(), "runs": runs}, indent=2) + "\n")
    print(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
