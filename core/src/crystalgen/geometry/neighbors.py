"""Periodic neighbour lists (radius and k-nearest multigraphs with image offsets) in batched pure torch.

Conventions (shared with triplets.py and every model built on these graphs):
    edge_index    (2, E) int64, PyG's source-to-target flow: edge_index[0] = source j (the neighbour),
                  edge_index[1] = target i (the centre). Messages flow j -> i.
    cell_offsets  (E, 3) int64 lattice image of the source: the neighbour sits at frac_coords[j] + offset, with
                  frac_coords exactly as given (not wrapped). Same meaning as pymatgen's neighbour ``image``.
    edge_vec      (E, 3) Cartesian vector from the centre to the neighbour image, Angstrom:
                  (frac_coords[j] + offset - frac_coords[i]) @ lattice[crystal], as pymatgen's neighbour - centre.
    distance      (E,) |edge_vec|, Angstrom.
Edges are ordered by target i (so by crystal), then source j, then offset lexicographically. The graph is a
multigraph: an atom can neighbour another (or itself) through several images. An atom's own periodic images are
edges (i = j, offset != 0); the zero-offset self-loop never is, recognised by index, not by distance (two
distinct atoms at the same point are neighbours at distance 0).

Why pure torch: torch-cluster / pyg-lib have no wheels for the torch used here, and the vectorised search of
radius_search.py is fast enough (docs/benchmarks.md, "Neighbour lists").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from crystalgen.geometry.radius_search import atoms_of, crystal_index, edges_within

DEFAULT_CHUNK_SIZE = 2**20
"""(pair, image) candidates examined at once; bounds the search's working memory (a few hundred MB at most)."""

TIE_TOLERANCE = 1e-5
"""Angstrom. Distances are rounded to this grid before the nearest are chosen, so float noise never orders ties."""

_KNN_GROWTH = 1.5


@dataclass(frozen=True)
class PeriodicGraph:
    """A periodic multigraph over a batch of crystals (field conventions in the module docstring)."""

    edge_index: Tensor
    cell_offsets: Tensor
    edge_vec: Tensor
    distance: Tensor
    num_edges: Tensor
    """(B,) int64 edges per crystal; the edges of crystal b are contiguous, in batch order."""


def edge_vectors(
    frac_coords: Tensor, lattice: Tensor, num_atoms: Tensor, edge_index: Tensor, cell_offsets: Tensor
) -> Tensor:
    """Cartesian edge vectors (E, 3) in Angstrom, differentiable w.r.t. frac_coords (N, 3) and lattice (B, 3, 3).

    (frac_coords[j] + offset - frac_coords[i]) @ lattice[crystal of i]. Models that need forces, scores or stresses
    rebuild vectors with this on a fixed (edge_index, cell_offsets), so gradients reach positions and cell while
    the discrete choice of neighbours stays constant.
    """
    source, target = edge_index
    crystal = crystal_index(num_atoms.to(frac_coords.device), frac_coords.shape[0]).index_select(0, target)
    dtype = torch.promote_types(frac_coords.dtype, lattice.dtype)
    frac = frac_coords.index_select(0, source) - frac_coords.index_select(0, target)
    frac = frac + cell_offsets.to(frac_coords.dtype)
    return torch.bmm(frac.to(dtype).unsqueeze(1), lattice.to(dtype).index_select(0, crystal)).squeeze(1)


