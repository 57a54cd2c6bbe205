"""S.U.N.: the energy hull by hand, uniqueness and novelty by StructureMatcher, and the CHGNet pipeline."""

from __future__ import annotations

import numpy as np
import pytest
from pymatgen.core import Composition, Lattice, Structure

from crystalgen.metrics.sun import EnergyHull, assess_sun, first_occurrences, novelty, sun_metrics


def rocksalt(a: float = 5.64, species=("Na", "Cl")) -> Structure:
    return Structure.from_spacegroup("Fm-3m", Lattice.cubic(a), list(species), [[0, 0, 0], [0.5, 0.5, 0.5]]).get_primitive_structure()


def cesium_chloride(a: float = 3.3, species=("Na", "Cl")) -> Structure:
    return Structure(Lattice.cubic(a), list(species), [[0, 0, 0], [0.5, 0.5, 0.5]])


def zincblende(a: float, species=("Na", "Cl")) -> Structure:
    return Structure.from_spacegroup("F-43m", Lattice.cubic(a), list(species), [[0, 0, 0], [0.25, 0.25, 0.25]]).get_primitive_structure()


def test_hull_energies_by_hand():
    # Na and Cl at 0 eV/atom, NaCl at -1 eV/atom: the hull is the two segments Na-NaCl-Cl.
    hull = EnergyHull([Composition("Na"), Composition("Cl"), Composition("NaCl"), Composition("NaCl2")], [0.0, 0.0, -1.0, 0.5])
    assert hull.hull_energy_per_atom(Composition("NaCl")) == pytest.approx(-1.0)
    assert hull.hull_energy_per_atom(Composition("Na3Cl")) == pytest.approx(-0.5)  # halfway from Na to NaCl
    assert hull.hull_energy_per_atom(Composition("NaCl2")) == pytest.approx(-2 / 3)  # NaCl2 above it is ignored
    e = hull.e_above_hull([Composition("NaCl"), Composition("NaCl2"), Composition("Na3Cl")], [-0.9, 0.5, -0.75])
    np.testing.assert_allclose(e, [0.1, 0.5 + 2 / 3, -0.25])


def test_hull_needs_no_elemental_entries_but_a_possible_mix():
    hull = EnergyHull([Composition("NaCl"), Composition("KCl"), Composition("Na")], [-2.0, -3.0, -1.0])  # no Cl, no K
    assert hull.hull_energy_per_atom(Composition("NaKCl2")) == pytest.approx(-2.5)  # NaCl + KCl
    assert hull.hull_energy_per_atom(Composition("Na3Cl")) == pytest.approx(-1.5)  # Na + NaCl
    assert np.isnan(hull.hull_energy_per_atom(Composition("NaCl2")))  # extra Cl cannot be supplied
    assert np.isnan(hull.e_above_hull([Composition("Rb")], [-1.0])[0])  # element never seen


def test_uniqueness_and_novelty_by_structure_matcher():
    base = rocksalt()
    moved = base.copy()
    moved.translate_sites(range(len(moved)), [0.1, 0.2, 0.3])
    swapped = Structure(moved.lattice, moved.species[::-1], moved.frac_coords[::-1])
    crystals = [base, cesium_chloride(), swapped, rocksalt(species=("K", "Cl")), cesium_chloride(3.35)]
    assert first_occurrences(crystals).tolist() == [True, True, False, True, False]
    assert first_occurrences(crystals, mask=np.array([False, True, True, True, True])).tolist() == [False, True, True, True, False]
    assert novelty(crystals, [rocksalt(5.9)]).tolist() == [False, True, False, True, True]  # scale-free matching


@pytest.fixture()
def chemistry(tmp_path, monkeypatch):
    """Na, Cl and a high-energy NaCl polymorph (zinc blende, squeezed) as the known crystals."""
    monkeypatch.setenv("CRYSTALGEN_CACHE", str(tmp_path))
    sodium = Structure(Lattice.cubic(4.23), ["Na", "Na"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    chlorine = Structure(Lattice.orthorhombic(6.2, 4.4, 8.2), ["Cl"] * 4, [[0, 0.1, 0.1], [0, 0.6, 0.4], [0.5, 0.1, 0.6], [0.5, 0.6, 0.9]])
    train = [zincblende(5.0)]
    return [sodium, chlorine], train


def test_sun_without_relaxation(chemistry):
    reference, train = chemistry
    generated = [rocksalt(), rocksalt(), train[0].copy(), Structure(Lattice.cubic(30.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])]
    result = assess_sun(generated, reference, train, relax=False, progress=False)
    # rock salt lies far below a squeezed zinc blende: stable; the zinc blende copy sits on the hull it built
    assert result.e_above_hull[0] < -0.1 and abs(result.e_above_hull[2]) < 1e-5
    assert np.isnan(result.e_above_hull[3])  # CHGNet cannot build a graph with isolated atoms
    assert result.stable.tolist() == [True, True, True, False]
    assert result.unique.tolist() == [True, False, True, True]
    assert result.novel.tolist() == [True, True, False, True]
    assert result.sun.tolist() == [True, False, False, False]
    summary = result.summary()
    assert (summary["sun_n"], summary["stable_n"], summary["unique_n"], summary["novel_n"]) == (1, 3, 3, 3)
    assert summary["sun_rate"] == 0.25 and summary["sun_initial_rate"] == 0.25 and summary["sun_hull_undefined_n"] == 1
    assert summary["sun_hull"].startswith("CHGNet 0.3.0 energies") and "3 reference+train structures" in summary["sun_hull"]
    assert summary["sun_relax"] == "none" and summary["sun_stability_threshold"] == 0.0


def test_sun_metrics_with_a_bounded_relaxation(chemistry):
    reference, train = chemistry
    stretched = rocksalt(5.9)
    summary = sun_metrics([stretched, rocksalt()], reference, train, relax=True, max_steps=3, workers=1, progress=False)
    assert summary["sun_relax"].startswith("CHGNet FIRE") and "at most 3 steps" in summary["sun_relax"]
    assert summary["stable_initial_n"] == 2 and summary["stable_n"] == 2
    assert summary["unique_n"] == 1 and summary["sun_n"] == 1  # both relax toward the same rock salt
    assert 0 < summary["sun_relax_mean_steps"] <= 3 and summary["sun_relax_converged_n"] <= 2


def test_without_training_set_novelty_is_not_claimed(chemistry):
    reference, _ = chemistry
    summary = sun_metrics([rocksalt()], reference, relax=False, progress=False)
    assert summary["novel_rate"] is None and summary["sun_rate"] is None
    assert summary["stable_n"] == 1  # below the Na + Cl mix: the hull holds only the elements here
    assert "not computed" in summary["sun_novelty_against"]
