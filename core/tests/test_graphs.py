"""Periodic neighbour lists: equality with pymatgen on benchmark crystals and on hand-made extreme cells, analytic
shell counts, invariances, nearest-k selection, k-NN, gradients, chunking, dtypes and error messages."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np
import pytest
import torch
from periodic_graph_samples import (
    away_from_cutoff,
    batch_tensors,
    benchmark_mix,
    graph_edges,
    pymatgen_edges,
    skewed_copy,
    sorted_by_key,
)
from pymatgen.core import Lattice, Structure

from crystalgen.geometry import edge_vectors, knn_graph_pbc, radius_graph_pbc, reverse_edges
from crystalgen.geometry.image_search import face_heights

# Shells of the simple cubic lattice Z^3: number of lattice vectors with |n|^2 = s (r_3(s); none with s = 7).
CUBIC_SHELLS = {1: 6, 2: 12, 3: 8, 4: 6, 5: 24, 6: 24, 8: 12, 9: 30, 10: 24}


def assert_same_edges(ours: dict, theirs: dict, num_nodes: int, atol: float = 1e-5) -> None:
    our_keys, our_distance = sorted_by_key(ours, num_nodes)
    their_keys, their_distance = sorted_by_key(theirs, num_nodes)
    assert our_keys.shape == their_keys.shape, f"{len(our_keys)} edges, pymatgen has {len(their_keys)}"
    assert np.array_equal(our_keys, their_keys), "different (centre, neighbour, image) triples"
    np.testing.assert_allclose(our_distance, their_distance, atol=atol)


def compare_with_pymatgen(structures: list[Structure], cutoff: float) -> dict:
    frac, lattice, num_atoms = batch_tensors(structures)
    ours = away_from_cutoff(graph_edges(radius_graph_pbc(frac, lattice, num_atoms, cutoff)), cutoff)
    theirs = away_from_cutoff(pymatgen_edges(structures, cutoff), cutoff)
    assert_same_edges(ours, theirs, frac.shape[0])
    return ours


@pytest.fixture(scope="module")
def benchmark_crystals() -> list[Structure]:
    return benchmark_mix({"perov_5": 170, "carbon_24": 170, "mp_20": 200}, seed=0)


def triclinic(structure: Structure) -> bool:
    return all(abs(angle - 90) > 1e-3 and abs(angle - 120) > 1e-3 for angle in structure.lattice.angles)


@pytest.mark.data
def test_radius_graph_equals_pymatgen_on_540_benchmark_crystals(benchmark_crystals):
    cutoff = 5.0
    assert len(benchmark_crystals) >= 500
    assert sum(map(triclinic, benchmark_crystals)) >= 5, "the sample should hold triclinic cells"
    heights = face_heights(batch_tensors(benchmark_crystals)[1])
    assert int((heights.amin(dim=-1) < cutoff / 2).sum()) >= 20, "the sample should hold cells needing |n| >= 2"
    ours = compare_with_pymatgen(benchmark_crystals, cutoff)
    assert np.abs(ours["offsets"]).max() >= 2


@pytest.mark.slow
@pytest.mark.data
def test_radius_graph_equals_pymatgen_on_3000_benchmark_crystals_at_7_angstrom():
    structures = benchmark_mix({"perov_5": 1000, "carbon_24": 1000, "mp_20": 1000}, seed=1)
    compare_with_pymatgen(structures, 7.0)


def test_tiny_cubic_cell_matches_the_shells_of_z3():
    # One atom in a 1 A cube, cutoff ~3.2 cells: every edge is the atom's own image, counted shell by shell.
    lattice = torch.eye(3, dtype=torch.float64).unsqueeze(0)
    frac = torch.tensor([[0.3, 0.6, 0.9]], dtype=torch.float64)
    graph = radius_graph_pbc(frac, lattice, torch.tensor([1]), math.sqrt(10.5))
    shells = Counter(int(round(float(d) ** 2)) for d in graph.distance)
    assert shells == CUBIC_SHELLS
    assert graph.edge_index.shape[1] == sum(CUBIC_SHELLS.values()) == 146
    assert (graph.edge_index == 0).all()
    assert torch.equal(graph.cell_offsets.pow(2).sum(dim=-1), graph.distance.pow(2).round().long())


def test_two_atom_cubic_cell_counts_both_sublattices():
    # CsCl-type cell, a = 1: from each atom, its own images are Z^3, the other atom's are Z^3 + (1/2, 1/2, 1/2).
    frac = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]], dtype=torch.float64)
    graph = radius_graph_pbc(frac, torch.eye(3, dtype=torch.float64)[None], torch.tensor([2]), 1.7)
    same = graph.edge_index[0] == graph.edge_index[1]
    # |n| <= 1.7 in Z^3: shells 1, 2 -> 18 per atom; |n + 1/2| <= 1.7: 8 at sqrt(3)/2, 24 at sqrt(11)/2 -> 32 per atom.
    assert int(same.sum()) == 2 * 18
    assert int((~same).sum()) == 2 * 32


def test_very_skewed_triclinic_cell_equals_pymatgen_and_the_reduced_cell():
    reduced = Structure(
        Lattice.from_parameters(3.1, 3.6, 4.2, 77, 84, 101),
        ["Si", "O", "O"],
        [[0.1, 0.2, 0.3], [0.45, 0.6, 0.05], [0.8, 0.15, 0.7]],
    )
    skewed = skewed_copy(reduced, [[1, 4, 3], [0, 1, 5], [0, 0, 1]])
    heights = face_heights(torch.tensor(skewed.lattice.matrix)[None])
    # Angles of 9-40 degrees and a face height of 0.18 A: about 33 images along c at 6 A.
    assert min(skewed.lattice.angles) < 10 and float(heights.min()) < 0.2, "the cell should be strongly skewed"
    compare_with_pymatgen([skewed], 6.0)
    # Same crystal, another cell: each atom sees the same multiset of neighbour distances.
    per_cell = []
    for structure in (reduced, skewed):
        graph = radius_graph_pbc(*batch_tensors([structure]), 6.0)
        per_cell.append([sorted(graph.distance[graph.edge_index[1] == i].tolist()) for i in range(3)])
    for ours, theirs in zip(*per_cell):
        np.testing.assert_allclose(ours, theirs, atol=1e-9)


def test_left_handed_and_unwrapped_cells_equal_pymatgen():
    structure = Structure(
        Lattice([[-3.2, 0.1, 0.0], [0.4, 2.9, 0.2], [0.3, -0.5, 4.4]]),
        ["Li", "Fe", "P"],
        [[-1.2, 0.4, 2.7], [0.5, -3.5, 0.1], [2.9, 1.1, -0.6]],
    )
    assert np.linalg.det(structure.lattice.matrix) < 0
    compare_with_pymatgen([structure], 7.0)


@pytest.fixture(scope="module")
def small_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    num_atoms = torch.tensor([3, 1, 5, 2])
    frac = torch.rand(int(num_atoms.sum()), 3, generator=generator, dtype=torch.float64)
    params = [
        (3.0, 4.0, 5.0, 80, 95, 105),
        (2.2, 2.5, 2.9, 60, 70, 65),
        (5.5, 6.0, 4.5, 90, 90, 120),
        (3.3, 3.3, 8.0, 90, 90, 90),
    ]
    lattice = torch.tensor(np.stack([Lattice.from_parameters(*p).matrix for p in params]))
    return frac, lattice, num_atoms


def edge_table(graph) -> set[tuple]:
    return {
        (int(j), int(i), *map(int, offset), round(float(d), 9))
        for j, i, offset, d in zip(graph.edge_index[0], graph.edge_index[1], graph.cell_offsets, graph.distance)
    }


def test_permuting_atoms_permutes_the_graph(small_batch):
    frac, lattice, num_atoms = small_batch
    graph = radius_graph_pbc(frac, lattice, num_atoms, 6.0)
    # Permute atoms within each crystal (atoms of a crystal must stay contiguous).
    generator = torch.Generator().manual_seed(1)
    first = torch.cumsum(num_atoms, 0) - num_atoms
    perm = torch.cat([f + torch.randperm(n, generator=generator) for f, n in zip(first.tolist(), num_atoms.tolist())])
    permuted = radius_graph_pbc(frac[perm], lattice, num_atoms, 6.0)
    new_index = torch.empty_like(perm)
    new_index[perm] = torch.arange(perm.numel())
    expected = {(int(new_index[j]), int(new_index[i]), *rest) for j, i, *rest in edge_table(graph)}
    assert edge_table(permuted) == expected


def test_translating_and_wrapping_leave_distances_unchanged(small_batch):
    frac, lattice, num_atoms = small_batch
    graph = radius_graph_pbc(frac, lattice, num_atoms, 6.0)
    generator = torch.Generator().manual_seed(2)
    crystal = torch.repeat_interleave(torch.arange(num_atoms.numel()), num_atoms)
    translation = torch.rand(num_atoms.numel(), 3, generator=generator, dtype=torch.float64)[crystal]
    wrap = torch.randint(-3, 4, frac.shape, generator=generator)
    for moved in (frac + translation, frac + wrap):
        other = radius_graph_pbc(moved, lattice, num_atoms, 6.0)
        for i in range(frac.shape[0]):
            np.testing.assert_allclose(
                sorted(other.distance[other.edge_index[1] == i].tolist()),
                sorted(graph.distance[graph.edge_index[1] == i].tolist()),
                atol=1e-9,
            )
    # Wrapping by integers keeps the same neighbour images: offsets shift by the wraps of the two atoms.
    wrapped = radius_graph_pbc(frac + wrap, lattice, num_atoms, 6.0)
    j, i = graph.edge_index
    shifted = {(int(a), int(b), *map(int, o + wrap[b] - wrap[a])) for a, b, o in zip(j, i, graph.cell_offsets)}
    assert {(int(a), int(b), *map(int, o)) for a, b, o in zip(*wrapped.edge_index, wrapped.cell_offsets)} == shifted


def test_edges_are_ordered_by_target_then_source_then_offset(small_batch):
    graph = radius_graph_pbc(*small_batch, 6.0)
    rows = torch.cat([graph.edge_index.flip(0).T, graph.cell_offsets], dim=1).tolist()
    assert rows == sorted(rows)
    crystal = torch.repeat_interleave(torch.arange(4), small_batch[2])
    assert torch.equal(graph.num_edges, torch.bincount(crystal[graph.edge_index[1]], minlength=4))


def test_max_neighbors_keeps_the_nearest_per_centre(small_batch):
    frac, lattice, num_atoms = small_batch
    full = radius_graph_pbc(frac, lattice, num_atoms, 7.0)
    capped = radius_graph_pbc(frac, lattice, num_atoms, 7.0, max_neighbors=20)
    for i in range(frac.shape[0]):
        everything = sorted(full.distance[full.edge_index[1] == i].tolist())
        kept = sorted(capped.distance[capped.edge_index[1] == i].tolist())
        assert len(kept) == min(20, len(everything))
        np.testing.assert_allclose(kept, everything[: len(kept)], atol=1e-12)
    assert edge_table(capped) <= edge_table(full)


def test_max_neighbors_tie_handling_on_the_cubic_shells():
    frac, lattice = torch.zeros(1, 3, dtype=torch.float64), torch.eye(3, dtype=torch.float64)[None]
    strict = radius_graph_pbc(frac, lattice, torch.tensor([1]), 2.0, max_neighbors=7)
    # 6 at distance 1, then the first of the 12 at sqrt(2) in lexicographic offset order.
    assert strict.edge_index.shape[1] == 7
    second_shell = strict.cell_offsets[strict.distance > 1.2].tolist()
    assert second_shell == [[-1, -1, 0]]
    shells = radius_graph_pbc(frac, lattice, torch.tensor([1]), 2.0, max_neighbors=7, keep_ties=True)
    assert shells.edge_index.shape[1] == 6 + 12


def test_knn_returns_the_k_nearest_like_pymatgen(small_batch):
    frac, lattice, num_atoms = small_batch
    structures = []
    first = 0
    for n, cell in zip(num_atoms.tolist(), lattice):
        structures.append(Structure(Lattice(cell.numpy()), ["C"] * n, frac[first:first + n].numpy()))
        first += n
    k = 24
    graph = knn_graph_pbc(frac, lattice, num_atoms, k)
    assert torch.equal(torch.bincount(graph.edge_index[1]), torch.full((frac.shape[0],), k))
    first = 0
    for structure in structures:
        for centre, neighbours in enumerate(structure.get_all_neighbors(12.0)):
            expected = sorted(n.nn_distance for n in neighbours)[:k]
            got = sorted(graph.distance[graph.edge_index[1] == first + centre].tolist())
            np.testing.assert_allclose(got, expected, atol=1e-9)
        first += len(structure)


@pytest.mark.data
def test_knn_equals_pymatgen_nearest_on_benchmark_crystals(benchmark_crystals):
    structures = benchmark_crystals[::20]
    frac, lattice, num_atoms = batch_tensors(structures)
    graph = knn_graph_pbc(frac, lattice, num_atoms, 20)
    distance = graph.distance.numpy()
    order = np.lexsort((distance, graph.edge_index[1].numpy()))
    ours = distance[order].reshape(-1, 20)
    theirs = []
    for structure in structures:
        for neighbours in structure.get_all_neighbors(7.0):
            assert len(neighbours) >= 20, "raise pymatgen's radius: fewer than 20 neighbours within it"
            theirs.append(sorted(n.nn_distance for n in neighbours)[:20])
    np.testing.assert_allclose(ours, np.asarray(theirs), atol=1e-9)


def test_knn_with_cutoff_is_the_capped_radius_graph(small_batch):
    knn = knn_graph_pbc(*small_batch, 12, cutoff=4.0)
    capped = radius_graph_pbc(*small_batch, 4.0, max_neighbors=12)
    assert torch.equal(knn.edge_index, capped.edge_index) and torch.equal(knn.cell_offsets, capped.cell_offsets)


def test_knn_grows_the_radius_for_a_sparse_cluster():
    # A close pair in a 20 A cube: the density-based first radius (~19 A) holds one neighbour, the search must grow.
    structure = Structure(Lattice.cubic(20.0), ["H", "H"], [[0.0, 0.0, 0.0], [0.025, 0.0, 0.0]])
    graph = knn_graph_pbc(*batch_tensors([structure]), 3)
    for centre, neighbours in enumerate(structure.get_all_neighbors(25.0)):
        expected = sorted(n.nn_distance for n in neighbours)[:3]
        np.testing.assert_allclose(sorted(graph.distance[graph.edge_index[1] == centre].tolist()), expected, atol=1e-9)
    assert graph.distance.max() > 19


def test_edge_vectors_gradients_match_finite_differences(small_batch):
    frac, lattice, num_atoms = small_batch
    graph = radius_graph_pbc(frac, lattice, num_atoms, 3.0)
    # A few random projections of all edge vectors keep gradcheck to a handful of backward passes.
    projection = torch.randn(4, graph.edge_vec.numel(), generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def projected_vectors(frac_coords, cell):
        return projection @ edge_vectors(frac_coords, cell, num_atoms, graph.edge_index, graph.cell_offsets).reshape(-1)

    inputs = (frac.clone().requires_grad_(), lattice.clone().requires_grad_())
    assert torch.autograd.gradcheck(projected_vectors, inputs, fast_mode=True)
    rebuilt = edge_vectors(frac, lattice, num_atoms, graph.edge_index, graph.cell_offsets)
    torch.testing.assert_close(rebuilt, graph.edge_vec)


def test_graph_vectors_carry_gradients_to_positions_and_cell(small_batch):
    frac, lattice, num_atoms = small_batch
    frac, lattice = frac.clone().requires_grad_(), lattice.clone().requires_grad_()
    graph = radius_graph_pbc(frac, lattice, num_atoms, 4.0)
    energy = (graph.distance - 2.5).pow(2).sum()
    grad_frac, grad_lattice = torch.autograd.grad(energy, (frac, lattice))
    # Scaling the cell by (1 + e) scales every distance: dE/de = sum 2 (d - 2.5) d = <dE/dL, L>.
    expected = float((2 * (graph.distance - 2.5) * graph.distance).sum())
    assert math.isclose(float((grad_lattice * lattice).sum()), expected, rel_tol=1e-9)
    assert grad_frac.abs().sum() > 0


def test_reverse_edges_pair_up_a_radius_graph(small_batch):
    frac, lattice, num_atoms = small_batch
    graph = radius_graph_pbc(frac, lattice, num_atoms, 6.0)
    reverse = reverse_edges(graph.edge_index, graph.cell_offsets, frac.shape[0])
    assert (reverse >= 0).all()
    assert torch.equal(reverse[reverse], torch.arange(reverse.numel()))
    assert torch.equal(graph.edge_index[:, reverse], graph.edge_index.flip(0))
    assert torch.equal(graph.cell_offsets[reverse], -graph.cell_offsets)
    capped = radius_graph_pbc(frac, lattice, num_atoms, 6.0, max_neighbors=10)
    assert (reverse_edges(capped.edge_index, capped.cell_offsets, frac.shape[0]) == -1).any()


def test_small_chunks_give_the_same_graph(small_batch):
    graph = radius_graph_pbc(*small_batch, 6.0)
    chunked = radius_graph_pbc(*small_batch, 6.0, chunk_size=7)
    assert torch.equal(graph.edge_index, chunked.edge_index) and torch.equal(graph.cell_offsets, chunked.cell_offsets)
    torch.testing.assert_close(graph.edge_vec, chunked.edge_vec)


def test_float32_inputs_give_float32_outputs_and_the_same_neighbours(small_batch):
    frac, lattice, num_atoms = small_batch
    single = radius_graph_pbc(frac.float(), lattice.float(), num_atoms, 6.0)
    double = radius_graph_pbc(frac.float().double(), lattice.float().double(), num_atoms, 6.0)
    assert single.edge_vec.dtype == single.distance.dtype == torch.float32
    assert single.edge_index.dtype == single.cell_offsets.dtype == torch.int64
    assert torch.equal(single.edge_index, double.edge_index)


def test_crystals_without_atoms_or_edges_are_handled():
    lattice = torch.stack([torch.eye(3, dtype=torch.float64) * 3, torch.eye(3, dtype=torch.float64) * 10])
    graph = radius_graph_pbc(torch.full((1, 3), 0.5, dtype=torch.float64), lattice, torch.tensor([0, 1]), 2.0)
    assert graph.edge_index.shape == (2, 0) and graph.cell_offsets.shape == (0, 3)
    assert torch.equal(graph.num_edges, torch.tensor([0, 0]))


def test_bad_inputs_name_the_problem():
    frac = torch.zeros(2, 3, dtype=torch.float64)
    good = torch.eye(3, dtype=torch.float64)
    flat = torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=torch.float64)
    with pytest.raises(ValueError, match="crystal 1 .* singular"):
        radius_graph_pbc(frac, torch.stack([good, flat]), torch.tensor([1, 1]), 3.0)
    with pytest.raises(ValueError, match="num_atoms sums to 3"):
        radius_graph_pbc(frac, torch.stack([good, good]), torch.tensor([1, 2]), 3.0)
    with pytest.raises(ValueError, match="frac_coords row 1"):
        bad_frac = torch.tensor([[0.0, 0, 0], [math.nan, 0, 0]])
        radius_graph_pbc(bad_frac, torch.stack([good, good]), torch.tensor([1, 1]), 3.0)
    with pytest.raises(ValueError, match="crystal 0 .* thinner than the search radius"):
        radius_graph_pbc(frac[:1], (good * 0.01)[None], torch.tensor([1]), 7.0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_equals_cpu_graph(small_batch):
    cpu = radius_graph_pbc(*small_batch, 6.0, max_neighbors=12)
    gpu = radius_graph_pbc(*(t.cuda() for t in small_batch), 6.0, max_neighbors=12)
    assert gpu.edge_index.is_cuda and gpu.edge_vec.is_cuda
    assert torch.equal(cpu.edge_index, gpu.edge_index.cpu()) and torch.equal(cpu.cell_offsets, gpu.cell_offsets.cpu())
