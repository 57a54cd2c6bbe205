"""Exponential and logarithm of real symmetric matrices by eigendecomposition, with a stable gradient.

Why not plain autograd through ``torch.linalg.eigh``: its backward divides by eigenvalue gaps, so it returns
inf/NaN whenever two eigenvalues coincide, which is the normal case for lattices (a cubic cell's Gram matrix has
one triple eigenvalue). Here the backward uses the Daleckii-Krein formula instead: for f(A) = U f(Lambda) U^T,
the adjoint of the Frechet derivative is  grad_A = U (D o (U^T G U)) U^T  with the divided differences
D_ij = (f(l_i) - f(l_j)) / (l_i - l_j)  (and f'(l_i) on coinciding eigenvalues), which stays finite because the
quotients are evaluated in closed, cancellation-free forms. Inputs are (..., n, n) and must be symmetric
(only the lower triangle is read, as by ``eigh``); outputs are symmetrised. Second derivatives are not provided.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

# Below this |x| the Taylor series of sinh(x)/x and atanh(x)/x is exact to double precision (error ~x^6/5040).
_SERIES_CUTOFF = 1e-3


def symmetric_expm(matrix: Tensor) -> Tensor:
    """exp(A) for symmetric A (..., n, n); the result is symmetric positive definite."""
    return _SymmetricMatrixFunction.apply(matrix, "exp")


def symmetric_logm(matrix: Tensor) -> Tensor:
    """The symmetric logarithm of a symmetric positive-definite A (..., n, n).

    Raises:
        ValueError: some matrix has a non-positive or non-finite eigenvalue (names the batch index).
    """
    return _SymmetricMatrixFunction.apply(matrix, "log")


def _sym(m: Tensor) -> Tensor:
    return 0.5 * (m + m.transpose(-1, -2))


def _exp_divided_differences(lam: Tensor) -> Tensor:
    # (e^a - e^b)/(a - b) = e^((a+b)/2) * sinh(d)/d with d = (a-b)/2: no cancellation when a ~ b.
    a, b = lam.unsqueeze(-1), lam.unsqueeze(-2)
    d = 0.5 * (a - b)
    small = d.abs() < _SERIES_CUTOFF
    safe_d = torch.where(small, torch.ones_like(d), d)
    sinhc = torch.where(small, 1.0 + d * d / 6.0 + d**4 / 120.0, torch.sinh(safe_d) / safe_d)
    return torch.exp(0.5 * (a + b)) * sinhc


def _log_divided_differences(lam: Tensor) -> Tensor:
    # (log a - log b)/(a - b) = 2 atanh(r) / (r (a + b)) with r = (a-b)/(a+b), |r| < 1 for a, b > 0.
    a, b = lam.unsqueeze(-1), lam.unsqueeze(-2)
    total = a + b
    r = (a - b) / total
    small = r.abs() < _SERIES_CUTOFF
    safe_r = torch.where(small, torch.full_like(r, 0.5), r)
    atanhc = torch.where(small, 1.0 + r * r / 3.0 + r**4 / 5.0, torch.atanh(safe_r) / safe_r)
    return 2.0 * atanhc / total


def _check_positive(lam: Tensor) -> None:
    bad = ~(torch.isfinite(lam).all(-1) & (lam > 0).all(-1))
    if bad.any():
        index = tuple(int(i) for i in torch.nonzero(bad)[0])
        where = index[0] if len(index) == 1 else index
        raise ValueError(
            f"symmetric_logm: matrix {where} is not positive definite (eigenvalues {lam[index].tolist()}); "
            f"{int(bad.sum())} such matrices in the batch"
        )


class _SymmetricMatrixFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, matrix: Tensor, kind: str) -> Tensor:
        lam, vectors = torch.linalg.eigh(matrix)
        if kind == "log":
            _check_positive(lam)
            values = torch.log(lam)
        else:
            values = torch.exp(lam)
        ctx.kind = kind
        ctx.save_for_backward(lam, vectors)
        return _sym((vectors * values.unsqueeze(-2)) @ vectors.transpose(-1, -2))

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        lam, vectors = ctx.saved_tensors
        divided = _exp_divided_differences(lam) if ctx.kind == "exp" else _log_divided_differences(lam)
        inner = vectors.transpose(-1, -2) @ _sym(grad) @ vectors
        return vectors @ (divided * inner) @ vectors.transpose(-1, -2), None
