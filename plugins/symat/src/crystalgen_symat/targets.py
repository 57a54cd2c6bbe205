"""Denoising targets of the coordinate score (SyMat section 3.4 and appendix B), and the per-level distance std.

Both start from the clean atom aligned to the noisy one: p_hat_i is the periodic image of p_i nearest its noisy
copy (CDVAE's alignment), so ``displacement`` = p_hat_i - p_tilde_i is the shortest periodic displacement.

* distance space (the method): for every edge e = (i, j, k) of the noisy crystal's multigraph the clean length
  d_hat_e = |p_hat_j + L k - p_hat_i| and the noisy one d_tilde_e; under N(d_hat_e, sigma_hat_t^2) the distance
  score is (d_hat_e - d_tilde_e) / sigma_hat_t^2, and sigma_hat_t times it, (d_hat_e - d_tilde_e) / sigma_hat_t,
  is what the network's o_e learns. It depends only on distances, so it is invariant to translating, rotating or
  re-imaging the noisy crystal.
* coordinate space (the ablation of Table 3): sigma_t times the Gaussian score of the coordinates,
  displacement / sigma_t (CDVAE's target). Translating the noisy crystal while the clean one stays put changes it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch_geometric.data import Data

from crystalgen import collate, minimum_image, radius_graph_pbc


def aligned_displacement(x0: Tensor, x_t: Tensor, lattice: Tensor, num_atoms: Tensor) -> Tensor:
    """(N, 3) Cartesian p_hat_i - p_tilde_i, Angstrom: from each noisy atom to the nearest image of its clean one."""
    displacement, _ = minimum_image(x0 - x_t, lattice.to(x0.dtype), num_atoms)
    return displacement


def distance_change(edge_index: Tensor, edge_vec: Tensor, displacement: Tensor) -> Tensor:
    """(E,) d_hat_e - d_tilde_e: clean minus noisy length of every edge, on the edge's own image offset."""
    source, target = edge_index
    clean = edge_vec + displacement.to(edge_vec.dtype)[source] - displacement.to(edge_vec.dtype)[target]
    return clean.norm(dim=-1) - edge_vec.norm(dim=-1)


#: Crystals per batch and generator seed of the sigma_hat_t estimate (part of its cache key, model.fit_statistics).
NORM_BATCH_SIZE, NORM_SEED = 64, 0


def fit_distance_std(train: Sequence[Data], process, cutoff: float, max_neighbors: int | None, crystals: int,
                     batch_size: int = NORM_BATCH_SIZE, seed: int = NORM_SEED) -> Tensor:
    """sigma_hat_t for t = 0..T (index 0 unused, 1): the empirical std of d_tilde_e - d_hat_e over the edges of
    noisy copies of the training crystals at level t (appendix B: "manually perturbing all materials ... and
    calculating the empirical standard deviation"). Deterministic: the first ``crystals`` of a seeded permutation,
    seeded noise; the graph is the score model's (same cutoff and cap), an atom's own images left out."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(train), generator=generator)[:crystals].tolist()
    chunks = [collate([train[i] for i in order[s:s + batch_size]]) for s in range(0, len(order), batch_size)]
    num_steps = process.num_steps
    std = torch.ones(num_steps + 1, dtype=torch.float64)
    with torch.no_grad():
        for t in range(1, num_steps + 1):
            changes = []
            for batch in chunks:
                x0, lattice = batch.frac_coords.double(), batch.lattice.double()
                levels = torch.full((batch.num_nodes,), t, dtype=torch.long)
                x_t = process.add_noise(x0, levels, generator=generator, lattice=lattice, num_atoms=batch.num_atoms).x_t
                graph = radius_graph_pbc(x_t, lattice, batch.num_atoms, cutoff, max_neighbors, keep_ties=True)
                scored = graph.edge_index[0] != graph.edge_index[1]
                displacement = aligned_displacement(x0, x_t, lattice, batch.num_atoms)
                changes.append(distance_change(graph.edge_index, graph.edge_vec, displacement)[scored])
            values = torch.cat(changes)
            if values.numel() > 1:
                std[t] = values.std()
    return std
