"""The EAD encoder as a preprocessing transform: Structure -> Data with the raw representation R (cached on disk)."""

from __future__ import annotations

from typing import Any

import torch
from pymatgen.core import Structure
from torch_geometric.data import Data

from crystalgen import EncoderSpec, InvalidLatticeError, SkipCrystal, StructureTransform, structure_to_data
from crystalgen_structrepdiff.descriptor import StructureDescriptor
from crystalgen_structrepdiff.ead import EADParameters
from crystalgen_structrepdiff.representation import (
    VARIABLE,
    RepresentationLayout,
    assemble,
    composition_block,
    lattice_block,
)

#: How the radial Gaussians are evaluated, and the table's grid spacing in Angstrom, unless the config says.
METHOD, TABLE_SPACING = "table", 0.01


class RepresentationTransform(StructureTransform):
    """Registered as encoder ``structrepdiff_ead``: Structure -> the full-cell tensors plus ``representation``
    (1, N) float64, the unnormalised R of section 4.1.

    Options: ``ead`` (the descriptor's grid, see the presets), ``method`` and ``table_spacing`` (how it is
    evaluated); the model supplies ``num_elements`` and ``max_atoms``. The cell tensors stay in the item so that the
    ``reconstruct`` task can report the input crystal and tests can compare against it. Crystals with more than
    ``max_atoms`` atoms or an element beyond Z = ``num_elements`` are skipped with the reason.
    """

    name = "structrepdiff_representation"  # keys the preprocessing cache, with ``version`` and the options
    version = "1"
    spec = EncoderSpec(provides=frozenset({"lattice", "frac_coords", "atom_types", "num_atoms", VARIABLE}))

    def __init__(self, ead: dict[str, Any], num_elements: int = 96, max_atoms: int | None = None,
                 method: str = METHOD, table_spacing: float = TABLE_SPACING) -> None:
        self.ead = plain_ead_config(ead)
        self.num_elements = int(num_elements)
        self.max_atoms = None if max_atoms is None else int(max_atoms)
        self.method = method
        self.table_spacing = float(table_spacing)
        self._descriptor: StructureDescriptor | None = None

    @property
    def params(self) -> EADParameters:
        return ead_parameters(self.ead)

    @property
    def layout(self) -> RepresentationLayout:
        return RepresentationLayout(self.params.num_features, self.num_elements)

    def descriptor(self) -> StructureDescriptor:
        if self._descriptor is None:  # built per process (workers receive the transform without it)
            self._descriptor = StructureDescriptor(self.params, self.method, self.table_spacing, torch.float64)
        return self._descriptor

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_descriptor": None}

    def __call__(self, structure: Structure) -> Data:
        if self.max_atoms is not None and len(structure) > self.max_atoms:
            raise SkipCrystal(f"{len(structure)} atoms exceeds max_atoms={self.max_atoms}")
        heaviest = max(site.specie.Z for site in structure)
        if heaviest > self.num_elements:
            raise SkipCrystal(f"element Z={heaviest} is outside the composition vocabulary Z = 1..{self.num_elements}")
        data = structure_to_data(structure)
        try:
            data.representation = representation_of(data, self.descriptor(), self.num_elements)
        except (InvalidLatticeError, ValueError) as exc:
            raise SkipCrystal(f"representation could not be computed: {exc}") from None
        return data


def representation_of(data: Data, descriptor: StructureDescriptor, num_elements: int) -> torch.Tensor:
    """Raw R (B, N) float64 of crystals given as full-cell tensors (one Data or a Batch)."""
    lattice = data.lattice.double()
    crystal = torch.repeat_interleave(torch.arange(lattice.shape[0]), data.num_atoms)
    positions = torch.bmm(data.frac_coords.double().unsqueeze(1), lattice.index_select(0, crystal)).squeeze(1)
    structure_block = descriptor.of_cells(positions, data.atom_types, lattice, data.num_atoms)
    return assemble(structure_block, composition_block(data.atom_types, data.num_atoms, num_elements), data.num_atoms,
                    lattice_block(lattice))


def plain_ead_config(cfg: Any) -> dict[str, Any]:
    """The ``ead`` config block as plain Python values (it keys the preprocessing cache), validated."""
    plain = {"lmax": int(cfg["lmax"]), "mu_start": float(cfg["mu_start"]), "mu_stop": float(cfg["mu_stop"]),
             "mu_step": float(cfg["mu_step"]), "etas": [float(e) for e in cfg["etas"]], "cutoff": float(cfg["cutoff"]),
             "angular": str(cfg.get("angular", "per_degree"))}  # absent in checkpoints made before the option
    ead_parameters(plain)
    return plain


def ead_parameters(cfg: Any) -> EADParameters:
    """EADParameters from the ``ead`` config block (lmax, mu_start, mu_stop, mu_step, etas, cutoff, angular)."""
    return EADParameters.from_grid(int(cfg["lmax"]), float(cfg["mu_start"]), float(cfg["mu_stop"]), float(cfg["mu_step"]),
                                   [float(e) for e in cfg["etas"]], float(cfg["cutoff"]), str(cfg["angular"]))


def descriptor_options(transform: Any) -> dict[str, Any]:
    """The options of a ``structrepdiff_ead`` section (``model.transform``) that fix the descriptor, which the
    decoder must evaluate exactly as the transform did: ``ead``, ``method``, ``table_spacing``."""
    return {"ead": plain_ead_config(transform["ead"]), "method": str(transform.get("method", METHOD)),
            "table_spacing": float(transform.get("table_spacing", TABLE_SPACING))}
