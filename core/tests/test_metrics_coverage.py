"""COV-R / COV-P, diversity and fingerprint standardisation against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Composition, Lattice, Structure
from scipy.spatial.distance import cdist

from crystalgen.metrics import coverage as coverage_module
from crystalgen.metrics.cdvae_constants import MAGPIE_MEANS, MAGPIE_STDS
from crystalgen.metrics.coverage import cov_cutoffs, coverage, mean_pairwise_distance, nearest_distances
from crystalgen.metrics.fingerprints import (
    composition_fingerprint,
    standardise_composition_fingerprints,
    structure_fingerprint,
)


def test_coverage_three_against_three_by_hand():
    # structure fingerprints in 2-D; cutoff 0.3
    gen_s = np.array([[0.0, 0.0], [1.0, 0.0], [5.0, 5.0]])
    ref_s = np.array([[0.0, 0.1], [1.0, 0.5], [9.0, 9.0]])
    # composition fingerprints: every pair within the cutoff except gen 0 <-> ref 0 (distance 2 > 1.5)
    gen_c = np.array([[0.0], [1.0], [1.0]])
    ref_c = np.array([[2.0], [1.0], [1.0]])
    out = coverage(gen_s, gen_c, ref_s, ref_c, struct_cutoff=0.3, comp_cutoff=1.5)
    # ref 0: nearest structure gen 0 (0.1), nearest composition gen 1/2 (1.0): covered (minima taken separately)
    # ref 1: nearest structure 0.5 > 0.3; ref 2: 5.66 > 0.3 -> COV-R = 1/3
    assert out["cov_recall"] == pytest.approx(1 / 3)
    # gen 0: structure 0.1, composition min(2, 1, 1) = 1 -> precise; gen 1: structure 0.5; gen 2: 5.66 -> 1/3
    assert out["cov_precision"] == pytest.approx(1 / 3)
    assert out["amsd_recall"] == pytest.approx((0.1 + 0.5 + np.hypot(4, 4)) / 3)
    # a fourth generated crystal without fingerprint still counts in COV-P's denominator (CDVAE)
    assert coverage(gen_s, gen_c, ref_s, ref_c, 0.3, 1.5, n_generated=4)["cov_precision"] == pytest.approx(1 / 4)


def test_nearest_distances_equal_cdist_minima(monkeypatch):
    monkeypatch.setattr(coverage_module, "_BLOCK", 7)  # several row blocks
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(30, 5)), rng.normal(size=(23, 5))
    a_to_b, b_to_a = nearest_distances(a, b)
    d = cdist(a, b)
    np.testing.assert_allclose(a_to_b, d.min(axis=1), rtol=0, atol=1e-12)
    np.testing.assert_allclose(b_to_a, d.min(axis=0), rtol=0, atol=1e-12)


def test_identical_sets_cover_each_other_fully():
    rng = np.random.default_rng(1)
    s, c = rng.normal(size=(10, 4)), rng.normal(size=(10, 3))
    out = coverage(s, c, s, c, struct_cutoff=1e-9, comp_cutoff=1e-9)
    assert out["cov_recall"] == 1.0 and out["cov_precision"] == 1.0


def test_diversity_is_the_mean_pairwise_distance():
    assert mean_pairwise_distance(np.array([[0, 0], [3, 4], [0, 4]])) == pytest.approx((5 + 4 + 3) / 3)


def test_standardisation_uses_cdvae_constants_and_zeroes_nan():
    raw = np.array(MAGPIE_MEANS) + np.array(MAGPIE_STDS)
    raw[5] = np.nan
    scaled = standardise_composition_fingerprints(raw[None])[0]
    assert scaled[5] == 0.0
    np.testing.assert_allclose(np.delete(scaled, 5), 1.0)


def test_cutoff_sets():
    assert cov_cutoffs("mp_20") == (0.4, 10.0)
    assert cov_cutoffs("perov_5:test", "symat") == (0.8, 6.0)
    assert cov_cutoffs("mp_20", "structrepdiff") == (0.6, 12.0)  # StructRepDiff appendix A.3.6
    assert cov_cutoffs("carbon", "cdvae") == (0.2, 4.0)  # CDVAE's eval name
    assert cov_cutoffs(None, (0.5, 3)) == (0.5, 3.0)
    assert cov_cutoffs("embedded:test") == cov_cutoffs("embedded", "symat") == (0.4, 10.0)  # the demo set: MP-20's
    with pytest.raises(ValueError, match="cov_cutoffs"):
        cov_cutoffs("my_dataset")


def test_fingerprints_have_the_published_sizes_and_are_cell_invariant():
    fcc = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]
    rocksalt = Structure(Lattice.cubic(5.64), ["Na"] * 4 + ["Cl"] * 4, fcc + [[x + 0.5 for x in p] for p in fcc])
    fp = structure_fingerprint(rocksalt)
    assert fp.shape == (61,)
    # the same crystal in its primitive cell has the same mean site fingerprint
    np.testing.assert_allclose(structure_fingerprint(rocksalt.get_primitive_structure()), fp, atol=1e-8)
    assert composition_fingerprint(Composition("NaCl")).shape == (132,)
