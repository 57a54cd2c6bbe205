"""Structure and composition validity against hand-checked cases (CDVAE appendix G.2)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from pymatgen.core import DummySpecies, Lattice, Structure

from crystalgen.metrics.composition_validity import _pauling_passes, composition_valid
from crystalgen.metrics.validity import failure_reason_key, sample_validity, structure_problem


def two_atoms(distance: float, a: float = 5.0) -> Structure:
    """Na and Cl ``distance`` Angstrom apart along x in a cubic cell of side ``a``."""
    return Structure(Lattice.cubic(a), ["Na", "Cl"], [[0, 0, 0], [distance / a, 0, 0]])


def test_atoms_closer_than_half_an_angstrom_are_invalid():
    assert structure_problem(two_atoms(0.4)) == "overlapping_atoms"
    assert structure_problem(two_atoms(0.6)) is None


def test_distances_are_periodic():
    # 0.02 and 0.98 of a 10 A cell are 0.4 A apart through the boundary, not 9.6 A
    s = Structure(Lattice.cubic(10.0), ["Na", "Cl"], [[0.02, 0.5, 0.5], [0.98, 0.5, 0.5]])
    assert structure_problem(s) == "overlapping_atoms"


def test_an_atom_is_not_compared_with_its_own_images():
    # one atom in a 0.48 A cell: its images are 0.48 A away, which CDVAE does not count (diagonal is padded)
    s = Structure(Lattice.cubic(0.48), ["C"], [[0, 0, 0]])
    assert structure_problem(s) is None


def test_volume_below_a_tenth_of_a_cubic_angstrom_is_invalid():
    flat = Structure(Lattice([[5, 0, 0], [0, 5, 0], [0, 0, 0.003]]), ["C"], [[0, 0, 0]])  # 0.075 A^3
    assert structure_problem(flat) == "small_volume"
    assert structure_problem(Structure(Lattice([[5, 0, 0], [0, 5, 0], [0, 0, 0.005]]), ["C"], [[0, 0, 0]])) is None


@pytest.mark.parametrize(
    ("formula", "valid"),
    [
        ({"Na": 1, "Cl": 1}, True),
        ({"Na": 1, "Cl": 2}, False),  # Na+ with two Cl- cannot be neutral
        ({"Mg": 1, "O": 1}, True),
        ({"C": 24}, True),  # single element
        ({"Fe": 3, "Ni": 1}, True),  # all metals: an alloy
        ({"He": 1, "O": 2}, False),  # He has no oxidation states
        ({"Na": 2, "Cl": 2}, True),  # counts are reduced first
    ],
)
def test_composition_validity_smact14(formula, valid):
    assert composition_valid(formula, "smact14") is valid


@pytest.mark.parametrize("formula", [{"Sr": 2, "O": 1}, {"Sr": 1, "Cl": 1}, {"Ba": 2, "Ti": 3, "O": 1}])
def test_smact14_and_icsd24_disagree_where_smact4_changed_the_states(formula):
    # smact14 lists Sr(+1), the ICSD24 set does not: Sr2O and SrCl are neutral only with Sr+
    assert composition_valid(formula, "smact14") is True
    assert composition_valid(formula, "icsd24") is False


def test_missing_electronegativity_passes_the_pauling_test_as_in_old_smact():
    # Lr has oxidation state +3 but no Pauling electronegativity: old smact raised TypeError, CDVAE read "OK"
    assert composition_valid({"Lr": 1, "Cl": 3}) is True
    assert composition_valid({"Lr": 1, "Cl": 2}) is False  # still not neutral


def test_pauling_test_rejects_a_cation_more_electronegative_than_the_anion():
    # H2Cl is neutral only as 2 H(-1) + Cl(+2), with the cation Cl (3.16) more electronegative than H (2.20)
    assert composition_valid({"H": 2, "Cl": 1}) is False
    assert composition_valid({"H": 1, "Cl": 1}) is True  # H(+1) Cl(-1)


def test_pauling_pairs_are_visited_in_smact_order():
    ox = np.array([[1, -1]])
    assert _pauling_passes(ox, [1.0, 3.0]).tolist() == [True]
    assert _pauling_passes(ox, [3.0, 1.0]).tolist() == [False]
    assert _pauling_passes(np.array([[-1, 1]]), [1.0, 3.0]).tolist() == [False]
    assert _pauling_passes(ox, [None, 3.0]).tolist() == [True]  # smact 2.2.1: TypeError -> CDVAE: "OK"
    assert _pauling_passes(np.array([[1, 1]]), [None, 3.0]).tolist() == [False]  # same sign: smact's None branch
    assert _pauling_passes(np.array([[0, -1]]), [None, 3.0]).tolist() == [False]  # a zero state is not opposite
    # pairs (0,1), (0,2), (1,2): the first deciding pair wins
    assert _pauling_passes(np.array([[1, -1, 1]]), [3.0, 1.0, None]).tolist() == [False]  # (0,1) fails first
    assert _pauling_passes(np.array([[1, -1, 1]]), [None, 4.0, 3.0]).tolist() == [True]  # (0,1) "OK" first
    assert _pauling_passes(np.array([[1, 1, -1]]), [None, 4.0, 3.0]).tolist() == [False]  # (0,1) same sign first
    assert _pauling_passes(np.array([[1, -1, 1]]), [1.0, 4.0, None]).tolist() == [False]  # (1,2) same sign after a pass


@pytest.mark.parametrize("formula", [{"Zn": 3, "Te": 4, "Rn": 1}, {"Al": 1, "Pm": 5, "Re": 6}])
def test_same_sign_pair_without_electronegativity_fails_as_in_cdvae(formula):
    # every neutral assignment pairs Rn / Pm with a same-sign element before any opposite-sign pair with it:
    # smact 2.2.1 returns False there, so CDVAE's smact_validity says invalid
    assert composition_valid(formula) is False


def smact_221_pauling_test(ox: tuple[int, ...], enegs: list[float | None]) -> bool:
    """smact 2.2.1's eneg_states_test as CDVAE's smact_validity saw it (a TypeError read as "passes")."""
    for (ox1, eneg1), (ox2, eneg2) in itertools.combinations(list(zip(ox, enegs)), 2):
        if ox1 > 0 and ox2 < 0:
            if eneg1 is None or eneg2 is None:
                return True  # None >= float: TypeError, caught by CDVAE as "assume it is okay"
            if eneg1 >= eneg2:
                return False
        elif ox1 < 0 and ox2 > 0:
            if eneg1 is None or eneg2 is None:
                return True
            if eneg1 <= eneg2:
                return False
        elif eneg1 is None or eneg2 is None:
            return False
    return True


def reference_composition_valid(counts: dict[str, int]) -> bool:
    """CDVAE's smact_validity in loop form: elements by atomic number, counts reduced, every assignment in order."""
    import smact
    from pymatgen.core import Element

    symbols = sorted(counts, key=lambda s: Element(s).Z)
    if len(symbols) == 1:
        return True
    if all(s in smact.metals for s in symbols):
        return True
    divisor = math.gcd(*counts.values())
    stoich = [counts[s] // divisor for s in symbols]
    elements = [smact.Element(s) for s in symbols]
    enegs = [None if e.pauling_eneg is None or math.isnan(e.pauling_eneg) else e.pauling_eneg for e in elements]
    for ox in itertools.product(*[e.oxidation_states_smact14 or [] for e in elements]):
        if sum(q * n for q, n in zip(ox, stoich)) == 0 and smact_221_pauling_test(ox, enegs):
            return True
    return False


def test_agrees_with_cdvae_rule_on_random_compositions():
    """1,200 random compositions, a third holding an element without a Pauling electronegativity."""
    import random

    common = ["H", "Li", "B", "C", "N", "O", "F", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "K", "Ca", "Ti", "Mn", "Fe",
              "Co", "Ni", "Cu", "Zn", "Ga", "Se", "Br", "Sr", "Mo", "Ag", "Sn", "Sb", "Te", "I", "Ba", "La", "Re", "Ir",
              "W", "Pb", "Bi", "Eu", "U"]
    no_eneg = ["Pm", "Rn", "Lr"]
    rng = random.Random(1)
    seen = {"with_none": set(), "without": set()}
    for index in range(1200):
        symbols = rng.sample(common, rng.randint(1, 3))
        if index % 3 == 0:
            symbols.append(rng.choice(no_eneg))
        counts = {s: rng.randint(1, 6) for s in symbols}
        expected = reference_composition_valid(counts)
        assert composition_valid(counts) is expected, counts
        seen["with_none" if index % 3 == 0 else "without"].add(expected)
    assert seen == {"with_none": {True, False}, "without": {True, False}}


def test_unknown_oxidation_state_set_is_an_error():
    with pytest.raises(ValueError, match="oxidation-state set"):
        composition_valid({"Na": 1, "Cl": 1}, "icsd99")


def test_sample_validity_reasons_in_order():
    assert sample_validity(two_atoms(2.8)).reason is None
    overlap = sample_validity(two_atoms(0.4))
    assert (overlap.struct_valid, overlap.comp_valid, overlap.reason) == (False, True, "overlapping_atoms")
    charged = sample_validity(Structure(Lattice.cubic(5.0), ["Na", "Cl", "Cl"], [[0, 0, 0], [0.5, 0, 0], [0, 0.5, 0]]))
    assert (charged.struct_valid, charged.comp_valid, charged.reason) == (True, False, "not_charge_balanced")


def test_nan_lattice_is_invalid_but_its_composition_is_still_judged():
    s = Structure(Lattice(np.full((3, 3), np.nan)), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    v = sample_validity(s)
    assert (v.struct_valid, v.comp_valid, v.reason) == (False, True, "non_finite")


def test_unknown_element_and_failed_decodes():
    dummy = Structure(Lattice.cubic(4.0), [DummySpecies("X"), "Na"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    assert sample_validity(dummy).reason == "unknown_element"
    assert sample_validity(None, "Wyckoff projection failed").reason == "decode_failed"
    assert sample_validity(None, "empty_file: cif/000003.cif is empty").reason == "empty_file"
    assert failure_reason_key("not_a_reason: x") == "decode_failed"
    assert failure_reason_key(None) == "decode_failed"


@pytest.mark.parametrize("oxidation_states", ["smact14", "icsd24"])
def test_threshold_search_agrees_with_enumerating_every_assignment(oxidation_states):
    """The polynomial search (all electronegativities known) must give enumeration's answer on every formula."""
    import random

    from crystalgen.metrics.composition_validity import (
        _charge_balanced_by_enumeration,
        _charge_balanced_by_threshold,
        _element_data,
    )

    pool = ["H", "Li", "Be", "B", "C", "N", "O", "F", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "K", "Ca", "Ti", "V", "Cr",
            "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Se", "Br", "Sr", "Mo", "Ag", "Sn", "Sb", "Te", "I", "Ba", "W", "Pb", "Bi"]
    rng = random.Random(0)
    outcomes = set()
    for _ in range(400):
        symbols = rng.sample(pool, rng.randint(2, 4))
        data = [_element_data(s, oxidation_states) for s in symbols]
        if any(d is None or not d[0] or d[1] is None for d in data):
            continue
        states, enegs = [d[0] for d in data], [d[1] for d in data]
        counts = np.array([rng.randint(1, 6) for _ in symbols], dtype=np.int64)
        expected = _charge_balanced_by_enumeration(states, counts, enegs)
        assert _charge_balanced_by_threshold(states, counts, enegs) is expected, (symbols, counts.tolist())
        outcomes.add(expected)
    assert outcomes == {True, False}  # both answers were exercised
