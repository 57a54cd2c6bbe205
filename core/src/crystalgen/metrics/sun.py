"""Stable, unique and novel (S.U.N.) crystals, as SymmCD (sec. 5.3) reports them after FlowMM (Miller et al. 2024).

Protocol here (every choice is written into the result):

* energies: CHGNet (``chgnet_backend.CHGNET_MODEL``) energy per atom of each crystal as generated ("initial"),
  and after a bounded CHGNet relaxation (FIRE, positions + cell, ``fmax`` eV/A, at most ``max_steps`` steps);
* hull: FlowMM compares against the Materials Project convex hull (Riebesell et al. 2024), which is not
  available offline. We build the hull from CHGNet energies (unrelaxed, at the dataset's DFT geometries) of
  the reference and training structures (or ``hull_structures``), so E_hull measures stability relative to the
  known crystals of the dataset under one consistent potential. The hull energy at a composition is the lowest
  energy of any mix of known entries with that composition (:class:`EnergyHull`); where no mix exists (an element
  the known crystals do not contain) E_hull is NaN and the crystal counts as not stable (``sun_hull_undefined_n``);
* stable: E_hull <= ``stability_threshold`` (0.0 eV/atom, FlowMM's ``e_above_hull_maximum`` default, which
  SymmCD's Table 3 follows), with a 1e-6 eV/atom round-off allowance so a hull structure itself counts;
* unique: not matched (pymatgen StructureMatcher, default tolerances ltol 0.2, stol 0.3, angle_tol 5 degrees,
  the settings FlowMM's novelty script uses) by an earlier crystal of the same set; novel: not matched by any
  training crystal. Matching is only attempted within the same reduced composition (StructureMatcher never
  matches across them), which keeps it fast, and not for a pair whose all-pairs arrays would exceed the memory
  budget (crystals of thousands of atoms; crystalgen.metrics.memory), which then counts as different;
* memory: a crystal whose CHGNet graph or relaxation alone would exceed the memory budget gets no energy (not
  stable); every such skip is counted (``sun_n_refused``, with the first reason);
* S.U.N. count: stable and novel crystals, de-duplicated among themselves (first occurrence kept); rates are
  over all input crystals (SymmCD: 1,000 sampled from 10,000).
"""

from __future__ import annotations

import itertools
import warnings
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pymatgen.core import Composition, Structure

from crystalgen.metrics.memory import STRUCTURE_MATCHER, refusal_summary
from crystalgen.resources import memory_budget, over_budget_reason

HULL_TOLERANCE = 1e-6
"""eV/atom: round-off allowance when comparing E_hull with the threshold (CHGNet runs in float32)."""


class EnergyHull:
    """Lower convex envelope of (composition, energy per atom) entries, evaluated at any composition.

    The hull energy at composition c is min sum_i x_i E_i over mixtures of entries (x_i >= 0 atom fractions) whose
    element fractions add up to c: a small linear programme over the entries whose elements lie in c's chemical
    system. Unlike pymatgen's PhaseDiagram this needs no elemental (terminal) entries, which matters here: the
    MP-20 test + partial train splits lack elemental phases for 16 of their 89 elements (Al, Ba, Cr, Zn, ...), yet
    e.g. BaTiO3 is still bounded by BaO + TiO2. It is NaN only when c cannot be mixed from known entries.
    """

    def __init__(self, compositions: Sequence[Composition], energies_per_atom: Sequence[float]) -> None:
        self._by_system: dict[frozenset[str], list[tuple[dict[str, float], float]]] = defaultdict(list)
        self.num_entries = 0
        for comp, e in zip(compositions, energies_per_atom, strict=True):
            if np.isfinite(e):
                fractions = {el.symbol: amount for el, amount in Composition(comp).fractional_composition.items()}
                self._by_system[frozenset(fractions)].append((fractions, float(e)))
                self.num_entries += 1
        self._memo: dict[tuple, float] = {}

    def hull_energy_per_atom(self, composition: Composition) -> float:
        from scipy.optimize import linprog

        target = {el.symbol: amount for el, amount in Composition(composition).fractional_composition.items()}
        memo_key = tuple(sorted((el, round(x, 10)) for el, x in target.items()))
        if memo_key in self._memo:
            return self._memo[memo_key]
        elements = sorted(target)
        entries = [entry for k in range(1, len(elements) + 1) for sub in itertools.combinations(elements, k)
                   for entry in self._by_system.get(frozenset(sub), [])]  # fmt: skip
        value = float("nan")
        if entries:
            mix = np.array([[fractions.get(el, 0.0) for fractions, _ in entries] for el in elements])
            energies = np.array([e for _, e in entries])
            solution = linprog(energies, A_eq=mix, b_eq=[target[el] for el in elements], bounds=(0, None), method="highs")
            if solution.status == 0:
                value = float(solution.fun)
        self._memo[memo_key] = value
        return value

    def e_above_hull(self, compositions: Sequence[Composition], energies_per_atom: Iterable[float]) -> np.ndarray:
        """E - E_hull(composition) in eV/atom per crystal (negative below the hull, NaN where undefined)."""
        return np.array([e - self.hull_energy_per_atom(c) if np.isfinite(e) else np.nan for c, e in zip(compositions, energies_per_atom, strict=True)])


