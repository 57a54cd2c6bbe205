"""The Gaussian-posterior encoder ``spherenet``: SphereNet on the crystal's periodic multigraph, pooled over atoms,
then q(z | M) = N(mu, diag(exp(logvar))) (SyMat section 3.3 and appendix B)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch_geometric.data import Batch
from torch_geometric.utils import scatter

from crystalgen import Encoder, EncoderSpec, edge_vectors, radius_graph_pbc
from crystalgen_symat.spherenet import SphereNet

CELL = frozenset({"frac_coords", "lattice", "atom_types", "num_atoms"})
READOUTS = ("sum", "mean")


class SphereNetEncoder(Encoder):
    """Crystal batch -> (mu, logvar), each (B, latent_dim): the output ``gaussian_posterior``.

    Invariant to permutation, rotation, translation and the choice of periodic images and of a unit cell of the
    same size; with ``readout="mean"`` also to supercells. With the paper's ``sum`` a k-fold supercell gives k
    times the pooled features: the atom counts the decoder reconstructs are not supercell-invariant either.

    Args:
        latent_dim: size of z (set by the model: the composition and lattice latents together).
        readout: ``sum`` (paper, official) or ``mean`` over atoms.
        max_neighbors: the nearest edges kept per atom (whole distance shells, so symmetric neighbours are never
            split); bounds the triplets and torsion pairs on dense crystals. None: every edge within the cutoff.
        Other arguments: :class:`~crystalgen_symat.spherenet.SphereNet`'s (cutoff in Angstrom, the radius graph's
        too).
    """

    spec = EncoderSpec(provides=frozenset({"gaussian_posterior"}), reads=CELL)

    def __init__(self, latent_dim: int, readout: str = "sum", max_neighbors: int | None = 12, **network: Any) -> None:
        super().__init__()
        network = {"out_channels": 256, "cutoff": 5.0, **network}
        if readout not in READOUTS:
            raise ValueError(f"encoder readout must be one of {READOUTS}, got {readout!r}")
        self.readout = readout
        self.max_neighbors = None if max_neighbors is None else int(max_neighbors)
        self.network = SphereNet(**network)
        out = int(network.get("out_channels", 256))
        self.cutoff = float(network.get("cutoff", 5.0))
        self.fc_mu = nn.Linear(out, latent_dim)
        self.fc_var = nn.Linear(out, latent_dim)
        nn.init.zeros_(self.fc_var.weight)  # q starts near N(mu, I), as the official initialisation (weights 1e-10)
        nn.init.zeros_(self.fc_var.bias)

    def forward(self, batch: Batch) -> tuple[Tensor, Tensor]:
        dtype = self.fc_mu.weight.dtype
        with torch.no_grad():  # exact distances, so that symmetric neighbours tie exactly at the cap
            graph = radius_graph_pbc(batch.frac_coords.double(), batch.lattice.double(), batch.num_atoms, self.cutoff,
                                     self.max_neighbors, keep_ties=True)
        vec = edge_vectors(batch.frac_coords.to(dtype), batch.lattice.to(dtype), batch.num_atoms, graph.edge_index,
                           graph.cell_offsets)
        per_atom, _, _ = self.network(batch.atom_types, graph.edge_index, graph.cell_offsets, vec)
        assert per_atom is not None  # built with out_channels
        pooled = scatter(per_atom, batch.batch, dim=0, dim_size=batch.num_graphs, reduce=self.readout)
        return self.fc_mu(pooled), self.fc_var(pooled)
