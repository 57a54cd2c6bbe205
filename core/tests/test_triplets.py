"""Triplets k -> j -> i on periodic multigraphs (against a brute-force enumeration, including k = i through another
image) and bond angles (hand-computed shells, an independent computation from fractional coordinates, gradients)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice

from crystalgen.geometry import radius_graph_pbc, triplet_angles, triplets


def brute_force_triplets(graph, exclude_same_atom: bool) -> set[tuple[int, int]]:
    source, target = graph.edge_index.tolist()
    offsets = graph.cell_offsets.tolist()
    found = set()
    for ji in range(len(source)):
        for kj in range(len(source)):
            if target[kj] != source[ji]:
                continue
            same_atom = source[kj] == target[ji]
            same_image = same_atom and all(a + b == 0 for a, b in zip(offsets[kj], offsets[ji]))
            if same_image or (exclude_same_atom and same_atom):
                continue
            found.add((kj, ji))
    return found


@pytest.fixture(scope="module")
def small_cells():
    """A one-atom and a two-atom triclinic cell, small enough that k = i through another image is common."""
    frac = torch.tensor([[0.1, 0.2, 0.3], [0.0, 0.0, 0.0], [0.4, 0.55, 0.7]], dtype=torch.float64)
    cells = [Lattice.from_parameters(2.1, 2.4, 2.7, 75, 85, 100), Lattice.from_parameters(2.8, 3.1, 3.3, 95, 80, 70)]
    lattice = torch.tensor(np.stack([cell.matrix for cell in cells]))
    return frac, lattice, torch.tensor([1, 2])


@pytest.mark.parametrize("exclude_same_atom", [False, True])
def test_triplets_equal_brute_force_enumeration(small_cells, exclude_same_atom):
    frac, lattice, num_atoms = small_cells
    graph = radius_graph_pbc(frac, lattice, num_atoms, 3.2)
    found = triplets(graph.edge_index, graph.cell_offsets, frac.shape[0], exclude_same_atom=exclude_same_atom)
    pairs = list(zip(found.idx_kj.tolist(), found.idx_ji.tolist()))
    assert len(pairs) == len(set(pairs))
    assert set(pairs) == brute_force_triplets(graph, exclude_same_atom)
    assert pairs == sorted(pairs, key=lambda pair: (pair[1], pair[0]))
    k_is_i = graph.edge_index[0, found.idx_kj] == graph.edge_index[1, found.idx_ji]
    if exclude_same_atom:
        assert not k_is_i.any()
    else:
        assert k_is_i.sum() > 50, "the cells should produce many k = i (other image) triplets"


def test_triplets_work_on_a_shuffled_edge_list(small_cells):
    frac, lattice, num_atoms = small_cells
    graph = radius_graph_pbc(frac, lattice, num_atoms, 3.2)
    perm = torch.randperm(graph.edge_index.shape[1], generator=torch.Generator().manual_seed(0))
    shuffled = triplets(graph.edge_index[:, perm], graph.cell_offsets[perm], frac.shape[0])
    original = triplets(graph.edge_index, graph.cell_offsets, frac.shape[0])
    assert set(zip(perm[shuffled.idx_kj].tolist(), perm[shuffled.idx_ji].tolist())) == set(
        zip(original.idx_kj.tolist(), original.idx_ji.tolist())
    )


def test_cubic_shell_angles_and_the_other_image_of_the_same_atom():
    # One atom, a = 1, the 6 nearest images: from each edge j -> i five paths continue (the sixth goes back to
    # the same image of i): four at a right angle, one straight through. All of them end at atom 0 = i.
    frac, lattice = torch.zeros(1, 3, dtype=torch.float64), torch.eye(3, dtype=torch.float64)[None]
    graph = radius_graph_pbc(frac, lattice, torch.tensor([1]), 1.2)
    found = triplets(graph.edge_index, graph.cell_offsets, 1)
    angles = triplet_angles(graph.edge_vec, found.idx_kj, found.idx_ji)
    assert angles.numel() == 30
    assert int(torch.isclose(angles, torch.tensor(math.pi / 2, dtype=torch.float64)).sum()) == 24
    assert int(torch.isclose(angles, torch.tensor(math.pi, dtype=torch.float64)).sum()) == 6
    assert triplets(graph.edge_index, graph.cell_offsets, 1, exclude_same_atom=True).idx_kj.numel() == 0


def test_angles_equal_an_independent_computation_from_fractional_coordinates(small_cells):
    frac, lattice, num_atoms = small_cells
    graph = radius_graph_pbc(frac, lattice, num_atoms, 3.2)
    found = triplets(graph.edge_index, graph.cell_offsets, frac.shape[0])
    angles = triplet_angles(graph.edge_vec, found.idx_kj, found.idx_ji).numpy()
    crystal = np.repeat(np.arange(2), num_atoms.numpy())
    source, target = graph.edge_index.numpy()
    offsets, f, cells = graph.cell_offsets.numpy(), frac.numpy(), lattice.numpy()
    kj, ji = found.idx_kj.numpy(), found.idx_ji.numpy()
    j, i, k = source[ji], target[ji], source[kj]
    # In the frame where j sits in its home cell: i is at f_i - offset(j -> i), k at f_k + offset(k -> j).
    to_i = np.einsum("ta,tab->tb", f[i] - offsets[ji] - f[j], cells[crystal[j]])
    to_k = np.einsum("ta,tab->tb", f[k] + offsets[kj] - f[j], cells[crystal[j]])
    cosine = (to_i * to_k).sum(-1) / np.linalg.norm(to_i, axis=-1) / np.linalg.norm(to_k, axis=-1)
    np.testing.assert_allclose(np.cos(angles), cosine, atol=1e-12)


def test_angle_gradients_match_finite_differences(small_cells):
    frac, lattice, num_atoms = small_cells
    graph = radius_graph_pbc(frac, lattice, num_atoms, 2.6)
    found = triplets(graph.edge_index, graph.cell_offsets, frac.shape[0])
    bent = (triplet_angles(graph.edge_vec, found.idx_kj, found.idx_ji) - math.pi / 2).abs() < 1.2
    idx_kj, idx_ji = found.idx_kj[bent][:40], found.idx_ji[bent][:40]
    vectors = graph.edge_vec.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda v: triplet_angles(v, idx_kj, idx_ji), (vectors,), fast_mode=True)


def test_a_graph_without_edges_has_no_triplets():
    empty = triplets(torch.empty(2, 0, dtype=torch.long), torch.empty(0, 3, dtype=torch.long), 4)
    assert empty.idx_kj.shape == empty.idx_ji.shape == (0,)
