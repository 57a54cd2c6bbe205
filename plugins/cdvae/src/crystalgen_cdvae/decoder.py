"""PGNN_DEC (CDVAE appendix D.3, F.3): the conditional score network, GemNet-T on the noisy crystal.

h_i^0 = Linear(e(a_i) || z) (z enters once, at the input, as in the official decoder); after the interaction
blocks, h_i^K gives the type logits (Linear to the element classes) and the direct vector output of GemNet gives
the coordinate score times sigma. The network is not conditioned on the noise level (s_X(M~|z; sigma) =
s_X(M~|z) / sigma, D.3): the level enters only through the process's score scaling.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from crystalgen.denoisers.gemnet_t import GemNetT, interaction_graph

#: Scale factors that CDVAE shipped for exactly the paper's decoder (cdvae/pl_modules/gemnet/gemnet-dT.json at
#: txie-93/cdvae f857f59, "tri_gaussian128": 3 blocks, 128 Gaussian radial functions, widths 128/64/16/16/64).
#: The OutBlock_*_sum factors of that file scale the energy head, which CDVAE discards and we do not build.
PAPER_SCALE_FACTORS: dict[str, float] = {
    "TripInteraction_1_had_rbf": 18.873615264892578, "TripInteraction_1_sum_cbf": 7.996850490570068,
    "AtomUpdate_1_sum": 1.220463752746582, "TripInteraction_2_had_rbf": 16.10817527770996,
    "TripInteraction_2_sum_cbf": 7.614634037017822, "AtomUpdate_2_sum": 0.9690994620323181,
    "TripInteraction_3_had_rbf": 15.01930046081543, "TripInteraction_3_sum_cbf": 7.025179862976074,
    "AtomUpdate_3_sum": 0.8903237581253052, "OutBlock_0_had": 16.161039352416992,
    "OutBlock_1_had": 13.54678726196289, "OutBlock_2_had": 12.754337310791016, "OutBlock_3_had": 13.484951972961426,
}


class CDVAEDecoder(nn.Module):
    """(z, noisy fractional coords, types, lattice) -> (coordinate output (N, 3) Cartesian, type logits (N, K)).

    Args:
        latent_dim: size of z.
        num_elements: type classes, Z = 1 .. num_elements (CDVAE: 100).
        hidden_dim: atom and edge widths of GemNet-T (CDVAE: 128).
        cutoff, max_neighbors: the on-the-fly graph, neighbours within ``cutoff`` Angstrom, nearest
            ``max_neighbors`` distance shells per atom (CDVAE: 7 A, 20).
        gemnet: other GemNetT arguments (emb_trip, emb_bilinear, emb_rbf, emb_cbf, num_spherical, num_radial,
            num_blocks, ...).
    """

    def __init__(self, latent_dim: int, num_elements: int = 100, hidden_dim: int = 128, cutoff: float = 7.0,
                 max_neighbors: int = 20, **gemnet: int) -> None:
        super().__init__()
        self.cutoff = float(cutoff)
        self.max_neighbors = int(max_neighbors)
        self.atom_embedding = nn.Embedding(num_elements, hidden_dim)
        nn.init.uniform_(self.atom_embedding.weight, -math.sqrt(3), math.sqrt(3))  # unit variance, as GemNet's
        self.atom_latent = nn.Linear(hidden_dim + latent_dim, hidden_dim)
        self.gemnet = GemNetT(emb_atom=hidden_dim, emb_edge=hidden_dim, cutoff=cutoff, num_targets=1, **gemnet)
        self.fc_atom = nn.Linear(hidden_dim, num_elements)

    def forward(self, z: Tensor, frac_coords: Tensor, atom_types: Tensor, num_atoms: Tensor,
                lattice: Tensor) -> tuple[Tensor, Tensor]:
        """z (B, latent); frac_coords (N, 3); atom_types (N,) atomic numbers; num_atoms (B,); lattice (B, 3, 3) rows
        in Angstrom. The coordinate output is equivariant (rotates with the lattice); the logits invariant."""
        graph = interaction_graph(frac_coords, lattice, num_atoms, self.cutoff, self.max_neighbors)
        z_per_atom = torch.repeat_interleave(z, num_atoms, dim=0, output_size=frac_coords.shape[0])
        h = self.atom_latent(torch.cat([self.atom_embedding(atom_types - 1), z_per_atom], dim=-1))
        h, vectors = self.gemnet(h, graph)
        return vectors.squeeze(1), self.fc_atom(h)

    def set_scale_factors(self, values: Mapping[str, float]) -> None:
        self.gemnet.set_scale_factors(values)
