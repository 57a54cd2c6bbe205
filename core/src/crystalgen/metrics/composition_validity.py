"""Composition validity: SMACT charge neutrality with the Pauling electronegativity test (CDVAE appendix G.2).

A composition is valid when some assignment of one oxidation state per element (from a SMACT oxidation-state
set) makes the formula unit neutral, sum_i q_i n_i = 0, and every cation of that assignment is less
electronegative (Pauling) than every anion. Single-element compositions and compositions made only of metals
(SMACT's ``metals`` list: alloys) count as valid.

This is the logic of CDVAE's ``scripts/eval_utils.py::smact_validity``, rewritten for smact 4.x:

- smact 4 changed ``Element.oxidation_states`` to the ICSD24 set; the papers used the older set, which smact 4
  keeps as ``oxidation_states_smact14``. That set is the default here; ``"icsd24"`` is selectable and every report
  names the set used (Sr2O, SrCl and Ba2Ti3O are valid under smact14 and invalid under icsd24).
- CDVAE's environment pinned smact 2.2.1, whose ``eneg_states_test`` visits the pairs of an assignment in
  ``itertools.combinations`` order and stops at the first pair that decides. A pair holding an element without a
  Pauling electronegativity (Pm, Rn, Lr, ...) always decides: with opposite-sign states it compares None with a
  number and raises TypeError, which CDVAE caught and read as "passes"; with same-sign (or zero) states it reaches
  smact's ``eneg is None`` branch and fails. smact 4 fails both. The 2.2.1 behaviour is kept, unless an earlier
  pair already failed (e.g. Zn3Te4Rn and AlPm5Re6 are invalid, LrCl3 is valid).
- An element SMACT has no data for (e.g. Z > 103) makes a multi-element composition invalid (CDVAE crashed there).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from functools import cache, lru_cache

import numpy as np

#: name -> smact ``Element`` attribute holding that oxidation-state set.
OXIDATION_STATE_SETS: dict[str, str] = {
    "smact14": "oxidation_states_smact14",
    "icsd24": "oxidation_states_icsd24",
}
DEFAULT_OXIDATION_STATES = "smact14"

# Oxidation-state assignments are enumerated in blocks of this many, so that a 7-element formula with ~10 states
# per element (1e7 assignments) never needs more than a few MB at a time.
_BLOCK = 1 << 18


def check_oxidation_state_set(name: str) -> str:
    if name not in OXIDATION_STATE_SETS:
        raise ValueError(f"unknown oxidation-state set {name!r}; choose one of {sorted(OXIDATION_STATE_SETS)}")
    return name


@cache
def _metals() -> frozenset[str]:
    import smact

    return frozenset(smact.metals)


@cache
def _element_data(symbol: str, oxidation_states: str) -> tuple[tuple[int, ...], float | None] | None:
    """(oxidation states, Pauling electronegativity or None) of one element; None when SMACT lacks the element."""
    import smact

    try:
        element = smact.Element(symbol)
    except (KeyError, NameError, ValueError):
        return None
    states = getattr(element, OXIDATION_STATE_SETS[oxidation_states]) or ()
    eneg = element.pauling_eneg
    if eneg is not None and not math.isfinite(float(eneg)):
        eneg = None
    return tuple(int(q) for q in states), (None if eneg is None else float(eneg))


def _pauling_passes(ox: np.ndarray, enegs: list[float | None]) -> np.ndarray:
    """Pauling test for each row of ``ox`` (assignments x elements), pairs visited in itertools.combinations order."""
    passes = np.ones(len(ox), dtype=bool)
    undecided = np.ones(len(ox), dtype=bool)
    for i, j in itertools.combinations(range(ox.shape[1]), 2):
        cation_anion = (ox[:, i] > 0) & (ox[:, j] < 0)
        anion_cation = (ox[:, i] < 0) & (ox[:, j] > 0)
        eneg_i, eneg_j = enegs[i], enegs[j]
        if eneg_i is None or eneg_j is None:
            # smact 2.2.1: an opposite-sign pair compares None with a number (TypeError, which CDVAE reads as "OK");
            # any other pair reaches its `eneg is None` branch and fails. Either way this pair decides.
            opposite = cation_anion | anion_cation
            passes[undecided & opposite] = True
            passes[undecided & ~opposite] = False
            break
        else:
            decided = undecided & ((cation_anion & (eneg_i >= eneg_j)) | (anion_cation & (eneg_i <= eneg_j)))
            passes[decided] = False
        undecided &= ~decided
        if not undecided.any():
            break
    return passes


def _neutral_assignment_exists(choices: list[list[int]], counts: np.ndarray) -> bool:
    """Whether one state per element from ``choices`` gives sum q_i n_i = 0 (dynamic programming over the sums)."""
    sums = {0}
    for options, n in zip(choices, counts.tolist(), strict=True):
        if not options:
            return False
        sums = {total + q * n for total in sums for q in options}
    return 0 in sums


def _charge_balanced_by_threshold(states: list[tuple[int, ...]], counts: np.ndarray, enegs: list[float]) -> bool:
    """The same answer as enumerating every assignment, when every electronegativity is known.

    Then an assignment passes the Pauling test exactly when every cation is less electronegative than the least
    electronegative anion t. So for each candidate t (each element's electronegativity, and +inf for no anion) the
    elements below t may take only states >= 0 and the others only states <= 0, and neutrality within those
    choices is a subset-sum question: polynomial, where enumeration grows as the product of the state counts
    (10^7 and more for the many-element formulas of a poorly trained model)."""
    for t in sorted(set(enegs)) + [math.inf]:
        choices = [[q for q in options if (q >= 0 if eneg < t else q <= 0)] for options, eneg in zip(states, enegs, strict=True)]
        if _neutral_assignment_exists(choices, counts):
            return True
    return False


def _charge_balanced(states: list[tuple[int, ...]], counts: np.ndarray, enegs: list[float | None]) -> bool:
    known = [e for e in enegs if e is not None]
    if len(known) == len(enegs):
        return _charge_balanced_by_threshold(states, counts, known)
    return _charge_balanced_by_enumeration(states, counts, enegs)


def _charge_balanced_by_enumeration(states: list[tuple[int, ...]], counts: np.ndarray, enegs: list[float | None]) -> bool:
    """Every assignment in smact's order, with CDVAE's reading of missing electronegativities (module docstring)."""
    sizes = [len(s) for s in states]
    total = math.prod(sizes)
    if total == 0:
        return False
    tables = [np.asarray(s, dtype=np.int64) for s in states]
    for start in range(0, total, _BLOCK):
        index = np.unravel_index(np.arange(start, min(total, start + _BLOCK)), sizes)
        ox = np.stack([tables[k][index[k]] for k in range(len(tables))], axis=1)
        neutral = ox[ox @ counts == 0]
        if len(neutral) and _pauling_passes(neutral, enegs).any():
            return True
    return False


@lru_cache(maxsize=65536)
def _valid_reduced(formula: tuple[tuple[str, int], ...], oxidation_states: str) -> bool:
    symbols = [s for s, _ in formula]
    if len(symbols) == 1:
        return True
    if all(s in _metals() for s in symbols):
        return True
    looked_up = [_element_data(s, oxidation_states) for s in symbols]
    data = [d for d in looked_up if d is not None]
    if len(data) < len(looked_up):
        return False
    return _charge_balanced([d[0] for d in data], np.array([n for _, n in formula], dtype=np.int64), [d[1] for d in data])


@cache
def _atomic_number(symbol: str) -> int:
    from pymatgen.core import Element

    return Element(symbol).Z


def composition_valid(counts: Mapping[str, int], oxidation_states: str = DEFAULT_OXIDATION_STATES) -> bool:
    """True when the composition ``{element symbol: number of atoms}`` passes SMACT's neutrality + Pauling test."""
    check_oxidation_state_set(oxidation_states)
    # CDVAE orders elements by atomic number; the order matters for the missing-electronegativity rule above.
    items = sorted(((str(s), int(n)) for s, n in counts.items() if int(n) > 0), key=lambda item: _atomic_number(item[0]))
    if not items:
        return False
    divisor = math.gcd(*(n for _, n in items))
    return _valid_reduced(tuple((s, n // divisor) for s, n in items), oxidation_states)
