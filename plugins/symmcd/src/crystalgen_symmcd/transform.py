"""The preprocessing transform: Structure -> torch_geometric Data of SymmCD's representation.

Run once per dataset split by the core's data layer (``crystalgen.data.preprocess.prepare_split``: cached on
disk, in parallel). Nodes are the orbit representatives, not the atoms of the cell:

    spacegroup       (1,)      int64  G, 1..230
    lattice_k        (1, 6)    float64 k of the conventional cell (constrained entries exactly at their values)
    frac_coords      (M, 3)    float64 representatives X', fractional, in [0, 1)
    atom_types       (M,)      int64  atomic numbers A'
    site_symmetry    (M, 15)   int64  oriented site-symmetry class per symmetry direction (S)
    wyckoff          (M,)      int64  Wyckoff position index in pyxtal's table of G
    multiplicity     (M,)      int64  atoms per conventional cell of each orbit
    num_cell_atoms   (1,)      int64  N, atoms in the conventional cell
"""

from __future__ import annotations

import torch
from pymatgen.core import Structure
from torch_geometric.data import Data

from crystalgen import (
    EncoderSpec,
    SkipCrystal,
    StructureTransform,
    apply_k_mask,
    check_ordered,
    lattice_to_k,
    space_group_k_mask,
)
from crystalgen_symmcd.asymmetric_unit import AsymmetricUnit, SymmetryAnalysisError, analyse


class AsymmetricUnitTransform(StructureTransform):
    """Wyckoff analysis of one crystal (spglib, pyxtal as fallback, at ``symprec`` Angstrom / ``angle_tolerance``
    degrees).

    Crystals whose conventional cell holds more than ``max_cell_atoms`` atoms or more than
    ``max_representatives`` orbits (None: no limit) are skipped with the reason, as are crystals neither can
    analyse.
    """

    name = "symmcd_asymmetric_unit"
    #: Part of the on-disk cache key: bump it whenever the output can change. "2": spglib's standard cell replaced
    #: pyxtal's from_seed (the same tensors for 60 MP-20 test crystals compared, but no longer the same code
    #: path, so caches written by "1" are not reused). tests/test_symmcd_transform.py pins the output to it.
    version = "2"
    spec = EncoderSpec(provides=frozenset({"spacegroup", "lattice_k", "frac_coords", "atom_types", "site_symmetry",
                                           "wyckoff", "multiplicity", "num_cell_atoms"}))

    def __init__(self, symprec: float = 0.1, angle_tolerance: float = 5.0, max_cell_atoms: int | None = None,
                 max_representatives: int | None = None) -> None:
        self.symprec = float(symprec)
        self.angle_tolerance = float(angle_tolerance)
        self.max_cell_atoms = max_cell_atoms
        self.max_representatives = max_representatives

    def __call__(self, structure: Structure) -> Data:
        check_ordered(structure)
        try:
            unit = analyse(structure, self.symprec, self.angle_tolerance)
        except SymmetryAnalysisError as exc:
            raise SkipCrystal(str(exc)) from None
        if self.max_cell_atoms is not None and unit.num_atoms > self.max_cell_atoms:
            raise SkipCrystal(f"{unit.num_atoms} atoms in the conventional cell exceeds max_cell_atoms={self.max_cell_atoms}")
        if self.max_representatives is not None and len(unit.atom_types) > self.max_representatives:
            raise SkipCrystal(f"{len(unit.atom_types)} orbits exceeds max_representatives={self.max_representatives}")
        return to_data(unit)


def to_data(unit: AsymmetricUnit) -> Data:
    """Tensors of one asymmetric unit (see the module docstring)."""
    lattice = torch.from_numpy(unit.lattice.copy()).unsqueeze(0)
    mask, fill = space_group_k_mask(unit.spacegroup)
    k = apply_k_mask(lattice_to_k(lattice), mask, fill)
    return Data(
        spacegroup=torch.tensor([unit.spacegroup], dtype=torch.long),
        lattice_k=k,
        frac_coords=torch.from_numpy(unit.frac_coords.copy()),
        atom_types=torch.from_numpy(unit.atom_types.copy()),
        site_symmetry=torch.from_numpy(unit.site_symmetry.copy()),
        wyckoff=torch.from_numpy(unit.wyckoff.copy()),
        multiplicity=torch.from_numpy(unit.multiplicity.copy()),
        num_cell_atoms=torch.tensor([unit.num_atoms], dtype=torch.long),
        num_nodes=len(unit.atom_types),
    )
