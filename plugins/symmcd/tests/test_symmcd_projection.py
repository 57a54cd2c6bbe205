"""Wyckoff projection and replication (App. A; Algorithm 2 lines 11-13), and the decoder's failure reporting."""

from __future__ import annotations

import numpy as np
import torch
from pymatgen.core import Lattice

from crystalgen_symmcd.asymmetric_unit import orbit_of
from crystalgen_symmcd.decoding import decode_crystal
from crystalgen_symmcd.symmetry import SITE_CLASSES, space_group_table
from crystalgen_symmcd.wyckoff_projection import project_site, replicate

GROUPS = (12, 14, 62, 63, 139, 141, 166, 187, 194, 221, 225, 227, 229)


def lattice_for(table) -> np.ndarray:
    system = table.lattice_type
    if system in ("hexagonal", "trigonal"):
        return Lattice.hexagonal(4.0, 6.5).matrix
    if system == "cubic":
        return Lattice.cubic(5.0).matrix
    if system == "tetragonal":
        return Lattice.tetragonal(4.5, 6.1).matrix
    if system == "orthorhombic":
        return Lattice.orthorhombic(4.2, 5.1, 6.3).matrix
    return Lattice.monoclinic(4.2, 5.1, 6.3, 103.0).matrix


def test_noisy_points_on_any_orbit_member_project_back_to_the_full_orbit():
    """A point near member k of a special position, labelled with member k's oriented site symmetry, is moved
    onto that position and replicated to exactly the orbit under all operations, for every member k (the
    official code's replication gave wrong atom counts when k != 0)."""
    rng = np.random.default_rng(1)
    cases = 0
    for n in GROUPS:
        table = space_group_table(n)
        L = lattice_for(table)
        for wp in table.wyckoff:
            for k in rng.choice(wp.multiplicity, size=min(3, wp.multiplicity), replace=False):
                truth = wp.orbit(rng.random(3))
                x = truth[k] + rng.normal(0, 0.003, 3)
                site = project_site(table, L, x, wp.site_symmetry[k])
                assert site.rows_changed == 0
                orbit = site.orbit()
                assert len(orbit) == wp.multiplicity == len(orbit_of(table, orbit[0], tol=1e-6)), (n, wp.label, k)
                assert site.displacement < 0.1, (n, wp.label, k, site.displacement)
                cases += 1
    assert cases > 300


def test_site_symmetry_invalid_in_the_group_is_projected_to_the_nearest_valid_one():
    table = space_group_table(225)
    six_fold = np.full(15, SITE_CLASSES.index("6/m"))  # no site of Fm-3m has a 6-fold axis
    site = project_site(table, Lattice.cubic(5.0).matrix, np.array([0.01, 0.02, 0.49]), six_fold)
    assert site.rows_changed > 0
    assert len(site.orbit()) == site.wyckoff.multiplicity


def test_ties_are_broken_by_distance():
    """In P2_1/c the inversion centres 2a, 2b, 2c, 2d share one encoding; the nearest one is chosen."""
    table = space_group_table(14)
    inversion = np.full(15, SITE_CLASSES.index("-1"))
    L = Lattice.monoclinic(5.0, 6.0, 7.0, 100.0).matrix
    site = project_site(table, L, np.array([0.49, 0.02, 0.03]), inversion)
    assert site.wyckoff.label in ("2a", "2b", "2c", "2d")
    assert np.allclose(np.sort(site.orbit(), axis=0), np.sort(np.array([[0.5, 0.0, 0.0], [0.5, 0.5, 0.5]]), axis=0), atol=1e-9)


def test_replicate_reports_what_it_did():
    crystal = replicate(221, Lattice.cubic(3.9).matrix, np.array([[0.02, 0.0, 0.99], [0.5, 0.5, 0.5]]), np.array([38, 22]),
                        np.array([space_group_table(221).wyckoff[-1].site_symmetry[0], space_group_table(221).wyckoff[-2].site_symmetry[0]]))
    assert len(crystal.frac_coords) == 2 and crystal.info["num_representatives"] == 2
    assert crystal.info["site_symmetry_projected"] == 0 and crystal.info["max_projection_distance"] < 0.2


def test_decoder_reports_bad_samples_instead_of_raising():
    S = torch.zeros(1, 15, dtype=torch.long)
    x = torch.tensor([[0.1, 0.2, 0.3]])
    z = torch.tensor([8])
    k = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 1.5])
    assert decode_crystal(1, k, x, z, S).ok
    assert decode_crystal(1, torch.full((6,), float("nan")), x, z, S).reason == "non-finite lattice k"
    assert decode_crystal(1, k, torch.full((1, 3), float("inf")), z, S).reason == "non-finite coordinates"
    assert decode_crystal(1, torch.tensor([0.0, 0, 0, 0, 0, 800.0]), x, z, S).reason == "lattice k overflows"
    assert decode_crystal(1, torch.tensor([0.0, 0, 0, 0, 0, 40.0]), x, z, S).reason.startswith("cell too large")
    assert "atomic number" in decode_crystal(1, k, x, torch.tensor([0]), S).reason
    assert decode_crystal(1, k, x[:0], z[:0], S[:0]).reason == "no representatives"
    assert decode_crystal(1, torch.full((6,), float("nan")), x, z, S).info == {"spacegroup": 1}  # G kept for failures


def test_an_exception_inside_the_projection_is_a_reported_failure(monkeypatch):
    def broken_replicate(*args, **kwargs):
        raise RuntimeError("no Wyckoff position left")

    monkeypatch.setattr("crystalgen_symmcd.decoding.replicate", broken_replicate)
    k = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 1.5])
    decoded = decode_crystal(225, k, torch.tensor([[0.1, 0.2, 0.3]]), torch.tensor([8]), torch.zeros(1, 15, dtype=torch.long))
    assert not decoded.ok and decoded.structure is None
    assert decoded.reason == "projection failed: RuntimeError: no Wyckoff position left"
    assert decoded.info == {"spacegroup": 225}
