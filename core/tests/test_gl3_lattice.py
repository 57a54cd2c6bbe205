"""GemsDiff's gl(3) lattice coordinates: the basis of App. B, coordinates <-> algebra <-> lattice round trips on real
and synthetic cells, the volume coordinate, the principal logarithm's accuracy, domain errors and gradients."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from lattice_samples import random_params, standard_cells

from crystalgen.geometry.gl3_lattice import (
    GL3_LAMBDA,
    ROTATION_COORDS,
    algebra_to_gl3_coords,
    gl3_basis,
    gl3_coords_to_algebra,
    gl3_coords_to_lattice,
    lattice_to_gl3_coords,
    lattice_volume_from_gl3,
)
from crystalgen.geometry.lattice import InvalidLatticeError, lattice_params_to_matrix, standard_orientation
from crystalgen.geometry.principal_log import principal_logm


def test_basis_is_the_papers():
    basis = gl3_basis()
    assert math.isclose(GL3_LAMBDA, 0.25 / math.sqrt(3))
    torch.testing.assert_close(basis[8], GL3_LAMBDA * torch.eye(3, dtype=torch.float64))
    torch.testing.assert_close(basis[0], torch.tensor([[0.0, 1, 0], [-1, 0, 0], [0, 0, 0]], dtype=torch.float64))
    torch.testing.assert_close(basis[7], torch.diag(torch.tensor([0.0, 1, -1], dtype=torch.float64)))
    torch.testing.assert_close(basis[:3], -basis[:3].transpose(-1, -2))  # so(3): orientation
    torch.testing.assert_close(basis[3:], basis[3:].transpose(-1, -2))
    assert (torch.diagonal(basis[:8], dim1=-2, dim2=-1).sum(-1) == 0).all()  # only pi_8 changes the volume
    assert torch.linalg.matrix_rank(basis.reshape(9, 9)) == 9


def test_coordinates_algebra_round_trips():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(50, 9, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(algebra_to_gl3_coords(gl3_coords_to_algebra(x)), x)
    g = torch.randn(50, 3, 3, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(gl3_coords_to_algebra(algebra_to_gl3_coords(g)), g)
    # a hand-checked element: 2 pi_6 + 3 pi_7 = diag(2, 1, -3)
    x = torch.zeros(9, dtype=torch.float64)
    x[6], x[7] = 2.0, 3.0
    torch.testing.assert_close(gl3_coords_to_algebra(x), torch.diag(torch.tensor([2.0, 1.0, -3.0], dtype=torch.float64)))


def test_volume_coordinate():
    x = torch.randn(20, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    volume = torch.linalg.det(gl3_coords_to_lattice(x))
    torch.testing.assert_close(volume, lattice_volume_from_gl3(x))
    torch.testing.assert_close(volume, torch.exp(3 * GL3_LAMBDA * x[:, 8]))


def test_lattice_round_trip_on_synthetic_cells_float64_and_float32():
    lattice = lattice_params_to_matrix(*random_params(200, seed=2))
    x = lattice_to_gl3_coords(lattice)
    torch.testing.assert_close(gl3_coords_to_lattice(x), lattice, atol=1e-10, rtol=1e-12)
    x32 = lattice_to_gl3_coords(lattice.float())
    assert x32.dtype == torch.float32
    torch.testing.assert_close(gl3_coords_to_lattice(x32).double(), lattice, atol=1e-4, rtol=1e-5)


def test_coordinates_round_trip_when_the_log_is_principal():
    x = torch.randn(200, 9, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x[:, ROTATION_COORDS] *= 0.5  # rotation angle well below pi, so log(exp(g)) = g
    x[:, 8] += 9.0
    torch.testing.assert_close(lattice_to_gl3_coords(gl3_coords_to_lattice(x)), x, atol=1e-9, rtol=1e-10)


@pytest.mark.data
def test_real_crystals_of_every_system_round_trip():
    cells = standard_cells()
    lattice = torch.tensor(np.stack([s.lattice.matrix for *_, s in cells]))
    torch.testing.assert_close(gl3_coords_to_lattice(lattice_to_gl3_coords(lattice)), lattice, atol=1e-9, rtol=1e-12)
    oriented = standard_orientation(lattice)  # the orientation a CIF gives: always in the log's domain
    torch.testing.assert_close(gl3_coords_to_lattice(lattice_to_gl3_coords(oriented)), oriented, atol=1e-9, rtol=1e-12)


def test_principal_log_matches_scipy_including_defective_and_scalar_matrices():
    generator = torch.Generator().manual_seed(5)
    # general non-symmetric matrices inside the domain (exp of something with small imaginary eigenvalue parts)
    matrices = 3.0 * torch.linalg.matrix_exp(0.6 * torch.randn(100, 3, 3, generator=generator, dtype=torch.float64))
    shear = torch.tensor([[5.0, 5.0, 0.0], [0.0, 5.0, 0.0], [0.0, 0.0, 5.0]], dtype=torch.float64)  # a Jordan block
    rotated = torch.tensor(scipy.linalg.expm(np.array([[0, 2.5, 0], [-2.5, 0, 0], [0, 0, 0.3]])))  # angle 2.5 rad
    matrices = torch.cat([matrices, shear[None], 7.0 * torch.eye(3, dtype=torch.float64)[None], rotated[None]])
    ours = principal_logm(matrices)
    torch.testing.assert_close(torch.linalg.matrix_exp(ours), matrices, atol=1e-11, rtol=1e-12)
    picked = list(range(12)) + [-3, -2, -1]  # scipy's logm takes ~0.1 s per matrix here
    expected = np.stack([scipy.linalg.logm(m).real for m in matrices[picked].numpy()])
    np.testing.assert_allclose(ours[picked].numpy(), expected, atol=1e-11)
    torch.testing.assert_close(ours[-3], torch.tensor([[math.log(5), 1.0, 0], [0, math.log(5), 0], [0, 0, math.log(5)]], dtype=torch.float64))


def test_logarithm_domain_errors_name_the_crystal():
    eye = torch.eye(3, dtype=torch.float64)
    left_handed = torch.diag(torch.tensor([-3.0, 3.0, 3.0], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"principal_logm: matrix 1 has no real principal logarithm .*det -27"):
        lattice_to_gl3_coords(torch.stack([eye, left_handed]))
    half_turn = torch.diag(torch.tensor([-4.0, -4.0, 4.0], dtype=torch.float64))  # det > 0, eigenvalue -4 (twice)
    with pytest.raises(ValueError, match="negative real axis.*standard_orientation"):
        lattice_to_gl3_coords(torch.stack([eye, eye, half_turn]))
    standard = standard_orientation(half_turn[None])
    torch.testing.assert_close(gl3_coords_to_lattice(lattice_to_gl3_coords(standard)), standard)
    with pytest.raises(InvalidLatticeError, match="lattice_to_gl3_coords: crystal 0"):
        lattice_to_gl3_coords(torch.zeros(1, 3, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"shape \(\.\.\., 9\)"):
        gl3_coords_to_lattice(torch.zeros(2, 6))
    x = torch.zeros(3, 9)
    x[2, 4] = float("inf")
    x[1, 8] = 1000.0  # exp(lambda 1000) = e^144 overflows float32
    with pytest.raises(InvalidLatticeError, match=r"gl3_coords_to_lattice: crystal 1: x = \(0, 0, 0, 0, 0, 0, 0, 0, 1000\)"):
        gl3_coords_to_lattice(x)
    lattice, valid = gl3_coords_to_lattice(x.requires_grad_(), strict=False)
    assert valid.tolist() == [True, False, False] and torch.isnan(lattice[1:]).all()
    lattice[valid].sum().backward()
    assert torch.isfinite(x.grad).all()


def test_gradients_of_the_log_match_finite_differences_at_generic_and_cubic_cells():
    generic = lattice_params_to_matrix(*random_params(1, seed=6)).requires_grad_()
    assert torch.autograd.gradcheck(lattice_to_gl3_coords, (generic,))
    cubic = (4.2 * torch.eye(3, dtype=torch.float64)).unsqueeze(0).requires_grad_()  # repeated eigenvalues
    assert torch.autograd.gradcheck(lattice_to_gl3_coords, (cubic,))
    x = torch.randn(3, 9, generator=torch.Generator().manual_seed(7), dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(gl3_coords_to_lattice, (x,))
