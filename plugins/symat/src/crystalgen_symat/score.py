"""The denoiser ``distance_score``: one score per edge of the noisy crystal's periodic multigraph, mapped to a
score per atom by the chain rule (SyMat eq. 3).

For an edge e = (centre i, neighbour j, image k) of length d_e, d_e depends on p_i through
grad_{p_i} d_e = -(p_j + L k - p_i) / d_e, so the per-atom score is s_i = sum over edges into i of
o_e * (-u_e), u_e the unit vector from i to the neighbour's image. o_e is built from distances, angles and
torsions only, so s_i is translation-invariant, rotation-equivariant, permutation-equivariant and independent of
the periodic image each atom is stored as (Proposition 3.2). An atom's own periodic images (i = j) are left out:
their length does not depend on p_i.

The graph is rebuilt from the state on every call (Algorithm 1 rebuilds it at every Langevin step).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from crystalgen import Condition, Denoiser, DenoiserSpec, PeriodicGraph, edge_vectors, radius_graph_pbc
from crystalgen_symat.spherenet import SphereNet


@dataclass(frozen=True)
class EdgeScores:
    """The network's output on one graph: ``scores`` (E,) per edge, ``scored`` (E,) bool (False for an atom's own
    images), and the graph with float vectors in the network's dtype."""

    graph: PeriodicGraph
    edge_vec: Tensor
    scores: Tensor
    scored: Tensor


def per_atom(values: Tensor, edge_index: Tensor, edge_vec: Tensor, scored: Tensor, num_nodes: int) -> Tensor:
    """Eq. (3): sum over edges into each atom of values_e * (-u_e), (N, 3); unscored edges contribute nothing."""
    unit = edge_vec / edge_vec.norm(dim=-1, keepdim=True).clamp(min=1e-9)
    weights = torch.where(scored, values, torch.zeros_like(values))
    return scatter(-weights.unsqueeze(-1) * unit, edge_index[1], dim=0, dim_size=num_nodes, reduce="sum")


class DistanceScoreDenoiser(Denoiser):
    """Noisy fractional coordinates (with the types, lattice and atom counts fixed in the condition) -> sigma_t times
    the Cartesian score of every atom, the ``score`` prediction of the core's ``cartesian_ve`` process.

    The network's per-edge output o_e is trained by the model as a normalised score (distance targets divided by
    the per-level std, or the coordinate ablation's); ``output_scale[t]`` (set by the model, 1 until then) maps
    sum o_e (-u_e) to sigma_t times the score.

    Args:
        num_steps: T, the number of noise levels (set by the model).
        num_elements: atom types 1..num_elements (set by the model).
        cutoff: Angstrom, radius of the multigraph (official: 4 Perov-5, 3 Carbon-24, 5 MP-20).
        max_neighbors: nearest edges kept per atom (official 5; None: the paper's pure cutoff graph). Bounds the cost
            when noise piles atoms up.
        level_embedding: add a learned embedding of the noise level to every edge before the output MLP.
        Other arguments: :class:`~crystalgen_symat.spherenet.SphereNet`'s (``basis`` ``distance`` is the official
        score model, ``torsion`` the paper's SphereNet).
    """

    output_scale: Tensor
    spec = DenoiserSpec(
        predicts={"frac_coords": frozenset({"score"})},
        reads=frozenset({"frac_coords"}),
        conditions=frozenset({"atom_types", "lattice", "num_atoms"}),
        symmetries=frozenset({"permutation", "periodicity", "translation"}),
    )

    def __init__(self, num_steps: int, num_elements: int, cutoff: float = 5.0, max_neighbors: int | None = 12,
                 level_embedding: bool = True, **network: Any) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        self.max_neighbors = None if max_neighbors is None else int(max_neighbors)
        hidden = int(network.get("hidden_channels", 128))
        self.network = SphereNet(out_channels=None, cutoff=cutoff, num_elements=num_elements, **network)
        self.level = nn.Embedding(num_steps + 1, hidden) if level_embedding else None
        self.lin_rbf = nn.Linear(int(network.get("num_radial", 6)), hidden, bias=False)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, 1))
        self.register_buffer("output_scale", torch.ones(num_steps + 1, dtype=torch.float64))

    def edge_scores(self, frac_coords: Tensor, lattice: Tensor, num_atoms: Tensor, atom_types: Tensor, t: Tensor) -> EdgeScores:
        """o_e for every edge of the multigraph of the crystals (frac_coords (N, 3), lattice (B, 3, 3) Angstrom,
        num_atoms (B,), atom_types (N,) atomic numbers, t (B,) levels)."""
        dtype = self.lin_rbf.weight.dtype
        with torch.no_grad():
            graph = radius_graph_pbc(frac_coords.detach().double(), lattice.detach().double(), num_atoms, self.cutoff,
                                     self.max_neighbors, keep_ties=True)
        vec = edge_vectors(frac_coords.to(dtype), lattice.to(dtype), num_atoms, graph.edge_index, graph.cell_offsets)
        _, e, rbf = self.network(atom_types, graph.edge_index, graph.cell_offsets, vec)
        h = e * self.lin_rbf(rbf)
        if self.level is not None:
            crystal = torch.repeat_interleave(torch.arange(num_atoms.numel(), device=num_atoms.device), num_atoms)
            h = h + self.level(t[crystal[graph.edge_index[1]]])
        scored = graph.edge_index[0] != graph.edge_index[1]
        return EdgeScores(graph, vec, self.head(h).squeeze(-1), scored)

    def forward(self, state: dict[str, Tensor], t: Tensor, condition: Condition) -> dict[str, Tensor]:
        d = condition.data
        frac = state["frac_coords"]
        out = self.edge_scores(frac, d["lattice"], d["num_atoms"], d["atom_types"], t)
        vectors = per_atom(out.scores, out.graph.edge_index, out.edge_vec, out.scored, frac.shape[0])
        crystal = torch.repeat_interleave(torch.arange(t.numel(), device=t.device), d["num_atoms"])
        return {"frac_coords": (vectors * self.output_scale[t][crystal].to(vectors.dtype).unsqueeze(-1)).to(frac.dtype)}
