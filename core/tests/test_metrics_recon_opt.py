"""Reconstruction match rate / RMSE and optimisation success rates against hand-checked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from crystalgen.metrics import optimization_success, reconstruction
from crystalgen.metrics.optimization import success_rates


def rocksalt() -> Structure:
    """Conventional rock-salt NaCl (8 sites), written out: Structure.from_spacegroup takes seconds."""
    fcc = [[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]
    return Structure(Lattice.cubic(5.64), ["Na"] * 4 + ["Cl"] * 4, fcc + [[x + 0.5 for x in p] for p in fcc])


def cscl() -> Structure:
    return Structure(Lattice.cubic(4.12), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_reconstruction_of_a_perturbed_structure():
    true = rocksalt()
    rng = np.random.default_rng(0)
    shaken = Structure(true.lattice, true.species, true.cart_coords + rng.normal(scale=0.05, size=(len(true), 3)),
                       coords_are_cartesian=True)
    shaken.translate_sites(range(len(shaken)), [0.1, 0.2, 0.3])  # a translation is not an error
    overlapping = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.05, 0, 0]])
    out = reconstruction([shaken, cscl(), None, overlapping], [true, true, true, true], workers=1, progress=False)
    # only the shaken crystal matches; the invalid one is not even compared (CDVAE); 1 of 4
    assert out["match_rate"] == pytest.approx(0.25)
    assert out["n_matched"] == 1 and out["n_recon_valid"] == 2 and out["match_rate_n"] == 4
    assert 0 < out["rms_dist"] < 0.05  # normalised by (V/N)^(1/3) ~ 2.8 A


def test_identical_reconstruction_has_zero_rmse():
    out = reconstruction([rocksalt()], [rocksalt()], workers=1, progress=False)
    assert out["match_rate"] == 1.0 and out["rms_dist"] == pytest.approx(0.0, abs=1e-8)


def test_reconstruction_needs_paired_lists():
    with pytest.raises(ValueError, match="paired"):
        reconstruction([rocksalt()], [rocksalt(), rocksalt()])


def test_success_rates_by_hand():
    # percentiles -3, -2, -1; best values per start
    out = success_rates([-3.5, -2.5, -1.5, 0.0, np.inf], (-3.0, -2.0, -1.0))
    assert out == {"SR5": pytest.approx(1 / 5), "SR10": pytest.approx(2 / 5), "SR15": pytest.approx(3 / 5)}


def test_optimization_success_uses_the_best_valid_decode_per_start():
    good, bad = rocksalt(), Structure(Lattice.cubic(5.0), ["Na", "Cl"], [[0, 0, 0], [0.02, 0, 0]])
    decoded = [[good, good], [bad, good], [None, bad], [good]]
    # start 0: best -3.5; start 1: the invalid decode's -9 is ignored -> -1.5; start 2: nothing valid; start 3: 0
    properties = [[-3.5, -1.0], [-9.0, -1.5], [math.nan, -9.0], [0.0]]
    out = optimization_success(decoded, properties=properties, percentiles=(-3.0, -2.0, -1.0))
    assert (out["SR5"], out["SR10"], out["SR15"]) == (pytest.approx(0.25), pytest.approx(0.25), pytest.approx(0.5))
    assert out["SR_n"] == 4 and out["SR_n_valid_decodes"] == 4


def test_optimization_uses_cdvae_percentiles_for_a_dataset():
    out = optimization_success([[rocksalt()]], properties=[[-3.2]], dataset="mp_20")
    assert out["SR5"] == 1.0  # -3.2 <= -3.17562208
    with pytest.raises(ValueError, match="percentiles"):
        optimization_success([[rocksalt()]], properties=[[0.0]], dataset="unknown")
