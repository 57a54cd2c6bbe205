"""The lattice as 9 gl(3) coordinates (GemsDiff section 4.2 and appendix B), in a rotation-free form.

A crystal does not change when it is rotated, so each lattice is represented by the one of its rotations that is a
symmetric positive definite matrix, P = (L L^T)^(1/2) (the polar factor; L rows = lattice vectors, Angstrom): P has
the lengths and angles of L, and log P is symmetric, so its coordinates in the paper's basis have a zero rotation
part (x_0..x_2). GemsDiff's code instead zeroes those three coordinates of log L, which for a non-symmetric L changes
the cell's shape; the polar form makes zero rotation exact. The core's basis (``crystalgen.gl3_basis``) is the
paper's, pi_8 = lambda I with lambda = 0.25 / sqrt(3).
"""

from __future__ import annotations

import torch
from torch import Tensor

from crystalgen import algebra_to_gl3_coords, gl3_coords_to_algebra

#: the so(3) coordinates, kept at zero throughout (GemsDiff's code puts no noise on them either)
ROTATION = slice(0, 3)


def spd_log(lattice: Tensor) -> Tensor:
    """log P = log(L L^T) / 2 (..., 3, 3) for lattices (..., 3, 3), by the eigendecomposition of the metric."""
    metric = lattice @ lattice.transpose(-1, -2)
    values, vectors = torch.linalg.eigh(metric)
    return (vectors * (0.5 * values.clamp(min=1e-30).log()).unsqueeze(-2)) @ vectors.transpose(-1, -2)


def lattice_to_coords(lattice: Tensor) -> Tensor:
    """gl(3) coordinates (..., 9) of the polar form of lattices (..., 3, 3); x_0..x_2 are zero (up to rounding,
    which is removed)."""
    coords = algebra_to_gl3_coords(spd_log(lattice))
    coords[..., ROTATION] = 0.0
    return coords


def coords_to_lattice(coords: Tensor) -> Tensor:
    """exp(pi x) (..., 3, 3), differentiable: rows are lattice vectors in Angstrom."""
    return torch.linalg.matrix_exp(gl3_coords_to_algebra(coords))
