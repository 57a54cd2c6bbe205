"""Evaluate generated crystals against a dataset split: validity, coverage, property statistics, symmetry, ...

SAMPLES is a sample directory (from `crystalgen sample`, `task`, `reconstruct` or `optimize`), a folder of CIFs, one CIF
file, an extxyz file or a CSV with a `cif` column. Writes metrics.json (flat, CDVAE's names), metrics.md (beside
the papers' numbers) and per_sample.csv to --out. Reference features are cached under $CRYSTALGEN_CACHE
(default ~/.cache/crystalgen). Metric definitions, defaults and caveats: docs/metrics.md.

Examples:
  crystalgen evaluate samples/ --reference mp_20:test --train mp_20:train --out metrics/
  crystalgen evaluate gen.extxyz --reference mp_20:test --metrics validity,coverage,d_sg --out metrics/
  crystalgen evaluate recon/ --task reconstruction --reference mp_20:test --out metrics/
  crystalgen evaluate opt/ --task optimization --reference mp_20:test --out metrics/
  crystalgen evaluate csp/ --task csp --reference mp_20:test --out metrics/

--task names a registered task (`crystalgen list`) whose evaluation scores the samples against the reference crystals
they came from (each sample's input_index in samples.jsonl, else its position): reconstruct (alias reconstruction),
optimize (alias optimization), csp, or a plugin's.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

#: option (argparse dest) -> the tasks that read it (registered names). Setting one that the task ignores is an error.
TASK_OPTIONS: dict[str, tuple[str, ...]] = {
    "metrics": ("generation",),
    "train": ("generation",),
    "cov_cutoffs": ("generation",),
    "fingerprint_backend": ("generation",),
    "n_property_samples": ("generation",),
    "seed": ("generation",),
    "symprec": ("generation",),
    "paper_protocol": ("generation",),
    "property_predictor": ("generation", "optimize"),
    "predictor_option": ("generation", "optimize"),
    "sun_option": ("generation",),
    "percentiles": ("optimize",),
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    from crystalgen.cli.common import add_resource_arguments
    from crystalgen.metrics.options import METRIC_GROUPS, METRICS

    p.add_argument("samples", metavar="SAMPLES", help="sample directory, CIF folder/file, .extxyz or .csv (cif column)")
    p.add_argument("--reference", metavar="NAME:SPLIT|PATH", required=True,
                   help="reference crystals: a dataset split (e.g. mp_20:test) or a CIF folder / CSV / extxyz")
    p.add_argument("--train", metavar="NAME:SPLIT|PATH", help="training crystals (Wyckoff templates, S.U.N. novelty)")
    p.add_argument("--out", metavar="DIR", required=True, help="output folder")
    p.add_argument("--task", default="generation",
                   help="generation (default), or a registered task whose evaluation to run: reconstruct "
                        "(reconstruction), optimize (optimization), csp, ... (samples tied to reference crystals by "
                        "input_index)")
    p.add_argument("--metrics", metavar="A,B,...",
                   help=f"generation metrics (default: all): {', '.join(METRICS)}; groups: {', '.join(METRIC_GROUPS)}")
    p.add_argument("--reference-name", metavar="DATASET",
                   help="dataset the reference belongs to, when --reference is a path (COV cutoffs, predictor, papers)")
    p.add_argument("--property-predictor", metavar="NAME", help="predictor for wdist_prop / SR (default: the dataset's)")
    p.add_argument("--predictor-option", metavar="KEY=VALUE", action="append", default=[],
                   help="option of the property predictor, e.g. models_dir=/path/to/cdvae_prop_models (repeatable)")
    p.add_argument("--sun-option", metavar="KEY=VALUE", action="append", default=[],
                   help="option of the S.U.N. metric (crystalgen.metrics.sun.sun_metrics), e.g. relax=false (repeatable)")
    p.add_argument("--oxidation-states", choices=("smact14", "icsd24"), default="smact14",
                   help="SMACT oxidation-state set for composition validity (default smact14, as the papers)")
    p.add_argument("--cov-cutoffs", default="cdvae", metavar="cdvae|symat|structrepdiff|S,C",
                   help="COV cutoffs: CDVAE's code (default), the SyMat and StructRepDiff papers' (the same values), "
                        "or 'struct,comp'")
    p.add_argument("--fingerprint-backend", choices=("fast", "matminer"), default="fast",
                   help="CrystalNN structure fingerprint: crystalgen's vectorised one (default; equal to matminer's to "
                        "1e-6, ~15x faster) or matminer's own (the reference implementation)")
    p.add_argument("--n-property-samples", type=int, default=1000,
                   help="valid crystals drawn for property statistics, diversity and S.U.N. (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of that draw (default 0)")
    p.add_argument("--symprec", type=float, default=0.1, help="spglib tolerance in Angstrom (default 0.1)")
    p.add_argument("--paper-protocol", action="store_true",
                   help="d_sg exactly as SymmCD's script (229 bins, reference at symprec 0.01, the 1000-crystal draw)")
    p.add_argument("--percentiles", metavar="P5,P10,P15", help="SR thresholds (default: CDVAE's for the dataset)")
    p.add_argument("--workers", type=int, help="worker processes (default: the cores this process may use)")
    p.add_argument("--max-file-mb", type=float, metavar="MB",
                   help="size limit per input file in megabytes (default 512, or $CRYSTALGEN_MAX_FILE_MB)")
    p.add_argument("--memory-gb", metavar="GB",
                   help="working memory of one batch of any metric stage; a crystal whose graph alone exceeds it is "
                        "refused with its reason (default: $CRYSTALGEN_MEMORY_GB, else 2)")
    add_resource_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("-v", "--verbose", action="store_true", help="debug messages")


def check_task_options(args: argparse.Namespace) -> None:
    """Refuse options the chosen --task would silently ignore, and unknown metric names, before any data is read."""
    from crystalgen.cli.errors import UserError
    from crystalgen.metrics.options import resolve_metrics

    task = args.task
    if task != "generation":
        from crystalgen.runner.tasks import evaluation_task

        task = evaluation_task(task).name  # the registered name of an alias (reconstruction -> reconstruct)
    defaults = argparse.ArgumentParser()
    add_arguments(defaults)
    for dest, tasks in TASK_OPTIONS.items():
        if getattr(args, dest) != defaults.get_default(dest) and task not in tasks:
            flag = "--" + dest.replace("_", "-")
            raise UserError(f"{flag} is not used by --task {args.task} (only by {' and '.join(tasks)}); drop it")
    if args.metrics is not None:
        try:
            resolve_metrics(args.metrics)
        except ValueError as exc:
            raise UserError(f"--metrics {args.metrics}: {exc}") from None


def _load_split(spec: str, role: str, workers, progress) -> tuple[list, str | None, list[str]]:
    """Structures of ``NAME:SPLIT`` or of a samples path, the dataset name (or None) and provenance notes."""
    from crystalgen.cli.errors import UserError
    from crystalgen.metrics.samples import read_samples

    if Path(spec).exists():
        structures, failures, _ = read_samples(spec, workers=workers, progress=progress)
        kept = [s for s in structures if s is not None]
        notes = []
        if len(kept) < len(structures):
            bad = next(f for f in failures if f)
            notes.append(f"{len(structures) - len(kept)} unreadable entries skipped (first: {bad})")
            print(f"warning: --{role} {spec}: {notes[-1]}", file=sys.stderr)
        return kept, None, notes
    if ":" not in spec:
        raise UserError(f"--{role} {spec!r}: neither an existing path nor NAME:SPLIT (e.g. mp_20:test)")
    from crystalgen.runner.datasets import split_structures

    name, split = spec.split(":", 1)
    structures, notes = split_structures(name, split, workers=workers, progress=progress)
    for note in notes:
        print(f"note: --{role} {spec}: {note}", file=sys.stderr)
    return structures, name, notes


def _input_indices(samples: str, n: int) -> list[int]:
    """Each sample's input_index from samples.jsonl (reconstruct/optimize output), else 0..n-1."""
    path = Path(samples) / "samples.jsonl"
    if not path.is_file():
        return list(range(n))
    from crystalgen.data.user_files import read_text

    rows = [_json_or_empty(line) for line in read_text(path).splitlines() if line.strip()]
    if len(rows) != n or any("input_index" not in r for r in rows):
        return list(range(n))
    return [int(r["input_index"]) for r in rows]