def default_matcher():
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher()  # ltol 0.2, stol 0.3, angle_tol 5: FlowMM's (MatterGen's) novelty settings


def matcher_refusal(structure: Structure, budget: int | None = None) -> str | None:
    """Why ``structure`` is not compared at all (matching it with a crystal of its size would exceed the memory
    budget), or None. Such a crystal matches nothing: it counts as unique and novel, and is reported."""
    budget = memory_budget() if budget is None else budget
    cost = STRUCTURE_MATCHER.estimate(len(structure), len(structure))
    return over_budget_reason(STRUCTURE_MATCHER.what, cost, budget, structure=structure) if cost > budget else None


def _matches(matcher, a: Structure, b: Structure) -> bool:
    if STRUCTURE_MATCHER.estimate(len(a), len(b)) > memory_budget():
        return False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bool(matcher.fit(a, b))
    except Exception:  # degenerate lattices can make the matcher fail; treat as different
        return False


def first_occurrences(structures: Sequence[Structure], matcher=None, mask: np.ndarray | None = None) -> np.ndarray:
    """True for each crystal not matched by an earlier one (among those with ``mask`` True; others False)."""
    matcher = matcher or default_matcher()
    keep = np.zeros(len(structures), dtype=bool)
    seen: dict[str, list[Structure]] = defaultdict(list)
    for i, s in enumerate(structures):
        if mask is not None and not mask[i]:
            continue
        key = s.composition.reduced_formula
        if not any(_matches(matcher, s, other) for other in seen[key]):
            keep[i] = True
            seen[key].append(s)
    return keep


def novelty(structures: Sequence[Structure], train: Sequence[Structure], matcher=None) -> np.ndarray:
    """True for each crystal that matches no training crystal (compared within its reduced composition only)."""
    matcher = matcher or default_matcher()
    by_formula: dict[str, list[Structure]] = defaultdict(list)
    for t in train:
        by_formula[t.composition.reduced_formula].append(t)
    return np.array([not any(_matches(matcher, s, t) for t in by_formula.get(s.composition.reduced_formula, ())) for s in structures], dtype=bool)


@dataclass
class SUNAssessment:
    """Per-crystal results behind :func:`sun_metrics` (arrays in input order)."""

    e_above_hull_initial: np.ndarray
    e_above_hull: np.ndarray
    stable_initial: np.ndarray
    stable: np.ndarray
    unique: np.ndarray
    novel: np.ndarray | None
    sun_initial: np.ndarray | None
    sun: np.ndarray | None
    relaxed: bool
    relax_steps: np.ndarray | None
    relax_converged: np.ndarray | None
    settings: dict[str, Any] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)  # per crystal: why a stage skipped it for the memory budget

    def summary(self) -> dict[str, Any]:
        n = len(self.stable)

        def rate(mask: np.ndarray | None) -> float | None:
            return None if mask is None or n == 0 else float(mask.sum() / n)

        def count(mask: np.ndarray | None) -> int | None:
            return None if mask is None else int(mask.sum())

        out: dict[str, Any] = {"sun_n_structures": n}
        for key, mask in (("sun", self.sun), ("stable", self.stable), ("unique", self.unique), ("novel", self.novel),
                          ("sun_initial", self.sun_initial), ("stable_initial", self.stable_initial)):  # fmt: skip
            out[f"{key}_rate"], out[f"{key}_n"] = rate(mask), count(mask)
        out["sun_hull_undefined_n"] = int(np.isnan(self.e_above_hull).sum())
        if self.relax_converged is not None:
            out["sun_relax_converged_n"] = int(self.relax_converged.sum())
            finite_steps = self.relax_steps[self.relax_steps >= 0] if self.relax_steps is not None else np.array([])
            out["sun_relax_mean_steps"] = float(finite_steps.mean()) if finite_steps.size else None
        finite = self.e_above_hull[np.isfinite(self.e_above_hull)]
        out["e_above_hull_median"] = float(np.median(finite)) if finite.size else None
        out.update(refusal_summary("sun", self.refused))
        out.update(self.settings)
        return out


def _compositions(structures: Sequence[Structure]) -> list[Composition]:
    return [s.composition for s in structures]


