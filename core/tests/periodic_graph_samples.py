"""Shared helpers for the periodic-graph tests: batches of Structures as tensors, pymatgen's neighbour lists as
edge arrays, and order-free edge keys for vectorised set comparisons."""

from __future__ import annotations

import numpy as np
import torch
from pymatgen.core import Lattice, Structure

from crystalgen.testing import benchmark_structures


def batch_tensors(structures: list[Structure]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(frac_coords (N, 3), lattice (B, 3, 3), num_atoms (B,)) in float64, coordinates exactly as stored."""
    frac = torch.from_numpy(np.concatenate([s.frac_coords for s in structures]).astype(np.float64))
    lattice = torch.from_numpy(np.stack([s.lattice.matrix for s in structures]).astype(np.float64))
    num_atoms = torch.tensor([len(s) for s in structures])
    return frac, lattice, num_atoms


def pymatgen_edges(structures: list[Structure], cutoff: float) -> dict[str, np.ndarray]:
    """Edges of ``Structure.get_all_neighbors(cutoff)`` over a batch: source and target (global indices), offsets,
    distance."""
    sources, targets, offsets, distances = [], [], [], []
    first = 0
    for structure in structures:
        for centre, neighbours in enumerate(structure.get_all_neighbors(cutoff)):
            for neighbour in neighbours:
                sources.append(first + neighbour.index)
                targets.append(first + centre)
                offsets.append(neighbour.image)
                distances.append(neighbour.nn_distance)
        first += len(structure)
    return {
        "source": np.asarray(sources, dtype=np.int64),
        "target": np.asarray(targets, dtype=np.int64),
        "offsets": np.asarray(offsets, dtype=np.float64).round().astype(np.int64).reshape(-1, 3),
        "distance": np.asarray(distances, dtype=np.float64),
    }


def graph_edges(graph) -> dict[str, np.ndarray]:
    return {
        "source": graph.edge_index[0].numpy(),
        "target": graph.edge_index[1].numpy(),
        "offsets": graph.cell_offsets.numpy(),
        "distance": graph.distance.detach().numpy(),
    }


def edge_keys(edges: dict[str, np.ndarray], num_nodes: int, span: int = 64) -> np.ndarray:
    """One int64 per (target, source, offset), for set comparisons with np.sort / np.array_equal."""
    width = 2 * span + 1
    shifted = edges["offsets"] + span
    assert (shifted >= 0).all() and (shifted < width).all(), "offset outside the key range"
    key = edges["target"] * num_nodes + edges["source"]
    for axis in range(3):
        key = key * width + shifted[:, axis]
    return key


def sorted_by_key(edges: dict[str, np.ndarray], num_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    keys = edge_keys(edges, num_nodes)
    order = np.argsort(keys, kind="stable")
    return keys[order], edges["distance"][order]


def away_from_cutoff(edges: dict[str, np.ndarray], cutoff: float, margin: float = 1e-6) -> dict[str, np.ndarray]:
    """Drop edges within ``margin`` of the cutoff, where pymatgen's inclusion tolerance (1e-8) may differ from ours."""
    keep = np.abs(edges["distance"] - cutoff) > margin
    return {name: values[keep] for name, values in edges.items()}


def benchmark_mix(per_dataset: dict[str, int], seed: int = 0) -> list[Structure]:
    """Structures from the test splits of the benchmark datasets (skips the calling test when data is absent)."""
    structures = []
    for name, count in per_dataset.items():
        structures += [structure for _, structure in benchmark_structures(name, "test", n=count, seed=seed)]
    return structures


def skewed_copy(structure: Structure, transform: list[list[int]]) -> Structure:
    """The same crystal in another (unimodular, so equally sized) cell: lattice rows M @ L, coordinates re-expressed."""
    matrix = np.asarray(transform, dtype=np.float64)
    assert abs(abs(np.linalg.det(matrix)) - 1) < 1e-9
    lattice = Lattice(matrix @ structure.lattice.matrix)
    return Structure(lattice, structure.species, structure.cart_coords, coords_are_cartesian=True)
