"""CDVAE's preprocessing: the Niggli-reduced cell in the standard orientation (``build_crystal`` with
niggli=True, primitive=False), optionally with the CrystalNN bonds the official encoder ran on.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from pymatgen.core import Structure
from torch_geometric.data import Data

from crystalgen import (
    EncoderSpec,
    InvalidLatticeError,
    SkipCrystal,
    StructureTransform,
    check_ordered,
    niggli_reduce,
    structure_to_data,
    with_standard_orientation,
)
from crystalgen.encoders.dimenet_pp.encoder import CELL, CRYSTALNN_FIELDS, GRAPHS

#: DimeNet++'s element embedding (torch_geometric's EmbeddingBlock, as CDVAE used it) has 95 rows, indexed by Z.
MAX_ENCODER_Z = 94


class CDVAETransform(StructureTransform):
    """Structure -> Data on the Niggli cell (lattice rows in pymatgen's from_parameters orientation).

    Args:
        max_atoms: crystals with more atoms are skipped (the number-of-atoms head has this many classes).
        max_atomic_number: crystals with a heavier element are skipped (type classes / encoder embedding).
        encoder_graph: ``radius`` (edges built on the fly by the encoder, nothing stored) or ``crystalnn``
            (CrystalNN bonds with CDVAE's settings stored as ``nn_edge_index`` (2, E) source j / target i and
            ``nn_cell_offsets`` (E, 3), image of j).
    """

    name = "cdvae"
    version = "1"
    spec = EncoderSpec(provides=CELL)

    @classmethod
    def declare(cls, args: Mapping[str, Any]) -> EncoderSpec:
        """With ``encoder_graph="crystalnn"`` it also writes the bonds."""
        return EncoderSpec(CELL | (CRYSTALNN_FIELDS if args.get("encoder_graph") == "crystalnn" else frozenset()))

    def __init__(self, max_atoms: int, max_atomic_number: int = MAX_ENCODER_Z, encoder_graph: str = "radius") -> None:
        if encoder_graph not in GRAPHS:
            raise ValueError(f"encoder_graph must be one of {GRAPHS}, got {encoder_graph!r}")
        self.max_atoms = int(max_atoms)
        self.max_atomic_number = int(max_atomic_number)
        self.encoder_graph = encoder_graph

    def __call__(self, structure: Structure) -> Data:
        if len(structure) > self.max_atoms:
            raise SkipCrystal(f"{len(structure)} atoms exceeds max_atoms={self.max_atoms}")
        check_ordered(structure)
        heaviest = max(site.specie.Z for site in structure)
        if heaviest > self.max_atomic_number:
            raise SkipCrystal(f"element Z={heaviest} exceeds the largest supported atomic number {self.max_atomic_number}")
        try:
            cell = with_standard_orientation(niggli_reduce(structure))
        except InvalidLatticeError as exc:
            raise SkipCrystal(str(exc)) from None
        data = structure_to_data(cell)
        if self.encoder_graph == "crystalnn":
            edge_index, cell_offsets = _crystalnn_bonds(cell)
            data.nn_edge_index = edge_index
            data.nn_cell_offsets = cell_offsets
        return data


def _crystalnn_bonds(cell: Structure) -> tuple[torch.Tensor, torch.Tensor]:
    """Both directions of every CrystalNN bond of ``cell`` (already reduced, so no further Niggli step)."""
    from crystalgen.metrics.cdvae_property.crystalnn_graph import crystalnn_graph

    try:
        graph = crystalnn_graph(cell, niggli=False)
    except Exception as exc:  # CrystalNN fails on a few exotic cells; the crystal is skipped with the reason
        raise SkipCrystal(f"CrystalNN bonds could not be found: {type(exc).__name__}: {exc}") from None
    if graph.edge_index.shape[1] == 0:
        raise SkipCrystal("CrystalNN found no bonds")
    return torch.from_numpy(graph.edge_index), torch.from_numpy(graph.cell_offsets)
