"""Decoding of full-cell states: lattice matrices + fractional coordinates + atomic numbers -> Structures."""

from __future__ import annotations

import torch
from torch import Tensor

from crystalgen.data.crystal import tensors_to_structure
from crystalgen.models.base import Decoded

MIN_VOLUME = 1e-3  # Angstrom^3; below this the cell is degenerate and pymatgen's maths breaks


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
