"""The lattice as 9 gl(3) coordinates (GemsDiff section 4.2 and appendix B), in a rotation-free form.

A crystal does not change when it is rotated, so each lattice is represented by the one of its rotations that is a
symmetric positive definite matrix, P = (L L^T)^(1/2) (the polar factor; L rows = lattice vectors, Angstrom): P has
the lengths and angles of L, and log P is symmetric, so its coordinates in the paper's basis have a zero rotation
part (x_0..x_2). GemsDiff's code instead zeroes those three coordinates of log L, which for a non-symmetric L changes
the cell's shape; the polar form makes zero rotation exact. The core's basis (``crystalgen.gl3_basis``) is the
paper's, pi_8 = lambda I with lambda = 0.25 / sqrt(3).

Ablation (d) of Table 4 diffuses the 9 entries of the polar form P itself instead (``model.lattice_space: matrix``);
``matrix_to_coords`` and ``coords_to_matrix`` carry such a cell to and from the coordinates the denoiser reads and
predicts.
"""

from __future__ import annotations

import torch
from torch import Tensor

from crystalgen import algebra_to_gl3_coords, gl3_coords_to_algebra

#: the so(3) coordinates, kept at zero throughout (GemsDiff's code puts no noise on them either)
ROTATION = slice(0, 3)


class _MetricLog(torch.autograd.Function):
    """log M of symmetric positive definite matrices M (..., 3, 3), eigenvalues raised to ``floor`` first, with a
    gradient that stays finite when eigenvalues repeat (cubic, tetragonal, hexagonal cells). The gradient of
    ``torch.linalg.eigh`` divides by eigenvalue gaps and is NaN there; the derivative of a matrix function f is
    V (K o (V^T G V)) V^T with K_ij the divided difference (f(l_i) - f(l_j)) / (l_i - l_j) over the eigenvalues l of M
    as they are (raising one does not stop its eigenvector turning), whose limit for l_i = l_j is f'(l_i)
    (Daleckii-Krein): 1 / l_i, or 0 for a raised eigenvalue, so the gaps never need dividing by."""

    @staticmethod
    def forward(ctx, metric: Tensor, floor: float) -> Tensor:
        values, vectors = torch.linalg.eigh(metric)
        logs = values.clamp(min=floor).log()
        ctx.save_for_backward(values, logs, vectors, values > floor)
        return (vectors * logs.unsqueeze(-2)) @ vectors.transpose(-1, -2)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        values, logs, vectors, free = ctx.saved_tensors
        gap = values.unsqueeze(-1) - values.unsqueeze(-2)
        mean = (values.unsqueeze(-1) + values.unsqueeze(-2)) / 2
        close = gap.abs() <= 1e-4 * mean.abs()  # the divided difference is then 1/mean to a relative 1e-9
        divided = (logs.unsqueeze(-1) - logs.unsqueeze(-2)) / torch.where(close, torch.ones_like(gap), gap)
        both_free = free.unsqueeze(-1) & free.unsqueeze(-2)  # f' is 0 below the floor
        kernel = torch.where(close, torch.where(both_free, 1.0 / mean, torch.zeros_like(mean)), divided)
        symmetric = (grad + grad.transpose(-1, -2)) / 2
        inner = vectors.transpose(-1, -2) @ symmetric @ vectors
        return vectors @ (kernel * inner) @ vectors.transpose(-1, -2), None


def spd_log(lattice: Tensor, min_singular: float = 0.0) -> Tensor:
    """log P = log(L L^T) / 2 (..., 3, 3) for lattices (..., 3, 3), by the eigendecomposition of the metric. The
    singular values of L (square roots of the metric's eigenvalues) are first raised to ``min_singular`` (Angstrom).
    Differentiable also where the metric has repeated eigenvalues (``_MetricLog``): ablation (a) backpropagates
    through it, and eigh's own gradient made its training loss NaN in a short run on MP-20."""
    metric = lattice @ lattice.transpose(-1, -2)
    return 0.5 * _MetricLog.apply(metric, max(min_singular**2, 1e-30))


def lattice_to_coords(lattice: Tensor, min_singular: float = 0.0) -> Tensor:
    """gl(3) coordinates (..., 9) of the polar form of lattices (..., 3, 3); x_0..x_2 are zero (up to rounding,
    which is removed). ``min_singular``: see :func:`spd_log`."""
    coords = algebra_to_gl3_coords(spd_log(lattice, min_singular))
    coords[..., ROTATION] = 0.0
    return coords


def coords_to_lattice(coords: Tensor) -> Tensor:
    """exp(pi x) (..., 3, 3), differentiable: rows are lattice vectors in Angstrom."""
    return torch.linalg.matrix_exp(gl3_coords_to_algebra(coords))


#: smallest singular value (Angstrom) of the cell the encoder sees when the lattice is diffused as a matrix
#: (ablation (d)): noisy matrices can be singular or left-handed, and a cell of zero volume has no neighbour images
#: the kNN search could list. 0.1 A is far below any real cell's (MP-20: 2 A and more) and keeps the image search of a
#: 20-atom cell to a few hundred images.
MIN_SINGULAR = 0.1


def matrix_to_coords(entries: Tensor) -> Tensor:
    """gl(3) coordinates (..., 9) of a cell given by its 9 row-major matrix entries (..., 9), for the denoiser: the
    polar form (L L^T)^(1/2), which has the lengths and angles of L and is right-handed also when L is a reflection,
    with singular values raised to MIN_SINGULAR."""
    return lattice_to_coords(entries.reshape(*entries.shape[:-1], 3, 3).double(), MIN_SINGULAR).to(entries.dtype)


def coords_to_matrix(coords: Tensor) -> Tensor:
    """The 9 row-major entries (..., 9) of exp(pi x), differentiable."""
    return coords_to_lattice(coords).flatten(-2)