def radius_graph_pbc(
    frac_coords: Tensor,
    lattice: Tensor,
    num_atoms: Tensor,
    cutoff: float,
    max_neighbors: int | None = None,
    *,
    keep_ties: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> PeriodicGraph:
    """Every (centre i, neighbour j, image) with distance <= ``cutoff`` Angstrom, over all periodic images.

    frac_coords (N, 3) fractional (need not be wrapped), lattice (B, 3, 3) rows = lattice vectors in Angstrom,
    num_atoms (B,). Exact for any cell shape: the image search spans cutoff / face height cells on each axis, so
    thin or skewed cells get as many images as they need (CDVAE's radius_graph_pbc uses a fixed 27). The edge set
    equals pymatgen's ``Structure.get_all_neighbors(cutoff)``.

    ``max_neighbors`` keeps the nearest edges per centre (CDVAE/OCP's "at most 20 within 7 A"); the cap is per
    target i, so the result need not be symmetric. Distances are compared on the TIE_TOLERANCE grid. With
    ``keep_ties=False`` exactly ``max_neighbors`` edges are kept and ties go to the lower source index, then the
    lexicographically smaller offset; ``keep_ties=True`` keeps the whole shell at the cut distance (the degree can
    exceed max_neighbors, but symmetry-equivalent neighbours are never split).

    edge_vec and distance carry gradients to frac_coords and lattice when those require them (see
    :func:`edge_vectors`). Tensors are created on frac_coords' device; floats have the promoted input dtype.
    """
    num_atoms = num_atoms.to(frac_coords.device)
    radius = torch.full((num_atoms.numel(),), float(cutoff), dtype=torch.float64, device=frac_coords.device)
    source, target, offsets, vec = edges_within(frac_coords, lattice, num_atoms, radius, chunk_size)
    if max_neighbors is not None:
        kept = _nearest_per_centre(target, vec.norm(dim=-1), max_neighbors, frac_coords.shape[0], keep_ties)
        source, target, offsets, vec = (column.index_select(0, kept) for column in (source, target, offsets, vec))
    return _graph(frac_coords, lattice, num_atoms, source, target, offsets, vec)


def knn_graph_pbc(
    frac_coords: Tensor,
    lattice: Tensor,
    num_atoms: Tensor,
    k: int,
    cutoff: float | None = None,
    *,
    keep_ties: bool = False,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> PeriodicGraph:
    """The ``k`` nearest neighbour images of every atom (only those within ``cutoff`` Angstrom if given).

    Inputs, outputs and tie handling as :func:`radius_graph_pbc`; with a cutoff this is radius_graph_pbc with
    max_neighbors=k. Without one every centre gets exactly k edges (more with keep_ties): the search radius
    starts at that of a sphere holding about k atoms at the crystal's density and grows 1.5x for the crystals
    where some centre still has fewer than k neighbours inside it (then the k nearest are all inside, since the
    search within a radius is exact).
    """
    if k < 1:
        raise ValueError(f"knn_graph_pbc needs k >= 1, got k={k}")
    if cutoff is not None:
        return radius_graph_pbc(frac_coords, lattice, num_atoms, cutoff, k, keep_ties=keep_ties, chunk_size=chunk_size)
    num_atoms = num_atoms.to(frac_coords.device)
    volume_per_atom = torch.linalg.det(lattice.double()).abs() / num_atoms.clamp(min=1)
    radius = 1.2 * (3 * (k + 1) * volume_per_atom / (4 * math.pi)) ** (1 / 3)
    pending = torch.arange(num_atoms.numel(), device=frac_coords.device)
    parts = []
    while pending.numel():
        atoms = atoms_of(pending, num_atoms)
        source, target, offsets, vec = edges_within(
            frac_coords.index_select(0, atoms),
            lattice.index_select(0, pending),
            num_atoms.index_select(0, pending),
            radius.index_select(0, pending),
            chunk_size,
        )
        crystal = crystal_index(num_atoms.index_select(0, pending), atoms.numel())
        kth = _kth_distance(target, vec.norm(dim=-1), k, atoms.numel())
        # The whole shell at the k-th distance must lie inside the radius, or keep_ties could miss part of it.
        short = torch.zeros(pending.numel(), dtype=torch.bool, device=pending.device)
        short[crystal[kth > radius.index_select(0, pending)[crystal] - 2 * TIE_TOLERANCE]] = True
        done = (~short[crystal.index_select(0, target)]).nonzero().squeeze(1)
        parts.append((atoms[source[done]], atoms[target[done]], offsets[done], vec[done]))
        radius[pending[short]] *= _KNN_GROWTH
        pending = pending[short]
    source, target, offsets, vec = (torch.cat(column) for column in zip(*parts))
    order = torch.argsort(target, stable=True)
    source, target, offsets, vec = (column.index_select(0, order) for column in (source, target, offsets, vec))
    kept = _nearest_per_centre(target, vec.norm(dim=-1), k, frac_coords.shape[0], keep_ties)
    source, target, offsets, vec = (column.index_select(0, kept) for column in (source, target, offsets, vec))
    return _graph(frac_coords, lattice, num_atoms, source, target, offsets, vec)


def reverse_edges(edge_index: Tensor, cell_offsets: Tensor, num_nodes: int) -> Tensor:
    """(E,) index of each edge's reverse (i -> j with the negated offset), or -1 where the graph lacks it.

    A radius graph without max_neighbors is symmetric, so there every edge has its reverse (GemNet's ``id_swap``).
    """
    num_edges = edge_index.shape[1]
    if num_edges == 0:
        return torch.empty(0, dtype=torch.long, device=edge_index.device)
    span = int(cell_offsets.abs().max())
    key = _edge_keys(edge_index[0], edge_index[1], cell_offsets, num_nodes, span)
    reverse_key = _edge_keys(edge_index[1], edge_index[0], -cell_offsets, num_nodes, span)
    sorted_key, order = torch.sort(key)
    position = torch.searchsorted(sorted_key, reverse_key).clamp(max=num_edges - 1)
    found = sorted_key[position] == reverse_key
    return torch.where(found, order[position], torch.full_like(position, -1))


def _edge_keys(source: Tensor, target: Tensor, offsets: Tensor, num_nodes: int, span: int) -> Tensor:
    """One int64 per (source, target, offset); offsets lie in [-span, span]."""
    width = 2 * span + 1
    shifted = offsets + span
    return (((source * num_nodes + target) * width + shifted[:, 0]) * width + shifted[:, 1]) * width + shifted[:, 2]


def _kth_distance(target: Tensor, distance: Tensor, k: int, num_nodes: int) -> Tensor:
    """(num_nodes,) distance of each centre's k-th nearest edge (inf where it has fewer than k)."""
    order = _by_centre_then_distance(target, distance)
    counts = torch.bincount(target, minlength=num_nodes)
    start = torch.cumsum(counts, 0) - counts
    kth = torch.full((num_nodes,), math.inf, dtype=distance.dtype, device=distance.device)
    has_k = counts >= k
    kth[has_k] = distance[order[start[has_k] + k - 1]]
    return kth


def _nearest_per_centre(target: Tensor, distance: Tensor, k: int, num_nodes: int, keep_ties: bool) -> Tensor:
    """Indices (ascending) of the edges kept when each centre keeps its ``k`` nearest (ties: radius_graph_pbc)."""
    if keep_ties:
        kth = _kth_distance(target, distance, k, num_nodes)
        keep = torch.round(distance / TIE_TOLERANCE) <= torch.round(kth / TIE_TOLERANCE)[target]
        return keep.nonzero().squeeze(1)
    order = _by_centre_then_distance(target, distance)
    counts = torch.bincount(target, minlength=num_nodes)
    rank = torch.arange(target.numel(), device=target.device) - (torch.cumsum(counts, 0) - counts)[target[order]]
    return torch.sort(order[rank < k]).values


def _by_centre_then_distance(target: Tensor, distance: Tensor) -> Tensor:
    """Stable order by (target, distance on the tie grid); equal keys keep the canonical (source, offset) order."""
    by_distance = torch.argsort(torch.round(distance / TIE_TOLERANCE), stable=True)
    return by_distance[torch.argsort(target[by_distance], stable=True)]


def _graph(
    frac_coords: Tensor,
    lattice: Tensor,
    num_atoms: Tensor,
    source: Tensor,
    target: Tensor,
    offsets: Tensor,
    vec: Tensor,
) -> PeriodicGraph:
    """Assemble the graph; the search's float64 vectors are rebuilt differentiably when gradients are wanted."""
    edge_index = torch.stack((source, target))
    if torch.is_grad_enabled() and (frac_coords.requires_grad or lattice.requires_grad):
        vec = edge_vectors(frac_coords, lattice, num_atoms, edge_index, offsets)
    else:
        vec = vec.to(torch.promote_types(frac_coords.dtype, lattice.dtype))
    crystal = crystal_index(num_atoms, frac_coords.shape[0])
    num_edges = torch.bincount(crystal.index_select(0, target), minlength=num_atoms.numel())
    return PeriodicGraph(
        edge_index=edge_index, cell_offsets=offsets, edge_vec=vec, distance=vec.norm(dim=-1), num_edges=num_edges
    )
