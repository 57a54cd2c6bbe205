"""The lattice action's fields (appendix A) equal the autograd gradients of the invariants w.r.t. a linear map A
acting on space, at A = I; and they transform as the paper states."""

from __future__ import annotations

import torch

from crystalgen_gemsdiff.lattice_action import angle_field, length_field, triplet_fields


def autograd_gradient(invariant, *vectors: torch.Tensor) -> torch.Tensor:
    a = torch.eye(3, dtype=torch.float64, requires_grad=True)
    value = invariant(*(a @ v for v in vectors))
    (grad,) = torch.autograd.grad(value, a)
    return grad


def angle(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.atan2(torch.linalg.cross(u, v).norm(), u @ v)


def test_length_and_angle_fields_equal_autograd():
    rng = torch.Generator().manual_seed(0)
    for _ in range(20):
        u, v = torch.randn(2, 3, dtype=torch.float64, generator=rng) * 3
        assert torch.allclose(length_field(u), autograd_gradient(torch.linalg.norm, u), atol=1e-12)
        field, valid = angle_field(u, v)
        assert bool(valid)
        assert torch.allclose(field, autograd_gradient(angle, u, v), atol=1e-10)


def test_fields_are_symmetric_and_rotate_by_conjugation():
    rng = torch.Generator().manual_seed(1)
    u, v = torch.randn(2, 5, 3, dtype=torch.float64, generator=rng)
    fields = triplet_fields(u, v)
    assert torch.allclose(fields, fields.transpose(-1, -2), atol=1e-12)
    q, _ = torch.linalg.qr(torch.randn(3, 3, dtype=torch.float64, generator=rng))
    rotated = triplet_fields(u @ q.T, v @ q.T)
    assert torch.allclose(rotated, q @ fields @ q.T, atol=1e-10)


def test_parallel_edges_get_no_angle_field():
    u = torch.tensor([[1.0, 2.0, 0.5]], dtype=torch.float64)
    field, valid = angle_field(u, -2 * u)
    assert not bool(valid.any())
    assert bool((field == 0).all())
