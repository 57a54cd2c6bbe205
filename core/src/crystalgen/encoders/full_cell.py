"""The plain full-cell representation: lattice, fractional coordinates, atomic numbers."""

from __future__ import annotations

from pymatgen.core import Structure
from torch_geometric.data import Data

from crystalgen.data.crystal import structure_to_data
from crystalgen.encoders.base import SkipCrystal, StructureTransform
from crystalgen.specs import EncoderSpec


class FullCellTransform(StructureTransform):
    """Keep the cell as given (optionally Niggli-reduced); refuse crystals above ``max_atoms``."""

    name = "full_cell"
    version = "1"
    spec = EncoderSpec(provides=frozenset({"lattice", "frac_coords", "atom_types", "num_atoms"}))

    def __init__(self, max_atoms: int | None = None, niggli: bool = False) -> None:
        self.max_atoms = max_atoms
        self.niggli = niggli

    def __call__(self, structure: Structure) -> Data:
        if self.max_atoms is not None and len(structure) > self.max_atoms:
            raise SkipCrystal(f"{len(structure)} atoms exceeds max_atoms={self.max_atoms}")
        if self.niggli:
            structure = structure.get_reduced_structure("niggli")
        return structure_to_data(structure)
