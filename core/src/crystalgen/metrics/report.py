"""Write an evaluation's outputs: metrics.json (flat), per_sample.csv and metrics.md (beside the papers' numbers)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from crystalgen.atomic import replace_text, replacing
from crystalgen.metrics.cdvae_constants import canonical_dataset
from crystalgen.metrics.published import PERCENT_METRICS, PUBLISHED
from crystalgen.metrics.validity import REASONS

#: (metric key, label, key of its n) in the order of the markdown table.
TABLE_ROWS: tuple[tuple[str, str, str], ...] = (
    ("struct_valid", "Structure validity (%)", "n_samples"),
    ("comp_valid", "Composition validity (%)", "n_samples"),
    ("valid", "Valid, both (%)", "n_samples"),
    ("cov_recall", "COV-R (%)", "cov_reference_n"),
    ("cov_precision", "COV-P (%)", "cov_n"),
    ("struct_div", "Structure diversity", "div_n"),
    ("comp_div", "Composition diversity", "div_n"),
    ("wdist_density", "Density EMD d_rho (g/cm^3)", "wdist_density_n"),
    ("wdist_prop", "Property EMD d_E", "wdist_prop_n"),
    ("wdist_num_elems", "# elements EMD d_elem", "wdist_num_elems_n"),
    ("d_sg", "Space-group JS distance d_sg", "d_sg_n"),
    ("templates_unique", "# unique Wyckoff templates", "templates_n"),
    ("templates_in_train_pct", "% of templates in train", "templates_n"),
    ("templates_new", "# new templates", "templates_n"),
    ("fcd", "Frechet distance", "fcd_n"),
    ("sun_rate", "S.U.N. rate (%)", "sun_n_structures"),
    ("match_rate", "Reconstruction match rate (%)", "match_rate_n"),
    ("rms_dist", "Reconstruction RMSE", "n_matched"),
    ("SR5", "SR5", "SR_n"),
    ("SR10", "SR10", "SR_n"),
    ("SR15", "SR15", "SR_n"),
)
#: table row -> the metric name its "<name>_unavailable" reason is stored under.
_METRIC_OF = {
    "cov_recall": "coverage", "cov_precision": "coverage", "struct_div": "diversity", "comp_div": "diversity",
    "templates_unique": "templates", "templates_in_train_pct": "templates", "templates_new": "templates",
    "sun_rate": "sun",
}
_SETTINGS = (
    "reference", "reference_source", "reference_n", "reference_notes", "train_source", "train_n", "train_notes", "comp_valid_oxidation_states", "cov_cutoff_set", "cov_struct_cutoff",
    "cov_comp_cutoff", "property_subset_n", "wdist_prop_predictor", "wdist_prop_units", "wdist_prop_reference_source",
    "d_sg_protocol", "d_sg_symprec", "d_sg_reference_symprec", "fcd_embedding",
)


def csp_rows(result: Mapping[str, object]) -> list[tuple[str, str, str]]:
    """Table rows of the CSP scores in ``result``, one pair per k (crystalgen.metrics.csp)."""
    ks = sorted(int(key.split("@")[1]) for key in result if key.startswith("match_rate@"))
    return [row for k in ks for row in ((f"match_rate@{k}", f"CSP match rate @{k} (%)", "csp_n"),
                                        (f"rms_dist@{k}", f"CSP RMSE @{k}", f"csp_n_matched@{k}"))]


def _plain(value):
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_ready(result: Mapping[str, object]) -> dict[str, object]:
    """Plain JSON types; NaN/inf become null."""
    return {key: _plain(value) for key, value in result.items()}


def _fmt(key: str, value, percent: bool) -> str:
    value = _plain(value)
    if value is None:
        return "n/a"
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if percent:
        return f"{100.0 * value:.2f}"
    return f"{value:.4g}"


def markdown_report(result: Mapping[str, object], reference_name: str | None = None) -> str:
    dataset = canonical_dataset(reference_name)
    published = PUBLISHED.get(dataset or "", {})
    sources = list(published)
    lines = [f"# Evaluation against {result.get('reference', 'the reference')}", ""]
    lines.append("Rates in percent; published values are each method's own numbers from its paper (table named in "
                 "the column), computed on that method's samples.")
    lines.append("")
    header = ["metric", "ours", "n", *sources]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    shown = set()
    for key, label, n_key in (*TABLE_ROWS, *csp_rows(result)):
        unavailable = result.get(f"{_METRIC_OF.get(key, key)}_unavailable")
        if key not in result and unavailable is None:
            continue
        shown.update({key, n_key})
        percent = key in PERCENT_METRICS or key.startswith("match_rate@")
        ours = _fmt(key, result[key], percent) if key in result else f"unavailable ({unavailable})"
        n = _fmt(n_key, result.get(n_key), False) if n_key in result else ""
        refs = [_fmt(key, published[s].get(key), False) if key in published[s] else "" for s in sources]
        lines.append("| " + " | ".join([label, ours, n, *refs]) + " |")
    invalid = [(r, result.get(f"n_invalid_{r}", 0), m) for r, m in REASONS.items() if result.get(f"n_invalid_{r}", 0)]
    lines += ["", "## Invalid samples by reason", ""]
    if invalid:
        lines += ["| reason | count | meaning |", "|---|---|---|"] + [f"| {r} | {n} | {m} |" for r, n, m in invalid]
    else:
        lines.append("None." if "n_samples" in result else "Not evaluated.")
    unavailable = {k[: -len("_unavailable")]: v for k, v in result.items() if k.endswith("_unavailable")}
    if unavailable:
        lines += ["", "## Not computed", ""] + [f"- {name}: {why}" for name, why in unavailable.items()]
    lines += ["", "## Settings", ""] + [f"- {k}: {_fmt(k, result[k], False)}" for k in _SETTINGS if k in result]
    other = [k for k in result if k not in shown and k not in _SETTINGS and not k.startswith("n_invalid_")
             and not k.endswith("_unavailable")]
    if other:
        lines += ["", "## All other values", ""] + [f"- {k}: {_fmt(k, result[k], False)}" for k in other]
    return "\n".join(lines) + "\n"


def write_outputs(
    out_dir: Path,
    result: Mapping[str, object],
    per_sample: Sequence[Mapping[str, object]],
    *,
    reference_name: str | None = None,
    final: bool = True,
) -> None:
    """metrics.json (``"status": "partial"`` until the last stage), per_sample.csv and, at the end, metrics.md."""
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"status": "complete" if final else "partial", **json_ready(result)}
    replace_text(out_dir / "metrics.json", json.dumps(payload, indent=2) + "\n")
    if per_sample:
        with replacing(out_dir / "per_sample.csv", "w", encoding="utf-8", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(per_sample[0]))
            writer.writeheader()
            writer.writerows(per_sample)
    if final:
        replace_text(out_dir / "metrics.md", markdown_report(result, reference_name))
