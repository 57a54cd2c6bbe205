"""Wyckoff tables and encodings over all 230 space groups, checked against group theory and pyxtal."""

from __future__ import annotations

import numpy as np
import pytest

from crystalgen_symmcd.asymmetric_unit import REFERENCE_POINT, orbit_of
from crystalgen_symmcd.symmetry import SITE_CLASSES, all_space_group_encodings, space_group_table
from crystalgen_symmcd.symmetry.axes import axis_row
from crystalgen_symmcd.symmetry.operations import element_symbol, point_operation
from crystalgen_symmcd.symmetry.space_group import SPACE_GROUP_SYMBOLS, symmetry_element_matrix
from crystalgen_symmcd.symmetry.tables import GENERIC_PARAMETERS


@pytest.fixture(scope="module")
def tables():
    return {n: space_group_table(n) for n in range(1, 231)}


def same_points_mod1(a: np.ndarray, b: np.ndarray, tol: float = 1e-6) -> bool:
    if len(a) != len(b):
        return False
    d = a[:, None, :] - b[None, :, :]
    close = np.all(np.abs(d - np.rint(d)) < tol, axis=-1)
    return bool(close.any(1).all() and close.any(0).all())


def test_orbit_from_free_parameters_is_the_group_orbit_of_every_member(tables):
    """Replication (App. A): {A_j p + b_j} is exactly the orbit of any member's point under all operations,
    with the multiplicity's number of distinct points. Applying the members' operations to a point on a member
    other than the first (the official code's replication) would fail this for many positions."""
    rng = np.random.default_rng(0)
    checked = 0
    for table in tables.values():
        for wp in table.wyckoff:
            p = rng.random(3)
            orbit = wp.orbit(p)
            assert len(orbit_of(table, orbit[0], tol=1e-6)) == wp.multiplicity, (table.number, wp.label)
            for k in range(0, wp.multiplicity, max(1, wp.multiplicity // 4)):
                assert same_points_mod1(orbit_of(table, orbit[k], tol=1e-6), orbit), (table.number, wp.label, k)
                checked += 1
    assert checked > 3000


def test_reference_points_are_generic_in_every_group(tables):
    for table in tables.values():
        assert len(table.stabiliser(REFERENCE_POINT)) == 1, table.number
        assert len(table.stabiliser(GENERIC_PARAMETERS)) == 1, table.number


def compare_with_pyxtal(tables, groups) -> int:
    """Assert our classes equal pyxtal 1.1.5's to_one_hot for the first member of each Wyckoff position."""
    from pyxtal.symmetry import Group

    compared = 0
    for n in groups:
        table = tables[n]
        for wp, theirs in zip(table.wyckoff, Group(n)):
            assert wp.letter == theirs.letter
            pyxtal_classes = theirs.get_site_symmetry_object().to_one_hot().argmax(1)
            assert list(wp.site_symmetry[0]) == list(pyxtal_classes), (n, wp.label)
            compared += 1
    return compared


NON_HEXAGONAL = [n for n in range(1, 231) if not 143 <= n <= 194]


def test_site_symmetry_matches_pyxtal_in_a_sample_of_groups(tables):
    """Every crystal system but the hexagonal family, including the groups with the most Wyckoff positions."""
    assert compare_with_pyxtal(tables, [2, 10, 14, 47, 62, 63, 65, 123, 136, 139, 141, 200, 221, 225, 227, 229]) > 200


@pytest.mark.slow
def test_site_symmetry_matches_pyxtal_outside_hexagonal_groups(tables):
    """Same 15 x 13 classes as pyxtal 1.1.5's to_one_hot for all 1379 Wyckoff positions of the non-hexagonal
    groups; hexagonal groups differ by design (lattice-basis axes, docs/symmcd.md)."""
    assert compare_with_pyxtal(tables, NON_HEXAGONAL) == 1379


def test_site_symmetry_examples(tables):
    def classes(n, label, member=0):
        wp = next(w for w in tables[n].wyckoff if w.label == label)
        return [SITE_CLASSES[i] for i in wp.site_symmetry[member]]

    fcc = classes(225, "4a")  # m-3m: 4/m on the cube axes, -3 on the body diagonals, 2/m on face diagonals
    assert fcc[:3] == ["4/m"] * 3 and fcc[3:7] == ["-3"] * 4 and fcc[7:13] == ["2/m"] * 6
    hexagonal = classes(191, "1a")  # 6/mmm in lattice-basis directions: all seven hexagonal directions
    assert hexagonal[axis_row((0, 0, 1))] == "6/m"
    for d in [(1, 0, 0), (0, 1, 0), (1, 1, 0), (1, -1, 0), (1, 2, 0), (2, 1, 0)]:
        assert hexagonal[axis_row(d)] == "2/m", d
    assert classes(14, "4e") == ["1"] * 15  # general position
    assert classes(14, "2a") == ["-1"] * 15  # inversion centre: -1 on every row, as in pyxtal
    # 4mm sites of Pm-3m (3d) point along different axes on different orbit members
    assert len({tuple(m) for m in next(w for w in tables[221].wyckoff if w.label == "3d").site_symmetry}) == 3


def test_point_operations():
    assert point_operation(np.diag([-1, -1, 1])).symbol == "2" and point_operation(np.diag([-1, -1, 1])).axis == (0, 0, 1)
    assert point_operation(np.diag([1, 1, -1])).symbol == "m" and point_operation(np.diag([1, 1, -1])).axis == (0, 0, 1)
    three = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0]])  # z, x, y
    assert point_operation(three).symbol == "3" and point_operation(three).axis == (1, 1, 1)
    assert point_operation(-three).symbol == "-3"
    six = np.array([[1, -1, 0], [1, 0, 0], [0, 0, 1]])  # hexagonal x-y, x, z
    assert point_operation(six).symbol == "6" and point_operation(six).axis == (0, 0, 1)


