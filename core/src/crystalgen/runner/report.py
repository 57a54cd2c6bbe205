"""report.md and its plots, written into a run directory from what the run left there.

Everything is optional: a run without samples gets training plots only, a sample folder without a training
log gets sample statistics only. A run whose sampling or evaluation failed or is missing says so at the top, with
the reason and the command that completes it (crystalgen.runner.run_state). Plots use matplotlib's Agg backend
(no display needed).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from crystalgen.extras import require_metrics
from crystalgen.runner.checkpoint import CheckpointError, load_checkpoint
from crystalgen.runner.config import from_yaml
from crystalgen.runner.metric_log import read_metric_log
from crystalgen.runner.run_dir import RunDir
from crystalgen.runner.sample_dir import SUMMARY, read_rows


def _pyplot():
    require_metrics("the report's plots")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_report(run_path: str | Path, reference: Mapping[str, Sequence[float]] | None = None) -> Path:
    """Write ``report.md`` (+ PNGs) into the run directory and return its path.

    ``reference`` optionally maps ``"num_atoms"`` / ``"density"`` to values of the reference set, drawn
    beside the samples' histograms.
    """
    run = RunDir(Path(run_path))
    if not run.path.is_dir():
        raise FileNotFoundError(f"run directory {run.path} does not exist")
    cfg = from_yaml(run.config.read_text(), str(run.config)) if run.config.is_file() else None
    lines: list[str] = []
    model = _model_name(run)
    dataset = cfg.data.dataset if cfg is not None else "unknown dataset"
    lines.append(f"# crystalgen run report: {model or 'model'} on {dataset}\n")
    lines.append(f"Run directory: `{run.path}`\n")
    lines += _state_section(run)
    if cfg is not None:
        lines.append(f"- Preset: **{cfg.get('preset')}**")
        note = cfg.get("preset_note") or ""
        lines.append(f"- Preset note: {note if note else '(none)'}")
        lines.append("- Configuration: [config.yaml](config.yaml)")
        lines.append(f"- Threads: {_threads_line(run)}")
        lines.append(f"- Evaluation stage: {_evaluation_time(run)}\n")
    lines += _training_section(run)
    lines += _sampling_section(run, reference or {})
    lines += _metrics_section(run)
    lines += _csp_section(run)
    run.report.write_text("\n".join(lines).rstrip() + "\n")
    return run.report


def _model_name(run: RunDir) -> str | None:
    summary = run.samples / SUMMARY
    if summary.is_file():
        return json.loads(summary.read_text()).get("model")
    ckpt = run.checkpoints / "last.ckpt"
    if ckpt.is_file():
        try:
            return load_checkpoint(ckpt).get("model_name")
        except CheckpointError:
            return None
    return None


def _training_section(run: RunDir) -> list[str]:
    if not run.train_log.is_file():
        return []
    out = ["## Training\n"]
    ckpt = run.checkpoints / "last.ckpt"
    if ckpt.is_file():
        try:
            p = load_checkpoint(ckpt)["progress"]
            out.append(f"- Epochs completed: {p['epoch']} ({p['global_step']} optimiser steps, "
                       f"{p['train_seconds'] / 60:.1f} min of training)")
            out.append(f"- Stopped: {p['stop_reason'] or 'interrupted'}")
            out.append(f"- Best monitored loss: {p['best_loss']:.5g}")
        except CheckpointError as exc:
            out.append(f"- Last checkpoint unreadable: {exc}")
    out += _size_limit_line(run)
    series = read_metric_log(run.train_log)
    plots = (("training_loss.png", "training loss", {"per step": "train/loss", "epoch mean": "train/epoch_loss"}),
             ("validation_loss.png", "validation loss", {"per validation": "val/loss"}))
    for name, label, curves in plots:
        present = {legend: series[metric] for legend, metric in curves.items() if series.get(metric)}
        if present:
            out += _curve(run, name, label, present)
    return out + [""]


def _size_limit_line(run: RunDir) -> list[str]:
    """The size limit training recorded in config.yaml (runner.size_limit), with the crystals it left out."""
    if not run.config.is_file():
        return []
    limit = (from_yaml(run.config.read_text(), str(run.config)).data.get("size_limit") or {})
    if not limit.get("max_atoms"):
        return []
    excluded = limit.get("excluded") or {}
    left_out = ", ".join(f"{n} {split}" for split, n in excluded.items() if n) or "none"
    return [f"- Crystal size: up to {limit['max_atoms']} atoms (the largest training crystal kept; cap "
            f"data.max_atoms={limit.get('cap')}); crystals left out above the cap: {left_out}"]


def _curve(run: RunDir, name: str, label: str, curves: dict[str, list[tuple[int, int, float]]]) -> list[str]:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for legend, points in curves.items():
        ax.plot([s for s, _, _ in points], [v for _, _, v in points], marker="o" if len(points) < 50 else None,
                markersize=3, linewidth=1, label=legend)
    ax.set_xlabel("optimiser step")
    ax.set_ylabel(label)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(run.path / name, dpi=110)
    plt.close(fig)
    last_legend, points = list(curves.items())[-1]
    return [f"\n![{label}]({name})", f"\nFinal {label} ({last_legend}): {points[-1][2]:.5g} (step {points[-1][0]})"]


def _sampling_section(run: RunDir, reference: Mapping[str, Sequence[float]]) -> list[str]:
    summary_path = run.samples / SUMMARY
    if not summary_path.is_file():
        return []
    summary = json.loads(summary_path.read_text())
    rows = read_rows(run.samples)
    counts = summary.get("counts", {})
    out = ["## Samples\n",
           f"- Sampler: `{json.dumps(summary.get('sampler'))}`, seed {summary.get('seed')}",
           f"- Decoded: {counts.get('ok')} of {counts.get('requested')} "
           f"({', '.join(f'{k}: {v}' for k, v in counts.get('failed_by_reason', {}).items()) or 'no failures'})",
           f"- Sampling time: {summary.get('timings', {}).get('total_seconds', float('nan')):.1f} s on {summary.get('device')}",
           f"- Conditions: {_conditions_line(summary.get('conditions'))}",
           "- Files: [samples.jsonl](samples/samples.jsonl), [samples.extxyz](samples/samples.extxyz), samples/cif/"]
    ok = [r for r in rows if r.get("ok")]
    if not ok:
        return out + ["\nNo crystal was decoded, so there are no sample statistics.\n"]
    out += _histogram(run, "atoms_per_cell.png", "atoms per cell", [r["num_atoms"] for r in ok], reference.get("num_atoms"), integer=True)
    out += _histogram(run, "density.png", "density (g/cm^3)", [r["density"] for r in ok], reference.get("density"))
    groups, source = _spacegroups(run, ok)
    if groups:
        out += _bar_chart(run, "spacegroups.png", source, Counter(groups))
    return out + [""]


def _conditions_line(recorded: Any) -> str:
    """The conditions sampling.json records (crystalgen.runner.conditions), or those of an older sampling.json
    (``{"spacegroup": ..., "composition": ...}``)."""
    from crystalgen.runner.conditions import describe

    if isinstance(recorded, dict) and "kinds" not in recorded:
        given = {k: v for k, v in recorded.items() if v is not None}
        return "; ".join(f"{k} {v}" for k, v in given.items()) or describe(None)
    return describe(recorded)


def _spacegroups(run: RunDir, rows: list[dict[str, Any]]) -> tuple[list[int], str]:
    """Space-group numbers of the decoded samples and where they come from: the model's own (``spacegroup`` in
    samples.jsonl), else the metrics' per_sample.csv (spglib on the valid crystals). The report never runs spglib
    itself: on absurd generated cells it can crash the process."""
    if rows and all(isinstance(r.get("spacegroup"), int) for r in rows):
        return [r["spacegroup"] for r in rows], "space group (from the model)"
    per_sample = run.metrics / "per_sample.csv"
    if per_sample.is_file():
        with per_sample.open(newline="") as handle:
            groups = [int(r["spacegroup"]) for r in csv.DictReader(handle) if (r.get("spacegroup") or "").isdigit()]
        return groups, "space group (spglib on valid samples, from metrics/per_sample.csv)"
    return [], ""


def _histogram(run: RunDir, name: str, label: str, values: Sequence[float], reference: Sequence[float] | None,
               integer: bool = False) -> list[str]:
    import numpy as np

    plt = _pyplot()
    data = [np.asarray(values, dtype=float)] + ([np.asarray(reference, dtype=float)] if reference is not None else [])
    low, high = min(float(d.min()) for d in data), max(float(d.max()) for d in data)
    bins = np.arange(np.floor(low), np.ceil(high) + 2) - 0.5 if integer else np.linspace(low, high + 1e-9, 30)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(data[0], bins=bins, density=True, alpha=0.6, label=f"samples (n={len(data[0])})")
    if reference is not None:
        ax.hist(data[1], bins=bins, density=True, alpha=0.6, label=f"reference (n={len(data[1])})")
    ax.set_xlabel(label)
    ax.set_ylabel("fraction")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run.path / name, dpi=110)
    plt.close(fig)
    stats = f"mean {data[0].mean():.3g}, min {data[0].min():.3g}, max {data[0].max():.3g}"
    return [f"\n![{label}]({name})\n", f"Samples' {label}: {stats}"]


def _bar_chart(run: RunDir, name: str, label: str, counts: Counter) -> list[str]:
    plt = _pyplot()
    top = counts.most_common(25)
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar([str(k) for k, _ in top], [v for _, v in top])
    ax.set_xlabel(label)
    ax.set_ylabel("samples")
    ax.tick_params(axis="x", labelrotation=90)
    fig.tight_layout()
    fig.savefig(run.path / name, dpi=110)
    plt.close(fig)
    return [f"\n![{label}]({name})\n", f"{len(counts)} distinct space groups; most common: "
            + ", ".join(f"{k} ({v})" for k, v in top[:5])]


def _state_section(run: RunDir) -> list[str]:
    """The warning at the top of the report of an incomplete run: which stage, why, and the command that completes
    it (for sampling, that command samples, evaluates and rewrites this report)."""
    from crystalgen.runner.run_state import incomplete, run_states

    state = incomplete(run_states(run.path))
    if state is None:
        return []
    out = [f"> **Incomplete run: {state.stage} {state.status}.** Reason: {state.reason}."]
    if state.status == "partial":
        out.append("> The metrics below are partial: those computed before the evaluation stopped.")
    return out + [">", "> Complete it with:", ">", f"> `{state.command}`", ""]


def _threads_line(run: RunDir) -> str:
    """How many torch threads trained (the last training invocation), sampled and evaluated, and why."""
    parts = []
    if run.resources.is_file():
        entries = json.loads(run.resources.read_text())
        if entries:
            parts.append(("training", entries[-1].get("threads") or {}))
    summary = run.samples / SUMMARY
    if summary.is_file():
        parts.append(("sampling", json.loads(summary.read_text()).get("threads") or {}))
    metrics = run.metrics / "metrics.json"
    if metrics.is_file():
        flat = json.loads(metrics.read_text())
        parts.append(("evaluation", {"threads": flat.get("threads"), "source": flat.get("threads_source")}))
    shown = [f"{stage} {t['threads']} ({t.get('source')})" for stage, t in parts if t.get("threads")]
    return ", ".join(shown) or "not recorded"


def _evaluation_time(run: RunDir) -> str:
    """Wall time of the evaluation stage of ``crystalgen run`` (stages.json), or why there is none."""
    from crystalgen.runner.run_state import read_stages

    stage = read_stages(run).get("evaluation")
    if not isinstance(stage, dict) or stage.get("seconds") is None:
        return "not recorded (evaluated outside `crystalgen run`)"
    return f"{stage['seconds']:.1f} s wall ({stage.get('status')})"


def _metrics_section(run: RunDir) -> list[str]:
    md, js = run.metrics / "metrics.md", run.metrics / "metrics.json"
    if js.is_file() and json.loads(js.read_text()).get("status") == "partial":
        flat = _flatten(json.loads(js.read_text()))
        return (["## Metrics (partial)\n", "The evaluation stopped before its last metric; these values were written "
                 "before it stopped ([metrics.json](metrics/metrics.json)).\n", "| metric | value |", "| --- | --- |"]
                + [f"| {k} | {v} |" for k, v in flat.items()] + [""])
    if md.is_file():  # its headings move one level down, under this report's "Metrics"
        text = "\n".join("#" + line if line.startswith("#") else line for line in md.read_text().strip().splitlines())
        return ["## Metrics\n", text, ""]
    if js.is_file():
        flat = _flatten(json.loads(js.read_text()))
        return ["## Metrics\n", "| metric | value |", "| --- | --- |"] + [f"| {k} | {v} |" for k, v in flat.items()] + [""]
    return []


def _csp_section(run: RunDir) -> list[str]:
    """Crystal structure prediction scores of a run whose samples were conditioned on the compositions of a split."""
    from crystalgen.runner.run_state import CSP_DIR, read_stages

    path = run.metrics / CSP_DIR / "metrics.json"
    noted = read_stages(run).get("csp", {})
    if not path.is_file():
        if noted.get("status") == "failed":
            return ["## Crystal structure prediction\n", f"Scoring failed: {noted.get('reason', 'no reason recorded')}.", ""]
        return []
    result = json.loads(path.read_text())
    ks = sorted(int(key.split("@")[1]) for key in result if key.startswith("match_rate@"))
    out = ["## Crystal structure prediction\n",
           f"Each of {result.get('csp_n')} crystals of {result.get('reference_source')} predicted from its composition, "
           f"{result.get('csp_candidates')} candidates each; a candidate matches under pymatgen's StructureMatcher "
           "(stol 0.5, angle_tol 10, ltol 0.3); RMSE: the best match's normalised RMS distance, averaged over matched "
           "crystals (DiffCSP's protocol, docs/metrics.md).\n",
           "| k | match rate (%) | RMSE | matched |", "| --- | --- | --- | --- |"]
    for k in ks:
        rate, rms = result.get(f"match_rate@{k}"), result.get(f"rms_dist@{k}")
        out.append(f"| {k} | {100 * rate:.2f} | {'n/a' if rms is None else f'{rms:.4f}'} | "
                   f"{result.get(f'csp_n_matched@{k}')} |" if rate is not None else f"| {k} | n/a | n/a | 0 |")
    return out + ["", f"Files: [metrics/{CSP_DIR}/metrics.json](metrics/{CSP_DIR}/metrics.json)", ""]


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: value} if not isinstance(value, list) else {}
