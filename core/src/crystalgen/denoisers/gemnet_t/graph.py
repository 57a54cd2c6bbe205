"""The interaction graph GemNet-T runs on: a symmetric periodic multigraph, each edge's reverse, and the triplets
of edges that share their target atom.

GemNet passes a message along every directed edge c -> a and merges it with the message of a -> c (``id_swap``),
so every edge needs its reverse. A radius graph capped at k neighbours per atom is not symmetric; OCP/CDVAE keep
the edges with source index < target index and add their reverses, which drops or adds edges depending on how
the atoms are numbered (not permutation invariant). Here the capped graph is closed under reversal instead (the
union of the edge set and its reverses), which is invariant, at the price of some atoms having more than k
neighbours. The cap keeps whole distance shells (``keep_ties``) so symmetric neighbours are never split.

Graph conventions are crystalgen.geometry.neighbors' (edge_index[0] = source c, edge_index[1] = target a,
edge_vec = target -> source image, Angstrom).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from crystalgen.geometry.basis_reduction import reduce_basis
from crystalgen.geometry.neighbors import crystal_index, edge_vectors, knn_graph_pbc, radius_graph_pbc, reverse_edges


@dataclass(frozen=True)
class InteractionGraph:
    """Everything GemNet-T needs besides node features.

    edge_index (2, E) source c, target a; cell_offsets (E, 3) image of c; edge_vec (E, 3) Angstrom from a to the
    image of c (differentiable w.r.t. coordinates and lattice); id_swap (E,) index of each edge's reverse;
    id3_ba, id3_ca (T,) the input edge b -> a and output edge c -> a of each triplet (same target a, distinct
    edges; b may be c through another image); id3_ragged (T,) position of the triplet among those of its output
    edge (id3_ca is sorted, so this indexes a zero-padded (E, Kmax) layout).
    """

    edge_index: Tensor
    cell_offsets: Tensor
    edge_vec: Tensor
    id_swap: Tensor
    id3_ba: Tensor
    id3_ca: Tensor
    id3_ragged: Tensor

    @property
    def distance(self) -> Tensor:
        return self.edge_vec.norm(dim=-1)


def symmetrize(edge_index: Tensor, cell_offsets: Tensor, num_nodes: int) -> tuple[Tensor, Tensor]:
    """Add the reverse (a -> c, negated offset) of every edge that lacks it; order by target, source, offset."""
    reverse = reverse_edges(edge_index, cell_offsets, num_nodes)
    missing = reverse < 0
    edge_index = torch.cat([edge_index, edge_index[:, missing].flip(0)], dim=1)
    cell_offsets = torch.cat([cell_offsets, -cell_offsets[missing]])
    span = int(cell_offsets.abs().max()) if cell_offsets.numel() else 0
    width = 2 * span + 1
    shifted = cell_offsets + span
    key = ((edge_index[1] * num_nodes + edge_index[0]) * width + shifted[:, 0]) * width * width + shifted[:, 1] * width + shifted[:, 2]
    order = torch.argsort(key)
    return edge_index[:, order], cell_offsets[order]


def shared_target_triplets(edge_index: Tensor, num_nodes: int) -> tuple[Tensor, Tensor, Tensor]:
    """(id3_ba, id3_ca, id3_ragged): for every edge c -> a, every other edge b -> a into the same atom a.

    Edges are told apart by id, not by atom, so b -> a and c -> a from two images of the same atom form a triplet.
    """
    target = edge_index[1]
    device = target.device
    num_edges = target.numel()
    by_target = torch.argsort(target, stable=True)
    into = torch.bincount(target, minlength=num_nodes)
    first_into = torch.cumsum(into, 0) - into
    per_edge = into[target]
    id3_ca = torch.repeat_interleave(torch.arange(num_edges, device=device), per_edge)
    start = torch.repeat_interleave(torch.cumsum(per_edge, 0) - per_edge, per_edge)
    rank = torch.arange(id3_ca.numel(), device=device) - start
    id3_ba = by_target[first_into[target[id3_ca]] + rank]
    keep = id3_ba != id3_ca
    id3_ba, id3_ca = id3_ba[keep], id3_ca[keep]
    counts = torch.bincount(id3_ca, minlength=num_edges)
    id3_ragged = torch.arange(id3_ca.numel(), device=device) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    return id3_ba, id3_ca, id3_ragged


def interaction_graph(frac_coords: Tensor, lattice: Tensor, num_atoms: Tensor, cutoff: float | None,
                      max_neighbors: int | None) -> InteractionGraph:
    """GemNet-T's graph of a batch of crystals: neighbours within ``cutoff`` Angstrom (the nearest
    ``max_neighbors`` distance shells' worth per atom), closed under reversal, with reverses and triplets.
    Without a cutoff it is the k-nearest-neighbour graph, k = ``max_neighbors`` (whole distance shells kept), at
    any distance (GemsNet's kNN graph: a cell of any size or shape gets its k nearest images). The kNN search runs
    on a reduced basis of each cell (the same point set, so the same edges: a noisy, skewed cell would otherwise need
    millions of images); the offsets are returned in the given basis.

    frac_coords (N, 3) fractional, lattice (B, 3, 3) rows = lattice vectors in Angstrom, num_atoms (B,).
    """
    num_nodes = frac_coords.shape[0]
    if cutoff is None:
        if max_neighbors is None:
            raise ValueError("interaction_graph needs a cutoff, max_neighbors (k nearest), or both")
        reduced, transform = reduce_basis(lattice)
        per_atom = transform.index_select(0, crystal_index(num_atoms.to(transform.device), num_nodes)).to(torch.float64)
        frac_reduced = torch.linalg.solve(per_atom.transpose(-1, -2), frac_coords.detach().to(torch.float64).unsqueeze(-1))
        graph = knn_graph_pbc(frac_reduced.squeeze(-1), reduced.to(torch.float64), num_atoms, max_neighbors, keep_ties=True)
        offsets = torch.bmm(graph.cell_offsets.to(torch.float64).unsqueeze(1), per_atom.index_select(0, graph.edge_index[1]))
        edge_index, offsets = graph.edge_index, offsets.squeeze(1).round().to(torch.long)
    else:
        graph = radius_graph_pbc(frac_coords.detach(), lattice.detach(), num_atoms, cutoff, max_neighbors, keep_ties=True)
        edge_index, offsets = graph.edge_index, graph.cell_offsets
    edge_index, cell_offsets = symmetrize(edge_index, offsets, num_nodes)
    vec = edge_vectors(frac_coords, lattice, num_atoms, edge_index, cell_offsets)
    id_swap = reverse_edges(edge_index, cell_offsets, num_nodes)
    id3_ba, id3_ca, id3_ragged = shared_target_triplets(edge_index, num_nodes)
    return InteractionGraph(edge_index, cell_offsets, vec, id_swap, id3_ba, id3_ca, id3_ragged)
