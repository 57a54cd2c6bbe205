"""GemsNet's lattice action (GemsDiff appendix A): invariant weights times the cell-gradients of invariants.

For an edge vector e (Cartesian, column convention) and a linear map A acting on space, the derivatives at A = I of

    r(A)        = |A e|                         ->  d r / d A     = e e^T / |e|
    theta(A)    = angle(A u, A v)               ->  d theta / d A = -(1 / sin theta) [ (v u^T + u v^T) / (|u| |v|)
                                                                    - cos theta (u u^T / |u|^2 + v v^T / |v|^2) ]

are the "vector fields" lambda of the paper. They are symmetric (an invariant does not change along rotations, the
antisymmetric directions), rotate as g lambda g^T under g in O(3) and do not change when the cell is re-tiled (the
edges are the same point pairs). The network's lattice update is Y = mean over triplets of sum_k w_k lambda_k, with
invariant weights w; tests/test_lattice_action.py checks these formulas against autograd.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: triplets whose angle is within this sine of 0 or 180 degrees get no angle field (its gradient is undefined there;
#: GemsDiff's code drops the NaN fields of such triplets)
MIN_SINE = 1e-4


def length_field(e: Tensor) -> Tensor:
    """d|A e| / dA at A = I for edge vectors e (..., 3): (..., 3, 3), in the units of e."""
    norm = e.norm(dim=-1).clamp(min=1e-12)
    return e.unsqueeze(-1) * e.unsqueeze(-2) / norm[..., None, None]


def angle_field(u: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
    """d angle(A u, A v) / dA at A = I for edge pairs (..., 3): ((..., 3, 3) dimensionless, valid (...,)).

    ``valid`` is False where the two edges are (anti)parallel; the field is zero there.
    """
    nu, nv = u.norm(dim=-1).clamp(min=1e-12), v.norm(dim=-1).clamp(min=1e-12)
    cos = ((u * v).sum(-1) / (nu * nv)).clamp(-1.0, 1.0)
    sin = torch.sqrt((1 - cos * cos).clamp(min=0.0))
    valid = sin > MIN_SINE
    outer_uv = u.unsqueeze(-1) * v.unsqueeze(-2)
    d_cos = (outer_uv + outer_uv.transpose(-1, -2)) / (nu * nv)[..., None, None] - cos[..., None, None] * (
        u.unsqueeze(-1) * u.unsqueeze(-2) / (nu * nu)[..., None, None]
        + v.unsqueeze(-1) * v.unsqueeze(-2) / (nv * nv)[..., None, None])
    scale = torch.where(valid, -1 / sin.clamp(min=MIN_SINE), torch.zeros_like(sin))
    return d_cos * scale[..., None, None], valid


def triplet_fields(e_ba: Tensor, e_ca: Tensor) -> Tensor:
    """The three fields of each triplet (T, 3, 3, 3): lengths of both edges and their angle (GemsDiff's
    "n_ij|n_ik|angle")."""
    angle, _ = angle_field(e_ba, e_ca)
    return torch.stack([length_field(e_ba), length_field(e_ca), angle], dim=1)
