"""Wasserstein property statistics, d_sg and Wyckoff templates against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from scipy.stats import wasserstein_distance

from crystalgen.metrics.statistics import draw_subset, wasserstein
from crystalgen.metrics.symmetry import spacegroup_distance, spacegroup_histogram, spacegroup_number
from crystalgen.metrics.templates import template_statistics, wyckoff_template


def rocksalt() -> Structure:
    """Conventional rock-salt NaCl (8 sites), written out: Structure.from_spacegroup takes seconds."""
    fcc = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]
    return Structure(Lattice.cubic(5.64), ["Na"] * 4 + ["Cl"] * 4, fcc + [[x + 0.5 for x in p] for p in fcc])


def test_wasserstein_matches_scipy_and_hand_values():
    assert wasserstein([0.0, 1.0], [1.0, 2.0]) == pytest.approx(1.0)  # a shift by 1
    a, b = [1.2, 3.4, 0.5, 2.2], [2.0, 2.5, 7.0]
    assert wasserstein(a, b) == pytest.approx(wasserstein_distance(a, b))
    assert wasserstein([1.0, np.nan], [1.0]) == 0.0  # NaN predictions are dropped
    assert math.isnan(wasserstein([], [1.0]))


def test_valid_subset_is_seeded_and_capped():
    valid = np.arange(0, 5000, 2)
    a, b = draw_subset(valid, 1000, seed=3), draw_subset(valid, 1000, seed=3)
    assert len(a) == 1000 and len(set(a.tolist())) == 1000 and set(a.tolist()) <= set(valid.tolist())
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(draw_subset(valid[:10], 1000), valid[:10])  # fewer valid: all of them


def test_d_sg_is_the_jensen_shannon_distance_by_hand():
    # p = (1/2, 1/2) over groups 1 and 2, q = (1, 0); m = (3/4, 1/4)
    kl_pm = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    kl_qm = math.log(1 / 0.75)
    expected = math.sqrt(0.5 * (kl_pm + kl_qm))
    assert spacegroup_distance([1, 1, 2, 2], [1, 1, 1, 1]) == pytest.approx(expected)
    assert spacegroup_distance([225, 225, 12], [12, 225, 225]) == pytest.approx(0.0, abs=1e-7)


def test_paper_protocol_merges_groups_229_and_230():
    assert spacegroup_histogram([1, 230]).shape == (230,)
    assert spacegroup_histogram([1, 230], paper_protocol=True).shape == (229,)
    assert spacegroup_distance([229], [230]) == pytest.approx(math.sqrt(math.log(2)))  # disjoint: maximal
    assert spacegroup_distance([229], [230], paper_protocol=True) == pytest.approx(0.0, abs=1e-7)


def test_space_group_detection_and_tolerance():
    s = rocksalt()
    assert spacegroup_number(s) == 225
    rng = np.random.default_rng(0)
    shaken = Structure(s.lattice, s.species, s.cart_coords + rng.normal(scale=0.01, size=(len(s), 3)),
                       coords_are_cartesian=True)
    assert spacegroup_number(shaken, symprec=0.1) == 225  # within SymmCD's 0.1 A
    assert spacegroup_number(shaken, symprec=1e-4) < 225


def test_wyckoff_template_ignores_elements():
    assert wyckoff_template(rocksalt()) == "225:4a,4b"
    kcl = rocksalt()
    kcl.replace_species({"Na": "K"})
    assert wyckoff_template(kcl) == "225:4a,4b"


def test_template_statistics_by_hand():
    generated = ["225:4a,4b", "225:4a,4b", "221:1a,1b", "194:2c", None]
    train = ["225:4a,4b", "12:2a"]
    out = template_statistics(generated, train)
    assert out["templates_unique"] == 3
    assert out["templates_in_train_pct"] == pytest.approx(100 / 3)
    assert out["templates_new"] == 2
    assert out["templates_n"] == 4
    assert out["train_templates_unique"] == 2