def test_screw_and_glide_symbols():
    # P6_1: x-y, x, z+1/6 rotates +60 deg about c with c/6 -> 6_1; its inverse y, -x+y, z+5/6 is also 6_1
    assert element_symbol(np.array([[1, -1, 0], [1, 0, 0], [0, 0, 1]]), np.array([0, 0, 1 / 6]), "P").symbol == "6_1"
    assert element_symbol(np.array([[0, 1, 0], [-1, 1, 0], [0, 0, 1]]), np.array([0, 0, 5 / 6]), "P").symbol == "6_1"
    # P2_1/c: -x, y+1/2, -z+1/2 is 2_1 along b; x, -y+1/2, z+1/2 is a c glide normal to b
    assert element_symbol(np.diag([-1, 1, -1]), np.array([0, 0.5, 0.5]), "P").symbol == "2_1"
    assert element_symbol(np.diag([1, -1, 1]), np.array([0, 0.5, 0.5]), "P").symbol == "c"
    assert element_symbol(np.diag([1, 1, -1]), np.array([0.25, 0.25, 0]), "F").symbol == "d"


def test_space_group_encodings_are_distinct_and_hand_checked():
    enc = all_space_group_encodings()
    assert enc.shape == (231, 397) and set(np.unique(enc[1:])) == {0, 1}
    assert len({tuple(row) for row in enc[1:]}) == 230
    m = symmetry_element_matrix(14)  # P2_1/c: 2_1 and c along [010], -1 on every row
    assert {SPACE_GROUP_SYMBOLS[j] for j in np.flatnonzero(m[axis_row((0, 1, 0))])} == {"1", "-1", "2_1", "c"}
    assert all(set(np.flatnonzero(m[r])) == {0, 1} for r in range(15) if r != axis_row((0, 1, 0)))
    m = symmetry_element_matrix(194)  # P6_3/mmc along c: 6_3 and -3 (and the inversion)
    c_row = {SPACE_GROUP_SYMBOLS[j] for j in np.flatnonzero(m[axis_row((0, 0, 1))])}
    assert {"6_3", "-3", "-6", "m"} <= c_row
    assert enc[225][:7].tolist() == [0, 0, 1, 0, 0, 0, 0]  # Bravais F
