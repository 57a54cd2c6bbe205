"""Crystal structure prediction (CSP): match rate and RMSE of k candidates per true crystal (DiffCSP, Jiao et al.,
NeurIPS 2023, section 4.1 and its evaluation script).

Each candidate generated from a true crystal's composition is compared with that crystal by pymatgen's
StructureMatcher(stol=0.5, angle_tol=10, ltol=0.3); its RMSE is the matcher's ``get_rms_dist()[0]``, the RMS
displacement normalised by (V/N)^(1/3). Only valid candidates are compared (structure and composition validity, as
CDVAE defines them: validity.py); an invalid or missing one never matches.

- ``match_rate@k``: the fraction of true crystals for which at least one of their first k candidates matches;
- ``rms_dist@k``: over those matched crystals, the mean of the smallest RMSE among their matching candidates.

One detail follows DiffCSP's script: with one candidate (its ``RecEval``) a pair counts only when the true crystal
is valid too, while with k > 1 (``RecEvalBatch``) the true crystal's validity is not asked. A comparison whose
memory would exceed the budget (crystalgen.metrics.memory) is not made: the candidate counts as unmatched and in
``csp_n_refused``.
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

#: DiffCSP's two settings: one candidate, and twenty
DEFAULT_KS = (1, 20)


def csp_metrics(candidates: Sequence[Sequence[Structure | None]], true: Sequence[Structure], *,
                ks: Sequence[int] = DEFAULT_KS, oxidation_states: str = DEFAULT_OXIDATION_STATES,
                workers: int | None = None, progress: bool = True) -> dict[str, float | int | str]:
    """``match_rate@k`` (fraction), ``rms_dist@k`` (NaN without a match) for each k in ``ks``, and the counts.

    ``candidates[i]`` are the candidates of true crystal ``true[i]`` in the order they were generated (None: failed);
    a k larger than the fewest candidates of any crystal is refused (it would score crystals on fewer candidates).
    """
    if len(candidates) != len(true):
        raise ValueError(f"CSP needs one list of candidates per true crystal: {len(candidates)} lists for {len(true)} crystals")
    ks = sorted({int(k) for k in ks})
    fewest = min((len(group) for group in candidates), default=0)
    if not ks or ks[0] < 1 or ks[-1] > fewest:
        raise ValueError(f"k must be between 1 and {fewest} (the fewest candidates of any crystal), got {ks}")
    depth = ks[-1]
    true_valid = [sample_validity(t, None, oxidation_states).reason is None for t in true]
    budget = memory_budget()
    reasons: list[str] = []
    pairs: list[tuple[int, int]] = []  # (crystal, candidate) compared
    for i, group in enumerate(candidates):
        for j, s in enumerate(group[:depth]):
            if s is None or sample_validity(s, None, oxidation_states).reason is not None:
                continue
            cost = STRUCTURE_MATCHER.estimate(len(s), len(true[i]))
            if cost > budget:
                reasons.append(over_budget_reason(STRUCTURE_MATCHER.what, cost, budget, structure=s))
                continue
            pairs.append((i, j))
    rms = map_chunks(partial(rms_chunk, tolerances=MATCHER_TOLERANCES),
                     [(compact(candidates[i][j]), compact(true[i])) for i, j in pairs],  # type: ignore[arg-type]
                     workers=workers, desc="StructureMatcher", progress=progress)
    found: dict[tuple[int, int], float] = {pair: r for pair, r in zip(pairs, rms, strict=True) if r is not None}
    result: dict[str, float | int | str] = {"csp_n": len(true), "csp_candidates": depth}
    for k in ks:
        best = []
        for i in range(len(true)):
            if k == 1 and not true_valid[i]:
                continue
            matched = [found[(i, j)] for j in range(k) if (i, j) in found]
            if matched:
                best.append(min(matched))
        result[f"match_rate@{k}"] = len(best) / len(true) if true else float("nan")
        result[f"rms_dist@{k}"] = sum(best) / len(best) if best else float("nan")
        result[f"csp_n_matched@{k}"] = len(best)
    result["csp_n_valid_candidates"] = len(pairs) + len(reasons)
    result["csp_n_true_valid"] = sum(true_valid)
    result.update(refusal_summary("csp", reasons))
    return result
