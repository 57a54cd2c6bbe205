"""spd_log, the logarithm of a cell's polar form, and lattice_to_coords, its gl(3) coordinates: their gradients are
right, and finite where the metric's eigenvalues repeat (cubic, tetragonal, hexagonal cells), which ablation (a)
backpropagates through at every step."""

from __future__ import annotations

import torch

from crystalgen_gemsdiff.lattice_coords import MIN_SINGULAR, ROTATION, lattice_to_coords, spd_log


def test_gradient_matches_finite_differences_on_generic_cells():
    rng = torch.Generator().manual_seed(0)
    lattice = torch.randn(4, 3, 3, dtype=torch.float64, generator=rng) + 3 * torch.eye(3, dtype=torch.float64)
    assert torch.autograd.gradcheck(spd_log, (lattice.requires_grad_(True),))


def test_gradient_matches_finite_differences_at_repeated_eigenvalues():
    tetragonal = torch.diag(torch.tensor([3.0, 3.0, 5.0], dtype=torch.float64))
    assert torch.autograd.gradcheck(spd_log, (tetragonal.requires_grad_(True),))


def test_gradient_matches_finite_differences_where_a_singular_value_is_raised():
    """A raised eigenvalue no longer grows, but its eigenvector still turns with the cell: the divided differences
    must use the metric's own eigenvalues (with the raised ones the gradient was off by about floor / gap)."""
    thin = torch.diag(torch.tensor([3.0, 2.0, 0.03], dtype=torch.float64))
    thin[2, :2] = torch.tensor([0.2, -0.1], dtype=torch.float64)
    assert torch.linalg.svdvals(thin).min() < MIN_SINGULAR
    assert torch.autograd.gradcheck(lambda lattice: spd_log(lattice, MIN_SINGULAR), (thin.requires_grad_(True),))


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


def test_coordinates_gradient_matches_finite_differences_and_ignores_the_rotation_part():
    """lattice_to_coords zeroes x_0..x_2 in place on the output of the coordinate map: the gradient must still be
    that of the composition, with the rotation part contributing nothing (ablation (a) decodes through it), also for
    a cell whose small singular value is raised to MIN_SINGULAR."""
    rng = torch.Generator().manual_seed(3)
    cells = torch.randn(3, 3, 3, dtype=torch.float64, generator=rng) + 3 * torch.eye(3, dtype=torch.float64)
    cells[2, 2] = 0.01 * cells[2, 2]  # a thin cell: singular value far below MIN_SINGULAR
    assert torch.autograd.gradcheck(lambda lattice: lattice_to_coords(lattice, MIN_SINGULAR),
                                    (cells.requires_grad_(True),))
    weights = torch.zeros(9, dtype=torch.float64)
    weights[ROTATION] = 1.0
    (lattice_to_coords(cells, MIN_SINGULAR) * weights).sum().backward()
    assert cells.grad is not None
    assert torch.equal(cells.grad, torch.zeros_like(cells))
