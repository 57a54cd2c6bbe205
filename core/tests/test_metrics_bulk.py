"""Density and number of elements for the property EMDs: equal bit for bit to pymatgen's, per crystal."""

from __future__ import annotations

import numpy as np
from pymatgen.core import Lattice, Species, Structure

from crystalgen.metrics.bulk import densities, density, num_elements


def test_density_and_element_count_equal_pymatgen_bitwise():
    from crystalgen.data.embedded import build_embedded

    structures = [c.structure for c in build_embedded()[:200]]
    rng = np.random.default_rng(0)
    strained = [Structure(Lattice(s.lattice.matrix @ (np.eye(3) + rng.uniform(-0.02, 0.02, (3, 3)))), s.species,
                          s.frac_coords) for s in structures[:50]]
    for s in structures + strained:
        assert density(s) == s.density, s.composition
        assert num_elements(s) == len(s.composition.elements), s.composition
    np.testing.assert_array_equal(densities(structures), [s.density for s in structures])


def test_disordered_sites_and_oxidation_states_go_through_pymatgen():
    disordered = Structure(Lattice.cubic(3.0), [{"Fe": 0.5, "Co": 0.5}, "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    charged = Structure(Lattice.cubic(4.2), [Species("Fe", 2), Species("Fe", 3), Species("O", -2)],
                        [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0.5, 0.5]])
    for s in (disordered, charged):
        assert density(s) == s.density
        assert num_elements(s) == len(s.composition.elements)
    assert num_elements(disordered) == 3 and num_elements(charged) == 3  # pymatgen counts Fe2+ and Fe3+ apart
