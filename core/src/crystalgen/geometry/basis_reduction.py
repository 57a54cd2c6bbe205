"""Pairwise (Lagrange) reduction of lattice bases, batched in torch: the same lattice on shorter, more orthogonal
vectors.

A neighbour search over periodic images needs about radius / face height images per axis, so a skewed basis of an
ordinary lattice (as a diffusion model's noisy cells often are) can need millions of images where a reduced basis of
the same lattice needs a few. Re-tiling does not change the crystal (the point set), so a search may run on the
reduced basis and report its offsets in the original one.

Each step replaces b_i by b_i - round(<b_i, b_j> / <b_j, b_j>) b_j for a pair i != j, which strictly shortens b_i
whenever the rounded ratio is not zero; when no step applies, every pair is Lagrange-reduced,
|<b_i, b_j>| <= |b_j|^2 / 2 (weaker than Minkowski's reduction in 3D, ample for a neighbour search).
"""

from __future__ import annotations

import torch
from torch import Tensor

MAX_SWEEPS = 1000


def reduce_basis(lattice: Tensor) -> tuple[Tensor, Tensor]:
    """(reduced (B, 3, 3), transform (B, 3, 3) int64) with reduced = transform @ lattice, det(transform) = +-1.

    lattice (B, 3, 3): rows are lattice vectors (any length unit), computed in float64. Fractional coordinates in
    the reduced basis are frac @ inverse(transform); an image offset t in it is t @ transform in the original one.
    """
    basis = lattice.detach().to(torch.float64).clone()
    transform = torch.eye(3, dtype=torch.float64, device=lattice.device).repeat(basis.shape[0], 1, 1)
    for _ in range(MAX_SWEEPS):
        changed = torch.zeros(basis.shape[0], dtype=torch.bool, device=basis.device)
        for i in range(3):
            for j in range(3):
                if i == j:
                    continue
                norm = (basis[:, j] * basis[:, j]).sum(-1)
                mu = torch.round((basis[:, i] * basis[:, j]).sum(-1) / norm.clamp(min=1e-300))
                mu = torch.where(torch.isfinite(mu), mu, torch.zeros_like(mu))
                basis[:, i] -= mu.unsqueeze(-1) * basis[:, j]
                transform[:, i] -= mu.unsqueeze(-1) * transform[:, j]
                changed |= mu != 0
        if not bool(changed.any()):
            break
    return basis.to(lattice.dtype), transform.round().to(torch.long)
