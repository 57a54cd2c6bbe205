"""Reconstruction match rate and RMSE (CDVAE appendix G.1).

Each predicted crystal is compared with its true crystal by pymatgen's StructureMatcher(stol=0.5, angle_tol=10,
ltol=0.3). The match rate is the fraction of *all* pairs that match; a prediction that is missing or invalid
(structure or composition, see validity.py) counts as unmatched without being compared, as in CDVAE's
``RecEval``. The RMSE is the mean over matched pairs of ``get_rms_dist()[0]``, which pymatgen normalises by
(V/N)^(1/3). A pair whose matching would exceed the memory budget (crystals of thousands of atoms,
crystalgen.metrics.memory) is not compared: it counts as unmatched and in ``recon_n_refused``, with the first reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from pymatgen.core import Structure

from crystalgen.metrics.composition_validity import DEFAULT_OXIDATION_STATES
from crystalgen.metrics.crystal_features import compact
from crystalgen.metrics.memory import STRUCTURE_MATCHER, refusal_summary
from crystalgen.metrics.parallel import map_chunks
from crystalgen.metrics.structure_matching import MATCHER_TOLERANCES, rms_chunk
from crystalgen.metrics.validity import sample_validity
from crystalgen.resources import memory_budget, over_budget_reason


def reconstruction(
    pred: Sequence[Structure | None],
    true: Sequence[Structure],
    *,
    oxidation_states: str = DEFAULT_OXIDATION_STATES,
    workers: int | None = None,
    progress: bool = True,
) -> dict[str, float | int | str]:
    """match_rate (fraction), rms_dist (mean over matches; NaN without any) and the counts behind them."""
    if len(pred) != len(true):
        raise ValueError(f"reconstruction needs paired lists: {len(pred)} predictions for {len(true)} true crystals")
    present = {i: s for i, s in enumerate(pred) if s is not None}
    valid = [i for i, s in present.items() if sample_validity(s, None, oxidation_states).reason is None]
    budget = memory_budget()
    reasons = [""] * len(pred)
    for i in valid:
        cost = STRUCTURE_MATCHER.estimate(len(present[i]), len(true[i]))
        if cost > budget:
            reasons[i] = over_budget_reason(STRUCTURE_MATCHER.what, cost, budget, structure=present[i])
    compared = [i for i in valid if not reasons[i]]
    rms = map_chunks(
        partial(rms_chunk, tolerances=MATCHER_TOLERANCES),
        [(compact(present[i]), compact(true[i])) for i in compared],
        workers=workers,
        desc="StructureMatcher",
        progress=progress,
    )
    matched = [r for r in rms if r is not None]
    return {
        "match_rate": len(matched) / len(pred) if pred else float("nan"),
        "rms_dist": sum(matched) / len(matched) if matched else float("nan"),
        "match_rate_n": len(pred),
        "n_matched": len(matched),
        "n_recon_valid": len(valid),
        **refusal_summary("recon", reasons),
    }
