"""SymmCD's 6-parameter log-symmetric lattice form k and its space-group constraints (SymmCD App. B, after
DiffCSP++).

Any lattice L (rows = lattice vectors, Angstrom) factors as L = exp(S) Q with Q orthogonal and S symmetric
(polar decomposition; the paper writes the column form L = Q exp(S)). S is expanded on the unnormalised basis
B_1..B_6 of the paper:  S = sum_i k_i B_i. Because Q drops out, k depends only on the Gram matrix L L^T, i.e. on the
lattice parameters:
    lattice -> k:  S = 1/2 logm(L L^T),  k_i = <S, B_i>_F / <B_i, B_i>_F   (the B_i are Frobenius-orthogonal)
    k -> lattice:  exp(sum_i k_i B_i), a symmetric positive-definite matrix.
So the round trip keeps a, b, c, alpha, beta, gamma and L L^T exactly but returns the lattice in a canonical
orientation (the symmetric one), right-handed even when L was left-handed. Fractional coordinates are unchanged by
this rotation, so a crystal (L, X) and (exp(S), X) are the same crystal up to rotation (and mirror if det L < 0).

Difference from the official SymmCD code (sibasmarak/SymmCD ``data_utils.lattice_to_ks``): it takes logm of the raw
non-symmetric lattice matrix and keeps its projection on the symmetric basis. That is not the symmetric factor of L,
so exp(sum k_i B_i) does not rebuild monoclinic and triclinic cells (a=3, b=4, c=5, beta=100 comes back with
beta = 98.0 deg); the official model thus trains on distorted low-symmetry lattices. We use S = 1/2 logm(L L^T), which
is exact for every crystal system.

Space-group constraints (paper App. B; official ``sg_to_ks_mask``): the masked entries of k are fixed, the others
free. They reproduce the constraints of each crystal system when the cell is in the standard setting (spglib's
refined / pymatgen's conventional standard cell: monoclinic unique axis b, trigonal groups in hexagonal axes).
"""

from __future__ import annotations

import math
from typing import Literal, overload

import torch
from torch import Tensor

from crystalgen.geometry.lattice import format_values, raise_for_invalid, require_valid_lattice
from crystalgen.geometry.symmetric_matrix import symmetric_expm, symmetric_logm

# k_1 of hexagonal and trigonal cells: with S = k_1 B_1 + ..., cos(gamma) = tanh(2 k_1) = -1/2, i.e. gamma = 120 deg.
HEXAGONAL_K1 = -math.log(3.0) / 4.0

_BASIS = torch.tensor(
    [
        [[0, 1, 0], [1, 0, 0], [0, 0, 0]],
        [[0, 0, 1], [0, 0, 0], [1, 0, 0]],
        [[0, 0, 0], [0, 0, 1], [0, 1, 0]],
        [[1, 0, 0], [0, -1, 0], [0, 0, 0]],
        [[1, 0, 0], [0, 1, 0], [0, 0, -2]],
        [[1, 0, 0], [0, 1, 0], [0, 0, 1]],
    ],
    dtype=torch.float64,
)

# Free entries of k per crystal system (True = free, diffused; paper's m_i = 1).
_FREE = {
    "triclinic": (True, True, True, True, True, True),
    "monoclinic": (False, True, False, True, True, True),
    "orthorhombic": (False, False, False, True, True, True),
    "tetragonal": (False, False, False, False, True, True),
    "trigonal": (False, False, False, False, True, True),
    "hexagonal": (False, False, False, False, True, True),
    "cubic": (False, False, False, False, False, True),
}

# Last space-group number of each crystal system (International Tables order).
_SYSTEM_ENDS = ((2, "triclinic"), (15, "monoclinic"), (74, "orthorhombic"), (142, "tetragonal"), (167, "trigonal"), (194, "hexagonal"), (230, "cubic"))