def assess_sun(
    structures: Sequence[Structure],
    reference: Sequence[Structure],
    train: Sequence[Structure] | None = None,
    *,
    relax: bool = True,
    fmax: float = 0.1,
    max_steps: int = 500,
    stability_threshold: float = 0.0,
    hull_structures: Sequence[Structure] | None = None,
    workers: int | None = None,
    progress: bool = True,
    matcher=None,
) -> SUNAssessment:
    """Per-crystal stability, uniqueness and novelty; see the module docstring for the protocol."""
    from crystalgen.metrics.chgnet_backend import CHGNET_MODEL, chgnet_predict, chgnet_predict_cached, relax_structures

    structures = list(structures)
    matcher = matcher or default_matcher()
    hull_sets = [list(hull_structures)] if hull_structures is not None else [list(reference)] + ([list(train)] if train else [])
    hull_comps: list[Composition] = []
    hull_energies: list[float] = []
    for subset in hull_sets:
        hull_comps += _compositions(subset)
        hull_energies += list(chgnet_predict_cached(subset, progress=progress)["energy"])
    hull = EnergyHull(hull_comps, hull_energies)
    source = "given hull structures" if hull_structures is not None else ("reference+train structures" if train else "reference structures")

    initial = chgnet_predict(structures, progress=progress)
    initial_energy = initial["energy"]
    refused = [str(r) or (matcher_refusal(s) or "") for r, s in zip(initial["refused"], structures, strict=True)]
    e_hull_initial = hull.e_above_hull(_compositions(structures), initial_energy)

    steps = converged = None
    final = structures
    e_hull = e_hull_initial
    if relax:
        relaxations = relax_structures(structures, fmax=fmax, max_steps=max_steps, workers=workers, progress=progress)
        steps = np.array([r.steps for r in relaxations])
        converged = np.array([r.converged for r in relaxations])
        refused = [old or ((r.error or "") if r.refused else "") for old, r in zip(refused, relaxations, strict=True)]
        relaxed = [(i, r.structure) for i, r in enumerate(relaxations) if r.structure is not None]
        relaxed_energy = np.full(len(structures), np.nan)
        relaxed_energy[[i for i, _ in relaxed]] = chgnet_predict([s for _, s in relaxed], progress=progress)["energy"]
        # A failed relaxation keeps its initial geometry for uniqueness/novelty but has no relaxed energy.
        final = [r.structure if r.structure is not None else s for r, s in zip(relaxations, structures, strict=True)]
        e_hull = hull.e_above_hull(_compositions(final), relaxed_energy)

    limit = stability_threshold + HULL_TOLERANCE
    stable_initial = np.nan_to_num(e_hull_initial, nan=np.inf) <= limit
    stable = np.nan_to_num(e_hull, nan=np.inf) <= limit
    unique = first_occurrences(final, matcher)
    novel = novelty(final, train, matcher) if train is not None else None
    sun = sun_initial = None
    if train is not None:
        sun = first_occurrences(final, matcher, mask=stable & novel)
        novel_initial = novelty(structures, train, matcher) if relax else novel
        sun_initial = first_occurrences(structures, matcher, mask=stable_initial & novel_initial)

    settings = {
        "sun_hull": f"CHGNet {CHGNET_MODEL} energies (unrelaxed, at the dataset geometries) of {hull.num_entries} {source}",
        "sun_energy_model": f"CHGNet {CHGNET_MODEL}",
        "sun_relax": (f"CHGNet FIRE, positions + cell (FrechetCellFilter), fmax {fmax} eV/A, at most {max_steps} steps" if relax else "none"),
        "sun_stability_threshold": float(stability_threshold),
        "sun_matcher": "pymatgen StructureMatcher(ltol=0.2, stol=0.3, angle_tol=5), same reduced composition only",
        "sun_novelty_against": f"{len(train)} training structures" if train is not None else "not computed (no training set given)",
    }
    return SUNAssessment(e_hull_initial, e_hull, stable_initial, stable, unique, novel, sun_initial, sun, relax, steps, converged, settings,
                         refused)


def sun_metrics(
    structures: Sequence[Structure],
    reference: Sequence[Structure],
    train: Sequence[Structure] | None = None,
    *,
    relax: bool = True,
    fmax: float = 0.1,
    max_steps: int = 500,
    stability_threshold: float = 0.0,
    hull_structures: Sequence[Structure] | None = None,
    workers: int | None = None,
    progress: bool = True,
    refused: list[str] | None = None,
) -> dict[str, Any]:
    """S.U.N. summary: ``sun_rate``, ``stable_rate``, ``unique_rate``, ``novel_rate`` and their ``*_n`` counts for
    the final (relaxed when ``relax``) crystals, the same for the unrelaxed ones (``*_initial_*``), and the
    protocol as strings (``sun_hull``, ``sun_relax``, ...). Writes no files (reference/train energies go to the
    prediction cache). Without ``train``, novelty and S.U.N. are None. Crystals a stage skipped for the memory
    budget (CHGNet energy, relaxation, matching) are counted in ``sun_n_refused`` with the first reason; ``refused``,
    when given, is extended with one reason per crystal ("" for the others).
    """
    assessment = assess_sun(
        structures, reference, train, relax=relax, fmax=fmax, max_steps=max_steps, stability_threshold=stability_threshold,
        hull_structures=hull_structures, workers=workers, progress=progress,
    )  # fmt: skip
    if refused is not None:
        refused.extend(assessment.refused)
    return assessment.summary()
