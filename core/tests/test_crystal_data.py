"""Crystal tensors (crystalgen.data.crystal): exact Structure <-> Data round trips, batching order, rejection of what
the tensors cannot hold."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pymatgen.core import DummySpecies, Lattice, Species, Structure

from crystalgen.data.crystal import (
    InvalidCrystalError,
    batch_to_structures,
    check_ordered,
    collate,
    data_to_structure,
    properties_of,
    structure_to_data,
)
from crystalgen.testing import benchmark_structures


def oxide() -> Structure:
    lattice = Lattice.from_parameters(3.1, 4.2, 5.3, 81.0, 97.0, 104.0)
    return Structure(lattice, [Species("Fe", 2), "O", "O"], [[0.1, 0.2, 0.3], [0.5, 0.5, 0.5], [1.2, -0.1, 0.0]])


def test_structure_to_data_shapes_units_and_exact_round_trip():
    structure = oxide()
    data = structure_to_data(structure, properties={"band_gap": 1.25}, material_id="mp-7")
    assert data.lattice.shape == (1, 3, 3) and data.lattice.dtype == torch.float64
    assert data.frac_coords.shape == (3, 3) and data.atom_types.tolist() == [26, 8, 8]
    assert data.num_atoms.tolist() == [3] and data.num_nodes == 3 and data.material_id == "mp-7"
    assert properties_of(data) == {"band_gap": 1.25}
    np.testing.assert_array_equal(data.lattice[0].numpy(), structure.lattice.matrix)
    np.testing.assert_array_equal(data.frac_coords.numpy(), structure.frac_coords)  # not wrapped: 1.2 stays 1.2
    back = data_to_structure(data)
    np.testing.assert_array_equal(back.lattice.matrix, structure.lattice.matrix)
    np.testing.assert_array_equal(back.frac_coords, structure.frac_coords)
    assert [s.symbol for s in back.species] == ["Fe", "O", "O"]  # oxidation states are not kept


def test_batching_keeps_order_and_offsets():
    structures = [oxide(), Structure(Lattice.cubic(4.0), ["Cs", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]), oxide()]
    batch = collate([structure_to_data(s, properties={"e": float(i)}) for i, s in enumerate(structures)])
    assert batch.lattice.shape == (3, 3, 3) and batch.num_atoms.tolist() == [3, 2, 3]
    assert batch.batch.tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    assert batch.prop_e.tolist() == [0.0, 1.0, 2.0]
    for original, back in zip(structures, batch_to_structures(batch)):
        np.testing.assert_array_equal(back.lattice.matrix, original.lattice.matrix)
        np.testing.assert_array_equal(back.frac_coords, original.frac_coords)
        assert back.species == [s.element if isinstance(s, Species) else s for s in original.species]


def test_collate_names_the_crystal_with_different_fields():
    with pytest.raises(ValueError, match=r"crystal 1 does not carry the same fields as crystal 0 \(differing: prop_e\)"):
        collate([structure_to_data(oxide(), properties={"e": 1.0}), structure_to_data(oxide())])


@pytest.mark.parametrize(
    ("species", "message"),
    [
        ([{"Fe": 0.5, "Ni": 0.5}], "site 0 is disordered"),
        ([{"Fe": 0.75}], "site 0 has partial occupancy 0.75 of Fe"),
        ([DummySpecies("X")], "not a chemical element"),
    ],
)
def test_check_ordered_rejects_what_tensors_cannot_hold(species, message):
    structure = Structure(Lattice.cubic(4.0), ["O", *species], [[0.5, 0.5, 0.5], [0, 0, 0]])
    with pytest.raises(InvalidCrystalError, match=message.replace("site 0", "site 1")):
        check_ordered(structure)
    with pytest.raises(InvalidCrystalError):
        structure_to_data(structure)


def test_non_finite_values_are_rejected():
    structure = Structure(Lattice.cubic(4.0), ["Na"], [[0.0, 0.0, 0.0]])
    structure.replace(0, "Na", [math.nan, 0.0, 0.0])
    with pytest.raises(InvalidCrystalError, match="NaN or infinity"):
        structure_to_data(structure)


@pytest.mark.data
def test_benchmark_structures_round_trip_exactly():
    for _, structure in benchmark_structures("mp_20", "val", n=50):
        back = data_to_structure(structure_to_data(structure))
        np.testing.assert_array_equal(back.lattice.matrix, structure.lattice.matrix)
        np.testing.assert_array_equal(back.frac_coords, structure.frac_coords)
        assert back.atomic_numbers == structure.atomic_numbers
