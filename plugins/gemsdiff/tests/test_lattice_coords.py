"""spd_log, the logarithm of a cell's polar form: its gradient is right, and finite where the metric's eigenvalues
repeat (cubic, tetragonal, hexagonal cells), which ablation (a) backpropagates through at every step."""

from __future__ import annotations

import torch

from crystalgen_gemsdiff.lattice_coords import spd_log


def test_gradient_matches_finite_differences_on_generic_cells():
    rng = torch.Generator().manual_seed(0)
    lattice = torch.randn(4, 3, 3, dtype=torch.float64, generator=rng) + 3 * torch.eye(3, dtype=torch.float64)
    assert torch.autograd.gradcheck(spd_log, (lattice.requires_grad_(True),))


def test_gradient_matches_finite_differences_at_repeated_eigenvalues():
    tetragonal = torch.diag(torch.tensor([3.0, 3.0, 5.0], dtype=torch.float64))
    assert torch.autograd.gradcheck(spd_log, (tetragonal.requires_grad_(True),))


def test_gradient_at_a_cubic_cell_by_hand():
    """At L = c I, d log((L L^T)^(1/2)) = (dL + dL^T) / (2c), so the gradient of sum(W o spd_log(L)) is
    (W + W^T) / (2c); torch.linalg.eigh's own gradient is NaN there (it divides by eigenvalue gaps)."""
    c = 4.0
    weights = torch.randn(3, 3, generator=torch.Generator().manual_seed(1))
    for dtype in (torch.float32, torch.float64):
        lattice = (c * torch.eye(3, dtype=dtype)).requires_grad_(True)
        (spd_log(lattice) * weights.to(dtype)).sum().backward()
        assert lattice.grad is not None
        assert torch.allclose(lattice.grad, (weights + weights.T).to(dtype) / (2 * c), atol=1e-6)


def test_value_is_the_log_of_the_polar_form():
    rng = torch.Generator().manual_seed(2)
    lattice = torch.randn(3, 3, dtype=torch.float64, generator=rng) + 2 * torch.eye(3, dtype=torch.float64)
    polar = torch.linalg.matrix_exp(spd_log(lattice))
    assert torch.allclose(polar @ polar, lattice @ lattice.T, atol=1e-10)
    assert torch.allclose(polar, polar.T, atol=1e-12)
