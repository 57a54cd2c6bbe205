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
    per_edge = into.index_select(0, source)  # edges k -> j feeding each edge j -> i
    idx_ji = torch.repeat_interleave(torch.arange(source.numel(), device=device), per_edge)
    # Triplet t of edge j -> i takes the (t - first triplet of that edge)-th edge into j in by_target order.
    shift = (torch.cumsum(into, 0) - into).index_select(0, source) - (torch.cumsum(per_edge, 0) - per_edge)
    idx_kj = by_target.index_select(0, shift.index_select(0, idx_ji) + torch.arange(idx_ji.numel(), device=device))
    backtrack = source.index_select(0, idx_kj) == target.index_select(0, idx_ji)
    if not exclude_same_atom:
        same_atom = backtrack.nonzero().squeeze(1)
        offset_sum = cell_offsets.index_select(0, idx_kj.index_select(0, same_atom))
        offset_sum += cell_offsets.index_select(0, idx_ji.index_select(0, same_atom))
        backtrack[same_atom] = (offset_sum == 0).all(dim=-1)
    kept = (~backtrack).nonzero().squeeze(1)
    return Triplets(idx_kj=idx_kj.index_select(0, kept), idx_ji=idx_ji.index_select(0, kept))


def triplet_angles(edge_vec: Tensor, idx_kj: Tensor, idx_ji: Tensor) -> Tensor:
    """Bond angle (T,) at the shared atom j between the bonds to i and to k, in radians in [0, pi].

    With edge_vec the centre -> neighbour vectors of neighbors.py, j -> i is -edge_vec[idx_ji] and j -> k is
    edge_vec[idx_kj]. atan2(|u x w|, u . w) is accurate near 0 and pi, where acos of a cosine is not (and the
    gradient of the norm is undefined for exactly collinear bonds, as for any angle).
    Note: DimeNet++ as coded in PyG and in CDVAE feeds the angle between x_i - x_j and x_j - x_k (equivalently
    between edge_vec[idx_ji] and edge_vec[idx_kj]), which is pi minus this one: pretrained weights of those
    models need ``pi - triplet_angles``. (PyG's DimeNet, not ++, uses yet another angle, at i.)
    """
    to_i = -edge_vec.index_select(0, idx_ji)
    to_k = edge_vec.index_select(0, idx_kj)
    return torch.atan2(torch.linalg.cross(to_i, to_k).norm(dim=-1), (to_i * to_k).sum(dim=-1))
