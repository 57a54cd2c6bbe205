"""Edge triplets k -> j -> i of a periodic multigraph, and their bond angles, for angle-based networks.

DimeNet++ (Gasteiger et al. 2020), GemNet and SphereNet pass messages m_kj into m_ji through the angle at the
shared atom j. On a periodic multigraph an atom k may be i itself in another image (a real three-body
configuration in small cells), so the back-tracking pair is recognised by image, not by atom index: it is the
edge k -> j whose neighbour is exactly the image of i that edge j -> i starts from (k = i and offsets that
cancel). Graph conventions are those of neighbors.py (edge_index[0] = source, edge_index[1] = target).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Triplets:
    """Pairs of edges (k -> j, j -> i) sharing atom j; both (T,) int64 edge ids into edge_index."""

    idx_kj: Tensor
    idx_ji: Tensor


def triplets(edge_index: Tensor, cell_offsets: Tensor, num_nodes: int, *, exclude_same_atom: bool = False) -> Triplets:
    """Every pair (edge k -> j, edge j -> i) except the back-tracking one, vectorised (no loop over edges).

    edge_index (2, E) and cell_offsets (E, 3) as returned by radius_graph_pbc / knn_graph_pbc. The triplets are
    ordered by idx_ji, then by idx_kj. ``exclude_same_atom=True`` also drops k = i through any image, as CDVAE's
    DimeNet++ encoder does (it compares atom indices only; needed to reproduce its pretrained property models);
    the default keeps those triplets, which is what the geometry asks for.
    """
    source, target = edge_index
    device = edge_index.device
    by_target = torch.argsort(target, stable=True)
    into = torch.bincount(target, minlength=num_nodes)
    first_into = torch.cumsum(into, 0) - into
    per_edge = into[source]  # edges k -> j feeding each edge j -> i
    idx_ji = torch.repeat_interleave(torch.arange(source.numel(), device=device), per_edge)
    start = torch.repeat_interleave(torch.cumsum(per_edge, 0) - per_edge, per_edge)
    rank = torch.arange(idx_ji.numel(), device=device) - start
    idx_kj = by_target[first_into[source[idx_ji]] + rank]
    backtrack = source[idx_kj] == target[idx_ji]
    if not exclude_same_atom:
        backtrack &= (cell_offsets[idx_kj] + cell_offsets[idx_ji] == 0).all(dim=-1)
    keep = ~backtrack
    return Triplets(idx_kj=idx_kj[keep], idx_ji=idx_ji[keep])


def triplet_angles(edge_vec: Tensor, idx_kj: Tensor, idx_ji: Tensor) -> Tensor:
    """Bond angle (T,) at the shared atom j between the bonds to i and to k, in radians in [0, pi].

    With edge_vec the centre -> neighbour vectors of neighbors.py, j -> i is -edge_vec[idx_ji] and j -> k is
    edge_vec[idx_kj]. atan2(|u x w|, u . w) is accurate near 0 and pi, where acos of a cosine is not.
    Note: DimeNet/DimeNet++ as coded in PyG and CDVAE feed the angle between edge_vec[idx_ji] and
    edge_vec[idx_kj], which is pi minus this one; pretrained weights of those models need ``pi - triplet_angles``.
    """
    to_i = -edge_vec[idx_ji]
    to_k = edge_vec[idx_kj]
    return torch.atan2(torch.linalg.cross(to_i, to_k).norm(dim=-1), (to_i * to_k).sum(dim=-1))
