"""Decoding of full-cell states: lattice matrices + fractional coordinates + atomic numbers -> Structures."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from crystalgen.data.crystal import tensors_to_structure
from crystalgen.decoders.base import Decoder
from crystalgen.models.base import Decoded
from crystalgen.specs import DecoderSpec
from crystalgen.state import Condition

MIN_VOLUME = 1e-3  # Angstrom^3; below this the cell is degenerate and pymatgen's maths breaks


class CellDecoder(Decoder):
    """The identity decoder of full-cell models: one Structure per crystal from its cell, as it stands.

    Reads ``lattice`` (B, 3, 3) rows are lattice vectors in Angstrom, ``frac_coords`` (N, 3) fractional,
    ``atom_types`` (N,) atomic numbers and ``num_atoms`` (B,) atoms per crystal (rows concatenated in order).
    """

    spec = DecoderSpec(reads=frozenset({"lattice", "frac_coords", "atom_types", "num_atoms"}))

    def __call__(self, state: Mapping[str, Tensor], condition: Condition) -> list[Decoded]:
        return decode_cells(state["lattice"], state["frac_coords"], state["atom_types"], state["num_atoms"])


def decode_cells(lattices: Tensor, frac_coords: Tensor, atom_types: Tensor, num_atoms: Tensor) -> list[Decoded]:
    """Build one Structure per crystal, reporting (not raising) non-finite values, degenerate cells and
    atomic numbers outside 1..118.

    Args:
        lattices: (B, 3, 3) rows are lattice vectors, Angstrom.
        frac_coords: (N, 3) fractional coordinates of all crystals, concatenated.
        atom_types: (N,) atomic numbers.
        num_atoms: (B,) atoms per crystal.
    """
    out: list[Decoded] = []
    start = 0
    for i, n in enumerate(num_atoms.tolist()):
        lat, x, z = lattices[i], frac_coords[start:start + n], atom_types[start:start + n]
        start += n
        out.append(_decode_one(lat, x, z))
    return out


def _decode_one(lattice: Tensor, frac: Tensor, types: Tensor) -> Decoded:
    if types.numel() == 0:
        return Decoded(None, "no atoms")
    if not torch.isfinite(lattice).all():
        return Decoded(None, "non-finite lattice")
    if not torch.isfinite(frac).all():
        return Decoded(None, "non-finite coordinates")
    volume = torch.linalg.det(lattice.double()).abs().item()
    if volume < MIN_VOLUME:
        return Decoded(None, f"degenerate cell (volume {volume:.2e} A^3)")
    if types.min() < 1 or types.max() > 118:
        return Decoded(None, f"atomic number outside 1..118 ({int(types.min())}..{int(types.max())})")
    try:
        structure = tensors_to_structure(lattice, torch.remainder(frac.double(), 1.0), types)
    except Exception as exc:  # pymatgen refuses some inputs; report, never crash
        return Decoded(None, f"structure construction failed: {exc}")
    return Decoded(structure)
