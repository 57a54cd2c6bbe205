"""Crystal tensors: pymatgen Structure <-> torch_geometric Data, losslessly.

Conventions (used everywhere in crystalgen):
    lattice      (1, 3, 3) float64 per crystal, rows are the lattice vectors a, b, c in Angstrom
                 (batched: (B, 3, 3))
    frac_coords  (N, 3) float64 fractional coordinates (not wrapped: what the structure holds)
    atom_types   (N,) int64 atomic numbers Z
    num_atoms    (1,) int64 (batched: (B,))
    properties   one (1,)-shaped float64 attribute per property, named ``prop_<name>``
float64 keeps the round trip exact; models cast to their own dtype.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from pymatgen.core import Element, Lattice, Structure
from pymatgen.core.periodic_table import DummySpecies
from torch import Tensor
from torch_geometric.data import Batch, Data

PROPERTY_PREFIX = "prop_"


class InvalidCrystalError(ValueError):
    """A structure crystalgen cannot represent (disorder, partial occupancy, vacancies, non-finite values)."""


def check_ordered(structure: Structure) -> None:
    """Raise InvalidCrystalError unless every site holds exactly one element with occupancy 1."""
    for i, site in enumerate(structure):
        species = site.species
        if len(species) != 1:
            raise InvalidCrystalError(f"site {i} is disordered ({species.formula}); only ordered crystals are supported")
        (sp, occu), = species.items()
        if abs(occu - 1.0) > 1e-6:
            raise InvalidCrystalError(f"site {i} has partial occupancy {occu:g} of {sp}")
        # DummySpecies subclasses Species and reports a hash-like Z, so test the type first.
        if isinstance(sp, DummySpecies) or not 1 <= sp.Z <= 118:
            raise InvalidCrystalError(f"site {i} holds {sp}, which is not a chemical element")


def structure_to_data(structure: Structure, properties: Mapping[str, float] | None = None, **extra) -> Data:
    """Tensors of one ordered structure (see the module docstring for shapes and units)."""
    check_ordered(structure)
    lattice = np.asarray(structure.lattice.matrix, dtype=np.float64)
    frac = np.asarray(structure.frac_coords, dtype=np.float64).reshape(-1, 3)
    if not (np.isfinite(lattice).all() and np.isfinite(frac).all()):
        raise InvalidCrystalError("lattice or coordinates contain NaN or infinity")
    data = Data(
        frac_coords=torch.from_numpy(frac.copy()),
        atom_types=torch.tensor([site.specie.Z for site in structure], dtype=torch.long),
        lattice=torch.from_numpy(lattice.copy()).unsqueeze(0),
        num_atoms=torch.tensor([len(structure)], dtype=torch.long),
        num_nodes=len(structure),
        **extra,
    )
    for name, value in (properties or {}).items():
        data[PROPERTY_PREFIX + name] = torch.tensor([float(value)], dtype=torch.float64)
    return data


def tensors_to_structure(lattice: Tensor, frac_coords: Tensor, atom_types: Tensor) -> Structure:
    """Build a Structure from one crystal's tensors (lattice (3, 3) rows = vectors, Angstrom; fractional coords)."""
    lat = Lattice(lattice.detach().reshape(3, 3).cpu().double().numpy())
    species = [Element.from_Z(int(z)) for z in atom_types.detach().cpu().tolist()]
    coords = frac_coords.detach().cpu().double().numpy().reshape(-1, 3)
    return Structure(lat, species, coords, coords_are_cartesian=False)


def data_to_structure(data: Data) -> Structure:
    """Inverse of :func:`structure_to_data` for one crystal."""
    return tensors_to_structure(data.lattice, data.frac_coords, data.atom_types)


def properties_of(data: Data) -> dict[str, float]:
    return {k[len(PROPERTY_PREFIX):]: float(data[k].reshape(-1)[0]) for k in data.keys() if k.startswith(PROPERTY_PREFIX)}  # noqa: SIM118 (iterating a Data yields pairs)


def collate(items: Sequence[Data]) -> Batch:
    """Batch crystals (lattices stack to (B, 3, 3), atoms concatenate, ``batch`` maps atom -> crystal).

    Raises:
        ValueError: the crystals do not all carry the same fields (properties, extras), naming the first odd one.
    """
    items = list(items)
    fields = set(items[0].keys()) if items else set()
    for i, item in enumerate(items[1:], start=1):
        if set(item.keys()) != fields:
            differing = ", ".join(sorted(fields ^ set(item.keys())))
            raise ValueError(f"collate: crystal {i} does not carry the same fields as crystal 0 (differing: {differing})")
    return Batch.from_data_list(items)


def batch_to_structures(batch: Batch) -> list[Structure]:
    """Split a batch back into Structures, in batch order."""
    counts = batch.num_atoms.tolist()
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return [
        tensors_to_structure(batch.lattice[i], batch.frac_coords[offsets[i]:offsets[i + 1]], batch.atom_types[offsets[i]:offsets[i + 1]])
        for i in range(len(counts))
    ]
