"""Run a registered task on the crystals of a dataset split, then score it: `crystalgen task NAME MODEL ...`.

Tasks come from the installed plugins (`crystalgen list` shows them; the core's are reconstruct, optimize and csp).
The output folder is a sample directory (samples.jsonl rows carry input_index and input_id) with the task's
evaluation in OUT/metrics/ (metrics.json, metrics.md); --no-evaluate skips it (`crystalgen evaluate --task NAME`
scores later). A model that cannot run the task is refused before any data is read, naming the tasks it supports.

csp (crystal structure prediction): for every crystal of --input, max(K) candidates generated from its composition,
scored with DiffCSP's protocol: match@K (a candidate among the first K matches the true structure under pymatgen's
StructureMatcher stol=0.5, angle_tol=10, ltol=0.3) and the RMSE of the best match. Needs a model that accepts the
composition condition.

Examples:
  crystalgen task csp toy_csp --ckpt runs/toy_csp-embedded-.../checkpoints/best.ckpt --input embedded:test --out csp/
  crystalgen task csp gemsdiff --ckpt best.ckpt --input mp_20:test -k 1 20 --out csp/
  crystalgen task reconstruct cdvae --ckpt best.ckpt --input mp_20:test -n 100 --out recon/
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from crystalgen.cli.common import add_task_arguments
    from crystalgen.runner.tasks import registered_tasks

    sub = p.add_subparsers(dest="task", metavar="TASK", required=True)
    for name, task in sorted(registered_tasks().items()):
        tp = sub.add_parser(name, help=task.summary, description=task.summary)
        add_task_arguments(tp)
        task.add_arguments(tp)
        add_scoring_arguments(tp)


def add_scoring_arguments(p: argparse.ArgumentParser) -> None:
    """Options of the task's evaluation (each task reads those it needs)."""
    p.add_argument("--no-evaluate", action="store_true", help="write the candidates only; do not score them")
    p.add_argument("--oxidation-states", choices=("smact14", "icsd24"), default="smact14",
                   help="SMACT oxidation-state set for composition validity (default smact14, as the papers)")
    p.add_argument("--workers", type=int, help="worker processes of the evaluation (default: the cores this process may use)")
    p.add_argument("--property-predictor", metavar="NAME", help="optimize: predictor of the SR scores (default: the dataset's)")
    p.add_argument("--predictor-option", metavar="KEY=VALUE", action="append", default=[],
                   help="optimize: option of the property predictor (repeatable)")
    p.add_argument("--percentiles", metavar="P5,P10,P15", help="optimize: SR thresholds (default: CDVAE's for the dataset)")


def scoring(args: argparse.Namespace):
    """The Scoring of the evaluation options."""
    from crystalgen.cli.common import parse_options
    from crystalgen.tasks.base import Scoring

    percentiles = [float(x) for x in args.percentiles.split(",")] if args.percentiles else None
    return Scoring(oxidation_states=args.oxidation_states, workers=args.workers, progress=not args.no_progress,
                   property_predictor=args.property_predictor, predictor_options=parse_options(args.predictor_option),
                   percentiles=percentiles)


def run(args: argparse.Namespace) -> int:
    from crystalgen.cli.common import run_dataset_task
    from crystalgen.runner.tasks import get_task

    task = get_task(args.task)
    counts = run_dataset_task(args, args.task, task.options(args), evaluate=not args.no_evaluate, scoring=scoring(args))
    print(f"{args.task}: {counts['ok']} of {counts['requested']} crystals written to {args.out}")
    metrics = counts.get("metrics")
    if metrics:
        shown = {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and not k.endswith("_n_refused")}
        print("  " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in shown.items()))
        print(f"  metrics written to {args.out}/metrics/")
    return 0
