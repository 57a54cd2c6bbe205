"""Minimum-image displacements: exact against a brute-force image search in skewed cells (where rounding the
fractional difference is wrong), periodicity, per-crystal lattices and gradients."""

from __future__ import annotations

import itertools

import numpy as np
import torch
from pymatgen.core import Lattice

from crystalgen.geometry import minimum_image


def skewed_lattices() -> torch.Tensor:
    reduced = [
        Lattice.from_parameters(3.0, 3.5, 4.0, 80, 95, 110).matrix,
        Lattice.from_parameters(2.5, 5.0, 7.5, 60, 70, 80).matrix,
    ]
    transforms = [np.array([[1, 3, 0], [0, 1, 2], [0, 0, 1]]), np.array([[1, 0, 0], [4, 1, 0], [2, 3, 1]])]
    return torch.tensor(np.stack([m @ cell for m, cell in zip(transforms, reduced)]))


def brute_force_lengths(frac_delta: torch.Tensor, lattice: torch.Tensor, span: int = 10) -> torch.Tensor:
    shifts = torch.tensor(list(itertools.product(range(-span, span + 1), repeat=3)), dtype=torch.float64)
    wrapped = frac_delta - torch.round(frac_delta)
    return torch.einsum("nsa,nab->nsb", wrapped[:, None, :] + shifts[None], lattice).norm(dim=-1).amin(dim=1)


def test_minimum_image_is_exact_where_rounding_is_not():
    # The skewed cells need shifts of up to ~8 cells beyond rounding: a +-6 search misses some, +-10 does not.
    lattice = skewed_lattices()
    num_atoms = torch.tensor([300, 300])
    delta = torch.rand(600, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 6 - 3
    rows_lattice = lattice[torch.repeat_interleave(torch.arange(2), num_atoms)]
    vec, shift = minimum_image(delta, lattice, num_atoms)
    expected = brute_force_lengths(delta, rows_lattice)
    torch.testing.assert_close(vec.norm(dim=-1), expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(vec, torch.einsum("na,nab->nb", delta + shift, rows_lattice))
    rounded = torch.einsum("na,nab->nb", delta - torch.round(delta), rows_lattice).norm(dim=-1)
    assert (rounded > expected + 1e-6).float().mean() > 0.2, "these cells should defeat plain rounding"


def test_minimum_image_is_periodic_and_agrees_with_rounding_in_a_cubic_cell():
    lattice = torch.eye(3, dtype=torch.float64)[None] * 4.0
    delta = torch.rand(50, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.98 - 0.49
    vec, shift = minimum_image(delta, lattice, torch.tensor([50]))
    torch.testing.assert_close(vec, 4.0 * delta)
    assert (shift == 0).all()
    wraps = torch.randint(-5, 6, delta.shape, generator=torch.Generator().manual_seed(2))
    moved, moved_shift = minimum_image(delta + wraps, lattice, torch.tensor([50]))
    torch.testing.assert_close(moved, vec)
    assert torch.equal(moved_shift, shift - wraps)


def test_minimum_image_gradients_match_finite_differences():
    lattice = skewed_lattices()
    delta = torch.rand(10, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    inputs = (delta.requires_grad_(), lattice.clone().requires_grad_())
    num_atoms = torch.tensor([4, 6])
    assert torch.autograd.gradcheck(lambda d, cell: minimum_image(d, cell, num_atoms)[0], inputs, fast_mode=True)


def test_minimum_image_keeps_float32_and_its_device():
    lattice = skewed_lattices().float()
    vec, shift = minimum_image(torch.full((3, 3), 0.7), lattice, torch.tensor([1, 2]))
    assert vec.dtype == torch.float32 and shift.dtype == torch.int64 and vec.device == lattice.device