def _partial_samples(samples: str) -> dict[str, str]:
    """``{"samples_partial": note}`` when SAMPLES is a folder a verb did not finish writing (its PARTIAL marker)."""
    from crystalgen.cli.stopping import PARTIAL

    marker = Path(samples) / PARTIAL
    if not marker.is_file():
        return {}
    note = marker.read_text(errors="replace").strip().splitlines()[0][:300]
    print(f"warning: {samples} is marked partial: {note}", file=sys.stderr)
    return {"samples_partial": note}


def _json_or_empty(line: str) -> dict:
    """A samples.jsonl row, or {} for a line that is not JSON (read_samples reports it as unreadable)."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return {}
    return row if isinstance(row, dict) else {}


def _cov_cutoffs(text: str):
    from crystalgen.metrics.coverage import COV_CUTOFF_SETS

    if text in COV_CUTOFF_SETS:
        return text
    try:
        struct, comp = (float(x) for x in text.split(","))
    except ValueError:
        from crystalgen.cli.errors import UserError

        expected = ", ".join(COV_CUTOFF_SETS)
        raise UserError(f"--cov-cutoffs {text!r}: expected {expected} or 'struct,comp' (e.g. 0.4,10)") from None
    return (struct, comp)


def _generation(args, structures, failures, ids, reference, reference_name, annotations, progress) -> dict:
    from crystalgen.cli.common import parse_options
    from crystalgen.metrics import evaluate
    from crystalgen.metrics.options import resolve_metrics
    from crystalgen.runner.datasets import provenance

    train = None
    if args.train and not {"templates", "sun"} & set(resolve_metrics(args.metrics)):
        print(f"note: --train {args.train} is not read: none of the requested metrics uses it", file=sys.stderr)
    elif args.train:
        train, _, notes = _load_split(args.train, "train", args.workers, progress)
        annotations |= provenance("train", args.train, notes)
    options = {"oxidation_states": args.oxidation_states, "cov_cutoffs": _cov_cutoffs(args.cov_cutoffs),
               "n_property_samples": args.n_property_samples, "seed": args.seed, "symprec": args.symprec,
               "paper_protocol": args.paper_protocol, "predictor_options": parse_options(args.predictor_option),
               "sun_options": parse_options(args.sun_option), "fingerprint_backend": args.fingerprint_backend}
    return evaluate(structures, reference, train=train, metrics=args.metrics, reference_name=reference_name,
                    property_predictor=args.property_predictor, failures=failures, out_dir=Path(args.out),
                    workers=args.workers, progress=progress, options=options, sample_ids=ids, annotations=annotations)


def _paired(args, structures, reference, reference_name, annotations, progress) -> dict:
    """A task's evaluation: samples tied to reference crystals by input_index (or by order)."""
    from crystalgen.cli.common import parse_options
    from crystalgen.cli.errors import UserError
    from crystalgen.metrics.report import write_outputs
    from crystalgen.runner.tasks import evaluation_task
    from crystalgen.tasks.base import Scoring

    indices = _input_indices(args.samples, len(structures))
    if max(indices, default=-1) >= len(reference):
        raise UserError(f"{args.samples}: input_index {max(indices)} is beyond the {len(reference)} reference crystals")
    groups: list[list] = [[] for _ in range(max(indices, default=-1) + 1)]
    for i, s in zip(indices, structures):
        groups[i].append(s)
    percentiles = [float(x) for x in args.percentiles.split(",")] if args.percentiles else None
    scoring = Scoring(reference_name=reference_name, oxidation_states=args.oxidation_states, workers=args.workers,
                      progress=progress, property_predictor=args.property_predictor,
                      predictor_options=parse_options(args.predictor_option), percentiles=percentiles,
                      options=_task_options(args.samples))
    try:
        result = evaluation_task(args.task).evaluate(groups, reference[:len(groups)], scoring)
    except ValueError as exc:
        raise UserError(f"--task {args.task}: {exc}") from None
    result = {"task": args.task, "reference": reference_name or args.reference, "reference_n": len(reference),
              **annotations, **result}
    write_outputs(Path(args.out), result, [], reference_name=reference_name)
    return result


