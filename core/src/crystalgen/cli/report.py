"""Write report.md (+ PNG plots) into a run directory from its training log, samples and metrics.

Plots: training loss, validation loss, atoms per cell, density (beside the reference when --reference is given),
space groups. `crystalgen run` calls this at the end. A run whose sampling or evaluation failed or is missing
gets a warning at the top of report.md with the reason and the command that completes it; the command then exits
with code 1 after one line saying the same.

Examples:
  crystalgen report runs/symmcd-embedded-20250101-120000
  crystalgen report runs/symmcd-embedded-20250101-120000 --reference embedded:test
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run directory (runs/<model>-<dataset>-<time>)")
    p.add_argument("--reference", metavar="NAME:SPLIT",
                   help="draw this dataset split's atoms-per-cell and density beside the samples'")
    p.add_argument("--max-reference", type=int, default=2000, metavar="N",
                   help="reference crystals read for the histograms (default 2000)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug messages")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from crystalgen.cli.preflight import writable_folder
    from crystalgen.runner.console import setup_console
    from crystalgen.runner.datasets import reference_statistics
    from crystalgen.runner.report import write_report

    setup_console(args.verbose)
    if Path(args.run_dir).is_dir():  # a missing one is refused by write_report, naming it
        writable_folder(args.run_dir, "RUN_DIR")
    reference = reference_statistics(args.reference, args.max_reference) if args.reference else None
    from crystalgen.cli.run import report_state

    print(f"report: {write_report(args.run_dir, reference)}")
    return report_state(args.verb, args.run_dir)
