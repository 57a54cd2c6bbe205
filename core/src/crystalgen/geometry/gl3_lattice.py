"""GemsDiff's 9-parameter lattice vector space: coordinates x in R^9 <-> gl(3) <-> lattice (GemsDiff Sec. 4.2,
Eq. 12-13, App. B).

gl(3) = so(3) + (a supplement of so(3) in sl(3)) + R*I, with the basis of App. B:
    pi_0..pi_2  antisymmetric (orientation),  pi_3..pi_7  traceless symmetric (shape),  pi_8 = lambda * I (volume),
    lambda = 0.25 / sqrt(3)  (paper App. B), so det(exp(pi x)) = exp(tr(pi x)) = exp(3 lambda x_8): the cell volume.
The basis is not Frobenius-orthogonal (<pi_6, pi_7> = -1), so coordinates are read off by solving the 9x9 system.

Convention: the lattice matrix with rows = lattice vectors (Angstrom) is rho = exp(sum_i x_i pi_i). GemsDiff's official code
mixes rows and columns; with columns = vectors the only change would be the sign of
the rotation coordinates x_0..x_2 (exp(g)^T = exp(g^T)). The official code also normalises the basis differently
(pi_0..pi_5 / sqrt(2), pi_6 = diag(1, -1, 0)/sqrt(2), pi_7 = diag(1, 1, -2)/sqrt(6), pi_8 = I/sqrt(3)) and puts the
0.25 into the noise instead; this module follows the paper.

exp is torch.linalg.matrix_exp (defined everywhere). The inverse is the real principal logarithm, defined when the
lattice has no eigenvalue on the closed negative real axis (see :mod:`crystalgen.geometry.principal_log`); lattices in
the standard (pymatgen from_parameters) orientation always qualify. On that domain
lattice_to_gl3_coords(gl3_coords_to_lattice(x)) = x whenever the eigenvalues of pi x have imaginary parts in
(-pi, pi), e.g. for every x with zero rotation part.
"""

from __future__ import annotations

import math
from typing import Literal, overload

import torch
from torch import Tensor

from crystalgen.geometry.lattice import format_values, raise_for_invalid, require_valid_lattice
from crystalgen.geometry.principal_log import principal_logm

GL3_LAMBDA = 0.25 / math.sqrt(3.0)

_BASIS = torch.tensor(
    [
        [[0, 1, 0], [-1, 0, 0], [0, 0, 0]],
        [[0, 0, 1], [0, 0, 0], [-1, 0, 0]],
        [[0, 0, 0], [0, 0, 1], [0, -1, 0]],
        [[0, 1, 0], [1, 0, 0], [0, 0, 0]],
        [[0, 0, 1], [0, 0, 0], [1, 0, 0]],
        [[0, 0, 0], [0, 0, 1], [0, 1, 0]],
        [[1, 0, 0], [0, -1, 0], [0, 0, 0]],
        [[0, 0, 0], [0, 1, 0], [0, 0, -1]],
        [[GL3_LAMBDA, 0, 0], [0, GL3_LAMBDA, 0], [0, 0, GL3_LAMBDA]],
    ],
    dtype=torch.float64,
)
# Column i is vec(pi_i); its inverse maps vec(g) to coordinates.
_COORDS_FROM_VEC = torch.linalg.inv(_BASIS.reshape(9, 9).T)

ROTATION_COORDS = slice(0, 3)  # x_0..x_2: the so(3) part (orientation)
SHAPE_COORDS = slice(3, 8)  # x_3..x_7: traceless symmetric part (shape at fixed volume)
VOLUME_COORD = 8  # x_8: log-volume / (3 lambda)


def gl3_basis(dtype: torch.dtype = torch.float64, device: torch.device | str | None = None) -> Tensor:
    """pi_0..pi_8 of GemsDiff App. B as a (9, 3, 3) tensor (pi_8 = lambda I, lambda = 0.25/sqrt(3))."""
    return _BASIS.to(dtype=dtype, device=device)


def gl3_coords_to_algebra(coords: Tensor) -> Tensor:
    """g = sum_i x_i pi_i (..., 3, 3) from coordinates x (..., 9)."""
    if coords.shape[-1:] != (9,):
        raise ValueError(f"gl(3) coordinates must have shape (..., 9); got {tuple(coords.shape)}")
    return torch.einsum("...i,ijk->...jk", coords, gl3_basis(coords.dtype, coords.device))


def algebra_to_gl3_coords(algebra: Tensor) -> Tensor:
    """Coordinates x (..., 9) of g (..., 3, 3) in the basis pi (the inverse of :func:`gl3_coords_to_algebra`)."""
    if algebra.shape[-2:] != (3, 3):
        raise ValueError(f"gl(3) elements must have shape (..., 3, 3); got {tuple(algebra.shape)}")
    inverse = _COORDS_FROM_VEC.to(dtype=algebra.dtype, device=algebra.device)
    return algebra.reshape(*algebra.shape[:-2], 9) @ inverse.T


@overload
def gl3_coords_to_lattice(coords: Tensor, *, strict: Literal[True] = ...) -> Tensor: ...
@overload
def gl3_coords_to_lattice(coords: Tensor, *, strict: Literal[False]) -> tuple[Tensor, Tensor]: ...
def gl3_coords_to_lattice(coords: Tensor, *, strict: bool = True):
    """Lattice rho = exp(pi x) (..., 3, 3), rows = lattice vectors in Angstrom, from coordinates x (..., 9).

    Every finite x gives a right-handed cell (det = exp(3 lambda x_8) > 0). Non-finite x (or a cell that overflows
    the dtype) raises :class:`InvalidLatticeError` naming the crystal; with ``strict=False`` returns
    ``(lattice, valid)`` with NaN rows where ``valid`` (...,) is False.
    """
    finite = torch.isfinite(coords).all(-1, keepdim=True)
    algebra = gl3_coords_to_algebra(torch.where(finite, coords, torch.zeros_like(coords)))
    lattice = torch.linalg.matrix_exp(algebra)
    valid = finite.squeeze(-1) & torch.isfinite(lattice).all(-1).all(-1)
    if strict:
        raise_for_invalid("gl3_coords_to_lattice", valid, lambda i: f"x = {format_values(coords.reshape(-1, 9)[i])} gives no finite cell")
        return lattice
    if not valid.all():  # rebuild overflowing rows from g = 0 so that no inf reaches the backward pass
        lattice = torch.linalg.matrix_exp(torch.where(valid[..., None, None], algebra, torch.zeros_like(algebra)))
    return torch.where(valid[..., None, None], lattice, torch.full_like(lattice, math.nan)), valid


def lattice_to_gl3_coords(lattice: Tensor) -> Tensor:
    """Coordinates x = pi^(-1) log(rho) (..., 9) of lattices (..., 3, 3) (rows = lattice vectors, Angstrom).

    Raises:
        InvalidLatticeError: a non-finite or degenerate lattice (names the crystal).
        ValueError: a lattice without a real principal logarithm (det <= 0, i.e. left-handed, or an eigenvalue on
            the negative real axis): rotate it into the standard orientation first.
    """
    require_valid_lattice(lattice, "lattice_to_gl3_coords")
    return algebra_to_gl3_coords(principal_logm(lattice))


def lattice_volume_from_gl3(coords: Tensor) -> Tensor:
    """Cell volume (...,) in Angstrom^3 of exp(pi x): exp(3 lambda x_8), since the other basis elements are traceless."""
    return torch.exp(3.0 * GL3_LAMBDA * coords[..., VOLUME_COORD])
