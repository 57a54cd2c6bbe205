"""Real principal logarithm of general (non-symmetric) 3x3 matrices, batched and differentiable.

Where it is defined: a real matrix A has a real *principal* logarithm (the one with eigenvalues' imaginary parts in
(-pi, pi)) exactly when no eigenvalue of A lies on the closed negative real axis. det A > 0 is necessary but not
sufficient: a cell rotated by 180 degrees has eigenvalues (-1, -1, 1) and det 1. Lattice matrices in pymatgen's
``from_parameters`` orientation always qualify (their eigenvalues are a sin(beta), b sin(alpha) sin(gamma*), c > 0);
a Niggli-reduced matrix kept in its original orientation often does not (about 60% of MP-20 test cells).

Method: inverse scaling and squaring (Higham, "Functions of Matrices", ch. 11), in real arithmetic. This is used
instead of an eigendecomposition because lattice matrices are often defective or have repeated eigenvalues (a cubic
cell is a multiple of I; a sheared cell is a Jordan block), where eig-based logs lose accuracy and their gradients
blow up. Steps: divide out det^(1/3) (log of a multiple of I is exact); take square roots (product-form
Denman-Beavers iteration) until ||A^(1/2^s) - I||_F <= 0.25; then log(I + X) = int_0^1 X (I + tX)^(-1) dt by 8-point
Gauss-Legendre quadrature (the [8/8] Pade approximant; error ~1e-20 at ||X|| = 0.25); finally multiply by 2^s.
Every step is a matmul, inverse or solve, so autograd differentiates it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

_GL_POINTS, _GL_WEIGHTS = np.polynomial.legendre.leggauss(8)
_NODES, _WEIGHTS = 0.5 * (_GL_POINTS + 1.0), 0.5 * _GL_WEIGHTS  # mapped from [-1, 1] to [0, 1]
_PADE_RADIUS = 0.25
_MAX_SQUARE_ROOTS = 64
_MAX_DB_ITERATIONS = 100
# Eigenvalues with real part <= 0 and |imag| below this fraction of their modulus count as on the negative axis.
_NEGATIVE_AXIS_TOL = 1e-6


def principal_log_validity(matrix: Tensor) -> Tensor:
    """(...,) bool: finite matrices (..., 3, 3) with no eigenvalue on the closed negative real axis."""
    m = matrix.detach().double()
    finite = torch.isfinite(m).all(-1).all(-1)
    safe = torch.where(finite.unsqueeze(-1).unsqueeze(-1), m, torch.eye(m.shape[-1], dtype=m.dtype, device=m.device))
    eig = torch.linalg.eigvals(safe)
    on_axis = (eig.real <= 0) & (eig.imag.abs() <= _NEGATIVE_AXIS_TOL * eig.abs())
    return finite & ~on_axis.any(-1) & (torch.linalg.det(safe) > 0)


def principal_logm(matrix: Tensor) -> Tensor:
    """The real principal logarithm of each matrix (..., n, n) (float32 or float64).

    Raises:
        ValueError: some matrix is non-finite, has det <= 0 or an eigenvalue on the negative real axis (names the
            batch index, its eigenvalues and the way out: rotate it, e.g. into the standard orientation).
    """
    valid = principal_log_validity(matrix)
    if not valid.all():
        flat = int(torch.nonzero(~valid.reshape(-1))[0])
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), valid.shape)) if valid.dim() > 1 else flat
        m = matrix.detach().double().reshape(-1, *matrix.shape[-2:])[flat]
        eig = torch.linalg.eigvals(m) if torch.isfinite(m).all() else "non-finite matrix"
        raise ValueError(
            f"principal_logm: matrix {index} has no real principal logarithm (det {torch.linalg.det(m):.4g}, "
            f"eigenvalues {eig}); it needs det > 0 and no eigenvalue on the negative real axis. For a lattice, rotate "
            f"it into the standard orientation (crystalgen.geometry.lattice.standard_orientation) first"
        )
    n = matrix.shape[-1]
    eye = torch.eye(n, dtype=matrix.dtype, device=matrix.device)
    log_scale = torch.log(torch.linalg.det(matrix)) / n
    x = matrix * torch.exp(-log_scale)[..., None, None]
    roots = torch.zeros(matrix.shape[:-2], dtype=matrix.dtype, device=matrix.device)
    for _ in range(_MAX_SQUARE_ROOTS):
        needs_root = torch.linalg.matrix_norm(x.detach() - eye) > _PADE_RADIUS
        if not needs_root.any():
            break
        x = torch.where(needs_root[..., None, None], _sqrtm_denman_beavers(x), x)
        roots = roots + needs_root.to(roots.dtype)
    else:
        raise ValueError("principal_logm: square roots did not approach the identity; the matrix is too ill-conditioned")
    return torch.exp2(roots)[..., None, None] * _log_near_identity(x - eye) + log_scale[..., None, None] * eye


def _sqrtm_denman_beavers(a: Tensor) -> Tensor:
    """Principal square root by the product-form Denman-Beavers iteration (quadratic convergence)."""
    eye = torch.eye(a.shape[-1], dtype=a.dtype, device=a.device)
    tol = 100 * torch.finfo(a.dtype).eps
    m, y = a, a
    for _ in range(_MAX_DB_ITERATIONS):
        m_inv = torch.linalg.inv(m)
        y = 0.5 * y @ (eye + m_inv)
        m = 0.5 * (eye + 0.5 * (m + m_inv))
        if (m.detach() - eye).abs().amax() <= tol:
            return y
    raise ValueError("principal_logm: the Denman-Beavers square root did not converge; the matrix is too ill-conditioned")


def _log_near_identity(x: Tensor) -> Tensor:
    """log(I + X) for ||X|| <= 0.25 by Gauss-Legendre quadrature of int_0^1 X (I + tX)^(-1) dt."""
    eye = torch.eye(x.shape[-1], dtype=x.dtype, device=x.device)
    out = torch.zeros_like(x)
    for t, w in zip(_NODES.tolist(), _WEIGHTS.tolist()):
        out = out + w * torch.linalg.solve(eye + t * x, x)
    return out
