"""Lattice parameters <-> matrices (against pymatgen), validity errors and masks, gradients, N^(1/3) scaling,
Niggli reduction and the standard orientation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from lattice_samples import random_params, random_rotations, standard_cells
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Lattice, Structure

from crystalgen.geometry.lattice import (
    InvalidLatticeError,
    lattice_matrix_to_params,
    lattice_params_to_matrix,
    scale_lengths,
    standard_orientation,
    unscale_lengths,
)
from crystalgen.geometry.niggli import niggli_reduce, with_standard_orientation


def test_params_to_matrix_matches_pymatgen_from_parameters():
    lengths, angles = random_params(200)
    matrix = lattice_params_to_matrix(lengths, angles)
    expected = np.stack([Lattice.from_parameters(*lengths_, *angles_).matrix for lengths_, angles_ in zip(lengths.tolist(), angles.tolist())])
    np.testing.assert_allclose(matrix.numpy(), expected, atol=1e-10)


def test_matrix_to_params_matches_pymatgen_for_rotated_and_left_handed_cells():
    lengths, angles = random_params(100, seed=1)
    matrix = lattice_params_to_matrix(lengths, angles) @ random_rotations(100).transpose(-1, -2)
    matrix[::2, 0] *= -1  # every other cell left-handed (a -> -a changes beta and gamma)
    got_lengths, got_angles = lattice_matrix_to_params(matrix)
    expected = np.array([Lattice(m).parameters for m in matrix.numpy()])
    np.testing.assert_allclose(got_lengths.numpy(), expected[:, :3], atol=1e-10)
    np.testing.assert_allclose(got_angles.numpy(), expected[:, 3:], atol=1e-8)


def test_params_round_trip_and_hand_computed_hexagonal_cell():
    lengths, angles = random_params(100, seed=2)
    back_lengths, back_angles = lattice_matrix_to_params(lattice_params_to_matrix(lengths, angles))
    torch.testing.assert_close(back_lengths, lengths, atol=1e-10, rtol=0)
    torch.testing.assert_close(back_angles, angles, atol=1e-9, rtol=0)
    # a = b = 2, c = 5, gamma = 120: a = (2, 0, 0), b = (-1, sqrt 3, 0), c = (0, 0, 5)
    hexagonal = lattice_params_to_matrix(torch.tensor([2.0, 2.0, 5.0]), torch.tensor([90.0, 90.0, 120.0]))
    torch.testing.assert_close(hexagonal, torch.tensor([[2.0, 0, 0], [-1.0, math.sqrt(3), 0], [0, 0, 5.0]]), atol=1e-6, rtol=0)


def test_float32_and_extra_batch_dimensions():
    lengths, angles = random_params(12, seed=3)
    matrix64 = lattice_params_to_matrix(lengths, angles)
    matrix32 = lattice_params_to_matrix(lengths.float().reshape(3, 4, 3), angles.float().reshape(3, 4, 3))
    assert matrix32.dtype == torch.float32 and matrix32.shape == (3, 4, 3, 3)
    torch.testing.assert_close(matrix32.reshape(12, 3, 3).double(), matrix64, atol=1e-5, rtol=1e-5)
    back_lengths, back_angles = lattice_matrix_to_params(matrix32)
    assert back_lengths.dtype == torch.float32 and back_angles.shape == (3, 4, 3)
    torch.testing.assert_close(back_angles.reshape(12, 3).double(), angles, atol=1e-3, rtol=0)


@pytest.mark.data
def test_real_crystals_of_every_system_match_pymatgen():
    cells = standard_cells()
    matrices = torch.tensor(np.stack([s.lattice.matrix for _, _, _, s in cells]))
    lengths, angles = lattice_matrix_to_params(matrices)
    expected = np.array([s.lattice.parameters for _, _, _, s in cells])
    np.testing.assert_allclose(torch.cat([lengths, angles], -1).numpy(), expected, atol=1e-8)
    rebuilt = lattice_params_to_matrix(lengths, angles)
    np.testing.assert_allclose(rebuilt.numpy(), np.stack([Lattice.from_parameters(*p).matrix for p in expected]), atol=1e-9)


@pytest.mark.parametrize(
    ("lengths", "angles", "message"),
    [
        ([3.0, -1.0, 4.0], [90.0, 90.0, 90.0], "lengths (a, b, c) = (3, -1, 4) Angstrom"),
        ([3.0, 0.0, 4.0], [90.0, 90.0, 90.0], "finite and positive"),
        ([3.0, 3.0, 4.0], [90.0, 180.0, 90.0], "strictly between 0 and 180"),
        ([3.0, 3.0, 4.0], [0.0, 90.0, 90.0], "strictly between 0 and 180"),
        ([3.0, 3.0, 4.0], [90.0, float("nan"), 90.0], "angles (alpha, beta, gamma) = (90, nan, 90)"),
        ([3.0, 3.0, 4.0], [30.0, 40.0, 100.0], "alpha + beta > gamma"),
        ([3.0, 3.0, 4.0], [120.0, 120.0, 130.0], "alpha + beta + gamma < 360"),
        ([3.0, 3.0, 4.0], [60.0, 60.0, 120.0], "describe no cell"),  # flat: gamma = alpha + beta exactly
    ],
)
def test_invalid_params_name_the_crystal_and_value(lengths, angles, message):
    good_l, good_a = [4.0, 5.0, 6.0], [80.0, 95.0, 100.0]
    batch_l = torch.tensor([good_l, good_l, lengths, good_l])
    batch_a = torch.tensor([good_a, good_a, angles, good_a])
    with pytest.raises(InvalidLatticeError) as info:
        lattice_params_to_matrix(batch_l, batch_a)
    assert "crystal 2:" in str(info.value) and message in str(info.value)


def test_non_strict_returns_mask_nan_rows_and_clean_gradients():
    lengths = torch.tensor([[4.0, 5.0, 6.0], [3.0, 3.0, 4.0], [3.0, -1.0, 4.0]], requires_grad=True)
    angles = torch.tensor([[80.0, 95.0, 100.0], [30.0, 40.0, 100.0], [90.0, 90.0, 90.0]], requires_grad=True)
    matrix, valid = lattice_params_to_matrix(lengths, angles, strict=False)
    assert valid.tolist() == [True, False, False]
    assert torch.isnan(matrix[1:]).all()
    torch.testing.assert_close(matrix[0], lattice_params_to_matrix(lengths[:1], angles[:1])[0])
    matrix[valid].sum().backward()
    assert torch.isfinite(lengths.grad).all() and torch.isfinite(angles.grad).all()
    assert (lengths.grad[1:] == 0).all()

    lattices = torch.stack([torch.eye(3), torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 1, 0]]), torch.full((3, 3), float("nan"))])
    out_lengths, out_angles, valid = lattice_matrix_to_params(lattices, strict=False)
    assert valid.tolist() == [True, False, False]
    assert torch.isnan(out_angles[1:]).all() and torch.allclose(out_angles[0], torch.full((3,), 90.0))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ([[1.0, 0, 0], [0, 1, 0], [1, 1, 0]], "coplanar"),
        ([[1.0, 0, 0], [0, 0, 0], [0, 0, 1]], "a zero vector"),
        ([[1.0, 0, 0], [0, float("inf"), 0], [0, 0, 1]], "NaN or infinity"),
    ],
)
def test_invalid_matrix_names_the_crystal(bad, message):
    lattices = torch.stack([torch.eye(3, dtype=torch.float64), torch.tensor(bad, dtype=torch.float64)]).reshape(1, 2, 3, 3)
    with pytest.raises(InvalidLatticeError, match=r"crystal \(0, 1\): lattice vectors") as info:
        lattice_matrix_to_params(lattices)
    assert message in str(info.value)


def test_gradients_match_finite_differences():
    lengths, angles = random_params(4, seed=4)
    assert torch.autograd.gradcheck(lattice_params_to_matrix, (lengths.requires_grad_(), angles.requires_grad_()))
    matrix = lattice_params_to_matrix(*random_params(4, seed=5)).requires_grad_()
    assert torch.autograd.gradcheck(lambda m: torch.cat(lattice_matrix_to_params(m), -1), (matrix,))
    # a right angle, where arccos would have been fine but 180 - eps is where it is not: atan2 stays finite
    near_flat = torch.tensor([[[1.0, 0, 0], [-1.0, 1e-4, 0], [0, 0, 1]]], dtype=torch.float64, requires_grad=True)
    lattice_matrix_to_params(near_flat)[1].sum().backward()
    assert torch.isfinite(near_flat.grad).all()


def test_scale_lengths_by_cube_root_of_atom_count():
    lengths = torch.tensor([[2.0, 4.0, 6.0], [3.0, 3.0, 3.0]])
    num_atoms = torch.tensor([8, 27])
    torch.testing.assert_close(scale_lengths(lengths, num_atoms), torch.tensor([[1.0, 2.0, 3.0], [1.0, 1.0, 1.0]]))
    torch.testing.assert_close(unscale_lengths(scale_lengths(lengths, num_atoms), num_atoms), lengths)
    with pytest.raises(ValueError, match="crystal 1 has 0"):
        scale_lengths(lengths, torch.tensor([8, 0]))


def test_standard_orientation_rotates_without_changing_parameters():
    lengths, angles = random_params(20, seed=6)
    reference = lattice_params_to_matrix(lengths, angles)
    rotated = reference @ random_rotations(20, seed=7).transpose(-1, -2)
    torch.testing.assert_close(standard_orientation(rotated), reference, atol=1e-10, rtol=0)
    mirrored = rotated.clone()
    mirrored[:, :, 0] *= -1  # reflection x -> -x: left-handed, same parameters
    assert (torch.linalg.det(mirrored) < 0).all()
    torch.testing.assert_close(standard_orientation(mirrored), reference, atol=1e-10, rtol=0)


def test_niggli_reduce_and_standard_orientation_keep_the_crystal():
    rocksalt = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    primitive = rocksalt.get_primitive_structure()
    skewed = primitive.copy()
    skewed.make_supercell([[1, 2, 3], [0, 1, 2], [0, 0, 1]])  # unimodular: the same cell volume, needlessly skewed
    reduced = niggli_reduce(skewed)
    # The Niggli cell of fcc: three nearest-neighbour vectors a/sqrt(2) at 60 degrees to each other.
    np.testing.assert_allclose(reduced.lattice.parameters, [5.64 / math.sqrt(2)] * 3 + [60.0] * 3, rtol=1e-8)
    assert max(skewed.lattice.abc) > 10
    assert StructureMatcher().fit(reduced, rocksalt)
    oriented = with_standard_orientation(reduced)
    np.testing.assert_allclose(oriented.lattice.matrix, Lattice.from_parameters(*reduced.lattice.parameters).matrix)
    np.testing.assert_allclose(oriented.frac_coords, reduced.frac_coords)
    np.testing.assert_allclose(oriented.distance_matrix, reduced.distance_matrix, atol=1e-9)