def log_lattice_basis(dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> Tensor:
    """The symmetric basis B_1..B_6 of SymmCD App. B, unnormalised, as a (6, 3, 3) tensor."""
    return _BASIS.to(dtype=dtype, device=device)


@overload
def k_to_lattice(k: Tensor, *, strict: Literal[True] = ...) -> Tensor: ...
@overload
def k_to_lattice(k: Tensor, *, strict: Literal[False]) -> tuple[Tensor, Tensor]: ...
def k_to_lattice(k: Tensor, *, strict: bool = True):
    """Lattice (..., 3, 3) = exp(sum_i k_i B_i) from k (..., 6): symmetric, rows = lattice vectors in Angstrom.

    Every finite k gives a valid cell. Non-finite k (or a cell that overflows the dtype) raises
    :class:`InvalidLatticeError` naming the crystal; with ``strict=False`` returns ``(lattice, valid)`` with NaN
    rows where ``valid`` (...,) is False, as a sampler wants.
    """
    if k.shape[-1:] != (6,):
        raise ValueError(f"k must have shape (..., 6); got {tuple(k.shape)}")
    finite = torch.isfinite(k).all(-1, keepdim=True)
    s = torch.einsum("...i,ijk->...jk", torch.where(finite, k, torch.zeros_like(k)), log_lattice_basis(k.dtype, k.device))
    lattice = symmetric_expm(s)
    valid = finite.squeeze(-1) & torch.isfinite(lattice).all(-1).all(-1)
    if strict:
        raise_for_invalid("k_to_lattice", valid, lambda i: f"k = {format_values(k.reshape(-1, 6)[i])} gives no finite cell")
        return lattice
    if not valid.all():  # rebuild overflowing rows from S = 0 so that no inf reaches the backward pass
        lattice = symmetric_expm(torch.where(valid[..., None, None], s, torch.zeros_like(s)))
    return torch.where(valid[..., None, None], lattice, torch.full_like(lattice, math.nan)), valid


def lattice_to_k(lattice: Tensor) -> Tensor:
    """k (..., 6) of lattices (..., 3, 3) (rows = lattice vectors, Angstrom), from S = 1/2 logm(L L^T).

    Raises:
        InvalidLatticeError: a degenerate or non-finite lattice (names the crystal index and its vectors).
    """
    if lattice.shape[-2:] != (3, 3):
        raise ValueError(f"lattice must have shape (..., 3, 3); got {tuple(lattice.shape)}")
    require_valid_lattice(lattice, "lattice_to_k")
    s = 0.5 * symmetric_logm(lattice @ lattice.transpose(-1, -2))
    basis = log_lattice_basis(lattice.dtype, lattice.device)
    return torch.einsum("...jk,ijk->...i", s, basis) / (basis * basis).sum((-1, -2))


def crystal_system(space_group: int) -> str:
    """Crystal system of a space-group number 1..230 (trigonal and hexagonal kept apart)."""
    if not 1 <= int(space_group) <= 230:
        raise ValueError(f"space-group number must be in 1..230; got {space_group}")
    return next(name for end, name in _SYSTEM_ENDS if space_group <= end)


def space_group_k_mask(space_group: int) -> tuple[Tensor, Tensor]:
    """(mask, fill) for one space group: mask (6,) bool, True where k_i is free; fill (6,) float64, the value of
    each constrained entry (0, or HEXAGONAL_K1 for k_1 of trigonal and hexagonal groups 143-194) and 0 where free."""
    system = crystal_system(space_group)
    mask = torch.tensor(_FREE[system])
    fill = torch.zeros(6, dtype=torch.float64)
    if system in ("trigonal", "hexagonal"):
        fill[0] = HEXAGONAL_K1
    return mask, fill


_TABLE = [space_group_k_mask(sg) for sg in range(1, 231)]
_MASK_TABLE = torch.stack([m for m, _ in _TABLE])
_FILL_TABLE = torch.stack([f for _, f in _TABLE])


def space_group_k_masks(space_groups: Tensor, dtype: torch.dtype = torch.float64) -> tuple[Tensor, Tensor]:
    """Batched :func:`space_group_k_mask`: space_groups (...,) int -> mask (..., 6) bool, fill (..., 6) of ``dtype``."""
    if space_groups.numel() and (space_groups.min() < 1 or space_groups.max() > 230):
        bad = space_groups.reshape(-1)[(space_groups.reshape(-1) < 1) | (space_groups.reshape(-1) > 230)][0]
        raise ValueError(f"space-group numbers must be in 1..230; got {int(bad)}")
    index = space_groups.long() - 1
    mask = _MASK_TABLE.to(space_groups.device)[index]
    fill = _FILL_TABLE.to(device=space_groups.device, dtype=dtype)[index]
    return mask, fill


def apply_k_mask(k: Tensor, mask: Tensor, fill: Tensor) -> Tensor:
    """k with its constrained entries replaced by the fill values (free entries untouched; gradient flows to them)."""
    return torch.where(mask, k, fill.to(k.dtype))
