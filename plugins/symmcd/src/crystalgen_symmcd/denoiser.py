"""SymmCD's denoiser (paper appendix E.1): message passing on the fully connected graph of representatives.

Node features are initialised from the noisy atom type, the noisy site symmetry (each of the 15 axes embedded
by one shared map, then mixed), the space-group encoding, the time step and Fourier features of the
coordinates; every layer computes messages m_ij = phi_m(h_i, h_j, k, psi(x_j - x_i)) on all pairs of a crystal
(self-pairs included) and updates h_i += phi_h(h_i, mean_j m_ij). The network is not equivariant: the
conventional cell is a canonical frame (paper section 4.3). It is, by construction, equivariant to permutations
of the representatives, and the Fourier features of x_j - x_i use integer frequencies, so they are unchanged
by integer shifts of either coordinate.

Outputs: the normalised score of X' (the wrapped normal process's "score" parameterisation), eps of k (from
the mean of the node features; official code: mean, paper: sum), logits of A' and logits of S (a rank-r
bilinear form between per-axis and per-class factors, as in the official code).

With ``site_symmetry=False`` the same network runs on the atoms of a full cell (no site-symmetry input and
no S head): the "conventional unit cell" model of the paper's efficiency comparison (section 5.4).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from crystalgen import Condition, Denoiser, DenoiserSpec, PeriodicFourierFeatures, SinusoidalTimeEmbedding
from crystalgen_symmcd.symmetry.axes import NUM_AXES
from crystalgen_symmcd.symmetry.site_symmetry import NUM_SITE_CLASSES
from crystalgen_symmcd.symmetry.space_group import ENCODING_DIM

NUM_ELEMENTS = 94  # Z = 1..94, as in the official code


def fully_connected_edges(batch: Tensor, num_graphs: int) -> tuple[Tensor, Tensor]:
    """(src, dst) of every ordered pair of nodes of the same graph, self-pairs included (graph of node i is
    ``batch[i]``; nodes of one graph must be contiguous, as torch_geometric batches them)."""
    counts = torch.bincount(batch, minlength=num_graphs)
    starts = torch.cumsum(counts, 0) - counts
    degree = counts[batch]
    dst = torch.repeat_interleave(torch.arange(len(batch), device=batch.device), degree)
    first_edge = torch.cumsum(degree, 0) - degree
    src = starts[batch[dst]] + (torch.arange(len(dst), device=batch.device) - first_edge[dst])
    return src, dst


def mlp(dims: list[int], final_activation: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if final_activation or i < len(dims) - 2:
            layers.append(nn.SiLU())
    return nn.Sequential(*layers)


class MessagePassingLayer(nn.Module):
    """h_i <- h_i + phi_h([LN(h)_i, mean_j phi_m([LN(h)_i, LN(h)_j, k, psi(x_j - x_i)])])."""

    def __init__(self, hidden: int, edge_features: int, layer_norm: bool) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden) if layer_norm else nn.Identity()
        self.edge_mlp = mlp([2 * hidden + edge_features, hidden, hidden])
        self.node_mlp = mlp([2 * hidden, hidden, hidden])

    def forward(self, h: Tensor, edge_attr: Tensor, src: Tensor, dst: Tensor) -> Tensor:
        x = self.norm(h)
        messages = self.edge_mlp(torch.cat([x[dst], x[src], edge_attr], dim=-1))
        aggregated = scatter(messages, dst, dim=0, dim_size=h.shape[0], reduce="mean")
        return h + self.node_mlp(torch.cat([x, aggregated], dim=-1))


class SymmCDDenoiser(Denoiser):
    """Registered as denoiser ``symmcd``. Reads the noisy ``frac_coords``, ``atom_types``, ``lattice_k`` and
    ``site_symmetry`` and the conditions ``encoding`` (B, 397) and ``crystal`` (M,) (node -> crystal, contiguous).

    Args:
        hidden: width of node features (paper: 1024).
        num_layers: message-passing layers (paper: 8).
        num_frequencies: Fourier frequencies per coordinate (paper: 128).
        time_dim: sinusoidal time embedding size (paper: 10).
        spacegroup_dim: output size of the space-group MLP (official latent_dim: 512).
        site_symmetry_dim: output size of the site-symmetry mixer (official: 512).
        site_axis_dim: per-axis embedding size of the site symmetry (official: 4).
        site_logit_rank: rank of the bilinear site-symmetry head (official: 8).
        layer_norm: pre-LayerNorm in each layer and a final LayerNorm (paper: on).
        site_symmetry: False for the full-cell variant (no S input or output).
    """

    spec = DenoiserSpec(
        predicts={"frac_coords": frozenset({"score", "eps"}), "lattice_k": frozenset({"eps", "score", "x0"}),
                  "atom_types": frozenset({"logits"}), "site_symmetry": frozenset({"logits"})},
        reads=frozenset({"frac_coords", "atom_types", "lattice_k", "site_symmetry"}),
        conditions=frozenset({"encoding", "crystal"}),
        symmetries=frozenset({"permutation", "periodicity"}),
    )

    @classmethod
    def declare(cls, args: Mapping[str, Any]) -> DenoiserSpec:
        """Without site symmetries it neither reads nor predicts ``site_symmetry``."""
        if args.get("site_symmetry", True):
            return cls.spec
        return replace(cls.spec, predicts={k: v for k, v in cls.spec.predicts.items() if k != "site_symmetry"},
                       reads=cls.spec.reads - {"site_symmetry"})

    def __init__(self, hidden: int = 1024, num_layers: int = 8, num_frequencies: int = 128, time_dim: int = 10,
                 spacegroup_dim: int = 512, site_symmetry_dim: int = 512, site_axis_dim: int = 4,
                 site_logit_rank: int = 8, layer_norm: bool = True, site_symmetry: bool = True) -> None:
        super().__init__()
        self.site_symmetry = site_symmetry
        self.site_logit_rank = site_logit_rank
        self.time_embedding = SinusoidalTimeEmbedding(time_dim)
        self.fourier = PeriodicFourierFeatures(num_frequencies)
        fourier_dim = self.fourier.out_dim(3)
        self.type_embedding = nn.Linear(NUM_ELEMENTS, hidden)
        self.spacegroup_embedding = nn.Sequential(
            nn.Linear(ENCODING_DIM, 128), nn.ReLU(), nn.LayerNorm(128),
            nn.Linear(128, 128), nn.ReLU(), nn.LayerNorm(128),
            nn.Linear(128, spacegroup_dim),
        )
        node_in = hidden + time_dim + spacegroup_dim + fourier_dim
        if site_symmetry:
            self.axis_embedding = nn.Linear(NUM_SITE_CLASSES, site_axis_dim)
            self.site_mixer = nn.Linear(NUM_AXES * site_axis_dim, site_symmetry_dim)
            node_in += site_symmetry_dim
        self.node_init = nn.Linear(node_in, hidden)
        self.layers = nn.ModuleList(MessagePassingLayer(hidden, 6 + fourier_dim, layer_norm) for _ in range(num_layers))
        self.final_norm = nn.LayerNorm(hidden) if layer_norm else nn.Identity()
        self.coord_head = nn.Linear(hidden, 3, bias=False)
        self.lattice_head = nn.Linear(hidden, 6, bias=False)
        self.type_head = nn.Linear(hidden, NUM_ELEMENTS)
        if site_symmetry:
            self.axis_factors = nn.Linear(hidden, NUM_AXES * site_logit_rank)
            self.class_factors = nn.Linear(hidden, NUM_SITE_CLASSES * site_logit_rank)

    def forward(self, state: dict[str, Tensor], t: Tensor, condition: Condition) -> dict[str, Tensor]:
        """
        Args:
            state: ``frac_coords`` (M, 3) noisy representatives (fractional), ``atom_types`` (M,) noisy type classes
                0..93 (Z - 1), ``lattice_k`` (B, 6) noisy k and, with site symmetries, ``site_symmetry`` (M, 15)
                noisy site-symmetry classes.
            t: (B,) integer time steps.
            condition: ``data["encoding"]`` (B, 397) binary space-group vectors, ``data["crystal"]`` (M,) crystal
                of each node (contiguous).
        Returns:
            ``frac_coords`` (M, 3), ``lattice_k`` (B, 6), ``atom_types`` (M, 94) logits and, with site
            symmetries, ``site_symmetry`` (M, 15, 13) logits.
        """
        lattice_k, batch = state["lattice_k"], condition.data["crystal"]
        num_graphs = lattice_k.shape[0]
        x = state["frac_coords"].to(torch.float32)
        graph = torch.cat([self.time_embedding(t), self.spacegroup_embedding(condition.data["encoding"].to(torch.float32))], -1)
        parts = [self.type_embedding(nn.functional.one_hot(state["atom_types"], NUM_ELEMENTS).to(torch.float32)), graph[batch],
                 self.fourier(x)]
        if self.site_symmetry:
            axes = self.axis_embedding(nn.functional.one_hot(state["site_symmetry"], NUM_SITE_CLASSES).to(torch.float32))
            parts.append(self.site_mixer(axes.flatten(1)))
        h = self.node_init(torch.cat(parts, dim=-1))

        src, dst = fully_connected_edges(batch, num_graphs)
        k = lattice_k.to(torch.float32)
        edge_attr = torch.cat([k[batch[dst]], self.fourier(x[src] - x[dst])], dim=-1)
        for layer in self.layers:
            h = layer(h, edge_attr, src, dst)
        h = self.final_norm(h)

        pooled = scatter(h, batch, dim=0, dim_size=num_graphs, reduce="mean")
        out = {
            "frac_coords": self.coord_head(h),
            "lattice_k": self.lattice_head(pooled),
            "atom_types": self.type_head(h),
        }
        if self.site_symmetry:
            r = self.site_logit_rank
            axes = self.axis_factors(h).reshape(-1, NUM_AXES, r)
            classes = self.class_factors(h).reshape(-1, NUM_SITE_CLASSES, r)
            out["site_symmetry"] = torch.einsum("nar,ncr->nac", axes, classes)
        return out