def _task_options(samples: str) -> dict:
    """The task options a sample directory was made with (sampling.json), which its evaluation may read (csp: k)."""
    path = Path(samples) / "sampling.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text()).get("task_options") or {}
    except json.JSONDecodeError:
        return {}


def _apply_memory_budget(gb: str | None) -> None:
    from crystalgen.cli.errors import UserError
    from crystalgen.resources import set_memory_budget

    try:
        set_memory_budget(gb)
    except ValueError as exc:
        raise UserError(f"--memory-gb: {exc}") from None


def run(args: argparse.Namespace) -> int:
    import logging

    from crystalgen.cli.common import apply_resources
    from crystalgen.extras import require_metrics
    from crystalgen.metrics import read_samples
    from crystalgen.resources import flat_record
    from crystalgen.runner.datasets import provenance

    require_metrics("crystalgen evaluate")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    from crystalgen.cli.preflight import writable_folder
    from crystalgen.cli.stopping import partial_outputs
    from crystalgen.data.user_files import set_max_file_mb

    check_task_options(args)
    _apply_memory_budget(args.memory_gb)
    _cov_cutoffs(args.cov_cutoffs)
    set_max_file_mb(args.max_file_mb)
    writable_folder(args.out, "--out")
    resources = apply_resources(args)
    progress = not args.no_progress
    structures, failures, ids = read_samples(args.samples, workers=args.workers, progress=progress)
    reference, dataset, notes = _load_split(args.reference, "reference", args.workers, progress)
    annotations = provenance("reference", args.reference, notes) | _partial_samples(args.samples) | flat_record(resources)
    reference_name = args.reference_name or dataset
    with partial_outputs(args.out, "evaluate"):
        if args.task == "generation":
            _generation(args, structures, failures, ids, reference, reference_name, annotations, progress)
        else:
            _paired(args, structures, reference, reference_name, annotations, progress)
    print(f"metrics written to {Path(args.out) / 'metrics.json'} and {Path(args.out) / 'metrics.md'}")
    return 0
