"""SymmCD's log-symmetric lattice form k: basis, round trips, space-group masks on real crystals of every system,
the official code's conversion bug, and gradients at repeated eigenvalues."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from lattice_samples import SYSTEMS, random_params, random_rotations, standard_cells

from crystalgen.geometry.lattice import InvalidLatticeError, lattice_matrix_to_params, lattice_params_to_matrix
from crystalgen.geometry.log_lattice import (
    HEXAGONAL_K1,
    apply_k_mask,
    crystal_system,
    k_to_lattice,
    lattice_to_k,
    log_lattice_basis,
    space_group_k_mask,
    space_group_k_masks,
)
from crystalgen.geometry.symmetric_matrix import symmetric_expm, symmetric_logm


def params_of(lattice: torch.Tensor) -> torch.Tensor:
    return torch.cat(lattice_matrix_to_params(lattice), -1)


def test_basis_is_the_papers_unnormalised_orthogonal_basis():
    basis = log_lattice_basis()
    assert torch.equal(basis[4], torch.diag(torch.tensor([1.0, 1.0, -2.0], dtype=torch.float64)))
    assert torch.equal(basis[0], torch.tensor([[0.0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=torch.float64))
    assert torch.equal(basis, basis.transpose(-1, -2))
    gram = torch.einsum("ijk,ljk->il", basis, basis)
    torch.testing.assert_close(gram, torch.diag(torch.tensor([2.0, 2, 2, 2, 6, 3], dtype=torch.float64)))


def test_k_round_trip_and_canonical_symmetric_orientation():
    k = torch.randn(200, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.3
    k[:, 5] += 1.7  # ln(V)/3 of a typical cell
    lattice = k_to_lattice(k)
    torch.testing.assert_close(lattice, lattice.transpose(-1, -2))
    assert (torch.linalg.eigvalsh(lattice) > 0).all()
    torch.testing.assert_close(lattice_to_k(lattice), k, atol=1e-10, rtol=0)
    torch.testing.assert_close(torch.linalg.det(lattice), torch.exp(3 * k[:, 5]))  # only B_6 has a trace


def test_lattice_round_trip_keeps_gram_matrix_and_parameters_of_rotated_and_mirrored_cells():
    lengths, angles = random_params(100, seed=10)
    lattice = lattice_params_to_matrix(lengths, angles) @ random_rotations(100, seed=11).transpose(-1, -2)
    lattice[::3, 1] *= -1  # some left-handed cells
    rebuilt = k_to_lattice(lattice_to_k(lattice))
    torch.testing.assert_close(rebuilt @ rebuilt.transpose(-1, -2), lattice @ lattice.transpose(-1, -2), atol=1e-9, rtol=1e-12)
    torch.testing.assert_close(params_of(rebuilt), params_of(lattice), atol=1e-8, rtol=0)
    assert (torch.linalg.det(rebuilt) > 0).all()


def test_float32_round_trip():
    lengths, angles = random_params(50, seed=12)
    lattice = lattice_params_to_matrix(lengths, angles).float()
    k = lattice_to_k(lattice)
    assert k.dtype == torch.float32
    torch.testing.assert_close(params_of(k_to_lattice(k)).double(), params_of(lattice.double()), atol=2e-3, rtol=1e-4)


def test_hexagonal_offset_gives_gamma_120_by_hand():
    # cos(gamma) = tanh(2 k1) = -1/2 for k1 = -ln(3)/4
    assert math.isclose(math.tanh(2 * HEXAGONAL_K1), -0.5, abs_tol=1e-15)
    lattice = k_to_lattice(torch.tensor([HEXAGONAL_K1, 0, 0, 0, 0.1, 1.2], dtype=torch.float64))
    a, b, c, alpha, beta, gamma = params_of(lattice).tolist()
    assert math.isclose(a, b, rel_tol=1e-12) and math.isclose(gamma, 120.0, abs_tol=1e-10)
    assert math.isclose(alpha, 90.0, abs_tol=1e-10) and math.isclose(beta, 90.0, abs_tol=1e-10)
    # |a| = e^(k5+k6) sqrt(cosh^2 k1 + sinh^2 k1) = e^(k5+k6) sqrt(cosh 2k1) and c = e^(k6-2k5)
    expected_c_over_a = math.exp(-3 * 0.1) / math.sqrt(math.cosh(2 * HEXAGONAL_K1))
    assert math.isclose(c / a, expected_c_over_a, rel_tol=1e-12)


def test_monoclinic_cell_is_exact_unlike_the_official_codes_projection_of_logm_L():
    """Implementation notes: the official code projects logm(L) of the raw pymatgen matrix; a=3, b=4, c=5, beta=100
    then comes back with beta = 98.0 and a = 2.974. S = 1/2 logm(L L^T) is exact."""
    lattice = lattice_params_to_matrix(torch.tensor([3.0, 4.0, 5.0], dtype=torch.float64), torch.tensor([90.0, 100.0, 90.0], dtype=torch.float64))
    ours = params_of(k_to_lattice(lattice_to_k(lattice)))
    torch.testing.assert_close(ours, torch.tensor([3.0, 4.0, 5.0, 90.0, 100.0, 90.0], dtype=torch.float64), atol=1e-10, rtol=0)

    basis = log_lattice_basis()
    log_l = torch.tensor(scipy.linalg.logm(lattice.numpy()).real)
    official_k = torch.einsum("jk,ijk->i", log_l, basis) / (basis * basis).sum((-1, -2))
    official = params_of(k_to_lattice(official_k))
    assert abs(float(official[4]) - 98.0) < 0.1 and abs(float(official[0]) - 2.974) < 1e-3


def test_space_group_masks_per_crystal_system():
    expected_free = {
        1: [1, 1, 1, 1, 1, 1], 2: [1, 1, 1, 1, 1, 1],
        3: [0, 1, 0, 1, 1, 1], 15: [0, 1, 0, 1, 1, 1],
        16: [0, 0, 0, 1, 1, 1], 74: [0, 0, 0, 1, 1, 1],
        75: [0, 0, 0, 0, 1, 1], 142: [0, 0, 0, 0, 1, 1],
        143: [0, 0, 0, 0, 1, 1], 167: [0, 0, 0, 0, 1, 1], 168: [0, 0, 0, 0, 1, 1], 194: [0, 0, 0, 0, 1, 1],
        195: [0, 0, 0, 0, 0, 1], 230: [0, 0, 0, 0, 0, 1],
    }  # fmt: skip
    for space_group, free in expected_free.items():
        mask, fill = space_group_k_mask(space_group)
        assert mask.tolist() == [bool(f) for f in free], space_group
        assert fill[0] == (HEXAGONAL_K1 if 143 <= space_group <= 194 else 0.0) and (fill[1:] == 0).all()
    groups = torch.arange(1, 231)
    masks, fills = space_group_k_masks(groups, dtype=torch.float32)
    assert fills.dtype == torch.float32 and masks.shape == (230, 6)
    for sg in (1, 5, 60, 100, 150, 180, 200):
        assert torch.equal(masks[sg - 1], space_group_k_mask(sg)[0])
    for bad in (0, 231):
        with pytest.raises(ValueError, match="1..230"):
            space_group_k_mask(bad)
    with pytest.raises(ValueError, match="got 231"):
        space_group_k_masks(torch.tensor([5, 231]))


CONSTRAINTS = {  # which lattice parameters must be equal or fixed, per crystal system
    "triclinic": lambda p: [],
    "monoclinic": lambda p: [p[3] - 90, p[5] - 90],
    "orthorhombic": lambda p: [p[3] - 90, p[4] - 90, p[5] - 90],
    "tetragonal": lambda p: [p[0] - p[1], p[3] - 90, p[4] - 90, p[5] - 90],
    "trigonal": lambda p: [p[0] - p[1], p[3] - 90, p[4] - 90, p[5] - 120],
    "hexagonal": lambda p: [p[0] - p[1], p[3] - 90, p[4] - 90, p[5] - 120],
    "cubic": lambda p: [p[0] - p[1], p[1] - p[2], p[3] - 90, p[4] - 90, p[5] - 90],
}
SYSTEM_GROUP = {"triclinic": 2, "monoclinic": 14, "orthorhombic": 62, "tetragonal": 139, "trigonal": 166, "hexagonal": 194, "cubic": 225}


@pytest.mark.parametrize("system", SYSTEMS)
def test_masked_random_k_satisfies_the_crystal_system_constraints(system):
    mask, fill = space_group_k_mask(SYSTEM_GROUP[system])
    k = apply_k_mask(torch.randn(100, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 0.4, mask, fill)
    params = params_of(k_to_lattice(k))
    deviations = torch.tensor([CONSTRAINTS[system](p) for p in params.tolist()])
    assert deviations.numel() == 0 or deviations.abs().max() < 1e-8
    if system == "triclinic":  # nothing forced: the angles really vary
        assert params[:, 3:].std(0).min() > 1.0


@pytest.mark.data
def test_real_crystals_masked_k_rebuilds_the_lattice_for_every_crystal_system():
    cells = standard_cells()
    lattices = torch.tensor(np.stack([s.lattice.matrix for *_, s in cells]))
    groups = torch.tensor([sg for _, _, sg, _ in cells])
    k = lattice_to_k(lattices)
    mask, fill = space_group_k_masks(groups)
    # constrained entries of the data's own k already sit at the fill value (spglib-refined cells are exact) ...
    assert (k - fill)[~mask].abs().max() < 1e-6
    # ... so the masked k rebuilds every lattice: same parameters (and Gram matrix) as the crystal
    rebuilt = k_to_lattice(apply_k_mask(k, mask, fill))
    torch.testing.assert_close(params_of(rebuilt), params_of(lattices), atol=1e-5, rtol=1e-6)
    gram = lattices @ lattices.transpose(-1, -2)
    torch.testing.assert_close(rebuilt @ rebuilt.transpose(-1, -2), gram, atol=1e-5, rtol=1e-6)
    systems = [crystal_system(int(g)) for g in groups]
    for system, p in zip(systems, params_of(rebuilt).tolist()):
        assert all(abs(d) < 1e-4 for d in CONSTRAINTS[system](p)), (system, p)
    assert set(systems) == set(SYSTEMS)


def test_gradients_finite_and_exact_at_repeated_eigenvalues():
    # a cubic cell: every eigenvalue of S (and of L L^T) is the same, where eigh's own backward gives NaN
    k = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.0, 1.5], dtype=torch.float64, requires_grad=True)
    weights = torch.randn(3, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    (k_to_lattice(k) * weights).sum().backward()
    k_ref = k.detach().clone().requires_grad_()
    (torch.linalg.matrix_exp(torch.einsum("i,ijk->jk", k_ref, log_lattice_basis())) * weights).sum().backward()
    torch.testing.assert_close(k.grad, k_ref.grad)

    lattice = (4.0 * torch.eye(3, dtype=torch.float64)).requires_grad_()
    lattice_to_k(lattice).sum().backward()
    assert torch.isfinite(lattice.grad).all()


def test_symmetric_matrix_functions_gradcheck_including_degenerate_spectra():
    def symmetric(x: torch.Tensor) -> torch.Tensor:
        return x + x.transpose(-1, -2)

    generator = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 3, generator=generator, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m: symmetric_expm(symmetric(m)), (x,))
    assert torch.autograd.gradcheck(lambda m: symmetric_logm(symmetric_expm(symmetric(m))), (x,))
    degenerate = torch.diag(torch.tensor([0.7, 0.7, 0.7], dtype=torch.float64)).div(2).requires_grad_()
    assert torch.autograd.gradcheck(lambda m: symmetric_expm(symmetric(m)), (degenerate,))
    assert torch.autograd.gradcheck(lambda m: symmetric_logm(symmetric(m)), (degenerate,))
    s = symmetric(x.detach())
    torch.testing.assert_close(symmetric_logm(symmetric_expm(s)), s, atol=1e-10, rtol=0)
    np.testing.assert_allclose(symmetric_expm(s).numpy(), np.stack([scipy.linalg.expm(m) for m in s.numpy()]), rtol=1e-12)


def test_clear_errors_on_degenerate_input():
    lattices = torch.stack([torch.eye(3, dtype=torch.float64), torch.tensor([[1.0, 0, 0], [2.0, 0, 0], [0, 0, 1]], dtype=torch.float64)])
    with pytest.raises(InvalidLatticeError, match=r"lattice_to_k: crystal 1: lattice vectors"):
        lattice_to_k(lattices)
    with pytest.raises(ValueError, match="matrix 1 is not positive definite"):
        symmetric_logm(torch.stack([torch.eye(3), -torch.eye(3)]))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 6\)"):
        k_to_lattice(torch.zeros(4, 5))


def test_non_finite_k_is_named_or_masked():
    k = torch.zeros(4, 6)
    k[1, 2] = float("nan")
    k[3, 5] = 100.0  # exp(100) overflows float32
    with pytest.raises(InvalidLatticeError, match=r"k_to_lattice: crystal 1: k = \(0, 0, nan, 0, 0, 0\) gives no finite cell \(1 more"):
        k_to_lattice(k)
    lattice, valid = k_to_lattice(k.requires_grad_(), strict=False)
    assert valid.tolist() == [True, False, True, False]
    assert torch.isnan(lattice[[1, 3]]).all() and torch.equal(lattice[0].detach(), torch.eye(3))
    lattice[valid].sum().backward()
    assert torch.isfinite(k.grad).all()
