"""The Gaussian-posterior encoder ``dimenet_pp`` (CDVAE's PGNN_ENC, appendix D.1, F.3): DimeNet++ on the periodic
multigraph, mean-pooled, then q(z | M) = N(mu, diag(exp(logvar))).

The network is :class:`~crystalgen.encoders.dimenet_pp.network.DimeNetPP`, the one CDVAE's property models run too,
fed with our own periodic edges and triplets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch

from crystalgen.encoders.base import Encoder
from crystalgen.encoders.dimenet_pp.network import DimeNetPP
from crystalgen.geometry.neighbors import PeriodicGraph, edge_vectors, radius_graph_pbc
from crystalgen.geometry.triplets import triplets
from crystalgen.specs import EncoderSpec

#: The encoder's multigraphs: built on the fly from a radius, or CrystalNN bonds stored at preprocessing.
GRAPHS = ("radius", "crystalnn")
CELL = frozenset({"frac_coords", "lattice", "atom_types", "num_atoms"})
#: Data fields holding the CrystalNN bonds (written by CDVAE's transform with ``encoder_graph="crystalnn"``).
CRYSTALNN_FIELDS = frozenset({"nn_edge_index", "nn_cell_offsets"})


class DimeNetPPEncoder(Encoder):
    """Crystal batch -> (mu, logvar), each (B, latent_dim): the output ``gaussian_posterior``. Invariant to
    permutation, rotation, translation and the choice of unit cell (supercells included) when ``graph="radius"``.

    Args:
        latent_dim: size of z (256 in CDVAE; set by the model).
        graph: ``radius`` (all neighbours within ``cutoff`` Angstrom, the nearest ``max_neighbors`` distance
            shells kept, built here) or ``crystalnn`` (bonds stored by the transform, as CDVAE's official code).
        cutoff: Angstrom; the radius of the radial/spherical bases (and of the radius graph).
        Other arguments: DimeNet++'s widths (CDVAE: hidden 128, 4 blocks, int_emb 64, basis_emb 8, out_emb 256,
        7 spherical and 6 radial basis functions, envelope exponent 5).
    """

    spec = EncoderSpec(provides=frozenset({"gaussian_posterior"}), reads=CELL)

    @classmethod
    def declare(cls, args: Mapping[str, Any]) -> EncoderSpec:
        """On CrystalNN bonds it also reads the stored bonds."""
        return EncoderSpec(cls.spec.provides, CELL | (CRYSTALNN_FIELDS if args.get("graph") == "crystalnn" else frozenset()))

    def __init__(self, latent_dim: int, graph: str = "radius", hidden_channels: int = 128, num_blocks: int = 4,
                 int_emb_size: int = 64, basis_emb_size: int = 8, out_emb_channels: int = 256, num_spherical: int = 7,
                 num_radial: int = 6, cutoff: float = 7.0, max_neighbors: int = 20, envelope_exponent: int = 5) -> None:
        super().__init__()
        if graph not in GRAPHS:
            raise ValueError(f"encoder graph must be one of {GRAPHS}, got {graph!r}")
        self.graph = graph
        self.cutoff = float(cutoff)
        self.max_neighbors = int(max_neighbors)
        self.dimenet = DimeNetPP(
            num_targets=latent_dim, hidden_channels=hidden_channels, num_blocks=num_blocks, int_emb_size=int_emb_size,
            basis_emb_size=basis_emb_size, out_emb_channels=out_emb_channels, num_spherical=num_spherical,
            num_radial=num_radial, cutoff=cutoff, envelope_exponent=envelope_exponent, readout="mean",
        )
        self.fc_mu = nn.Linear(latent_dim, latent_dim)
        self.fc_var = nn.Linear(latent_dim, latent_dim)

    def edges(self, batch: Batch) -> tuple[Tensor, Tensor, Tensor]:
        """(edge_index (2, E), cell_offsets (E, 3), edge_vec (E, 3) Angstrom) of the encoder's multigraph."""
        if self.graph == "crystalnn":
            if "nn_edge_index" not in batch:
                raise ValueError("the encoder runs on CrystalNN bonds but the batch has none: preprocess with a transform "
                                 "that stores them (CDVAE's with encoder_graph='crystalnn'; model.encoder.graph must match the data)")
            edge_index, offsets = batch.nn_edge_index, batch.nn_cell_offsets
        else:
            # Exact distances (float64) so that symmetry-equivalent neighbours tie exactly at the cap.
            graph: PeriodicGraph = radius_graph_pbc(batch.frac_coords.double(), batch.lattice.double(), batch.num_atoms,
                                                    self.cutoff, self.max_neighbors, keep_ties=True)
            edge_index, offsets = graph.edge_index, graph.cell_offsets
        dtype = self.fc_mu.weight.dtype
        vec = edge_vectors(batch.frac_coords.to(dtype), batch.lattice.to(dtype), batch.num_atoms, edge_index, offsets)
        return edge_index, offsets, vec

    def forward(self, batch: Batch) -> tuple[Tensor, Tensor]:
        edge_index, offsets, vec = self.edges(batch)
        trip = triplets(edge_index, offsets, batch.num_nodes)
        pooled = self.dimenet(batch.atom_types, edge_index, vec, trip.idx_kj, trip.idx_ji, batch.batch, batch.num_graphs)
        return self.fc_mu(pooled), self.fc_var(pooled)


def reparameterize(mu: Tensor, logvar: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """z = mu + exp(logvar / 2) * eps, eps ~ N(0, I) (Kingma & Welling 2014)."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps
