"""The denoiser ``gemnet_t``: GemNet-T on the noisy crystal, a coordinate score and type logits per atom.

h_i^0 = Linear(e(a_i) || z) (a latent code z enters once, at the input, as in CDVAE's decoder PGNN_DEC, appendix
D.3; without ``latent_dim`` there is none; with ``step_embedding`` the sinusoidal embedding of the step t is added
to e(a_i) first, GemsDiff eq. 8); after the interaction blocks, h_i^K gives the type logits (Linear to
the element classes) and the direct vector output of GemNet gives the coordinate score times sigma (Cartesian,
equivariant). The network is not conditioned on the noise level (CDVAE: s_X(M~|z; sigma) = s_X(M~|z) / sigma): the
level enters only through the process's score scaling, as :class:`~crystalgen.processes.CartesianVE` does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import Tensor, nn

from crystalgen.denoisers.base import Denoiser
from crystalgen.denoisers.embeddings import sinusoidal_embedding
from crystalgen.denoisers.gemnet_t.graph import interaction_graph
from crystalgen.denoisers.gemnet_t.network import GemNetT
from crystalgen.specs import DenoiserSpec
from crystalgen.state import Condition


class GemNetTDenoiser(Denoiser):
    """Noisy ``frac_coords`` (N, 3) and ``atom_types`` (N,) atomic numbers, with the conditions ``lattice`` (B, 3, 3)
    rows in Angstrom, ``num_atoms`` (B,) and (with ``latent_dim``) ``z`` (B, latent_dim) -> ``frac_coords`` (N, 3)
    Cartesian score times sigma (rotates with the lattice) and ``atom_types`` (N, K) logits (invariant).

    Args:
        num_elements: type classes, Z = 1 .. num_elements (CDVAE: 100; set by the model).
        latent_dim: size of the latent code z (0: none; set by the model).
        hidden_dim: atom and edge widths of GemNet-T (CDVAE: 128).
        cutoff, max_neighbors: the on-the-fly graph, neighbours within ``cutoff`` Angstrom, nearest
            ``max_neighbors`` distance shells per atom (CDVAE: 7 A, 20).
        step_embedding: condition on the step t by adding sinusoidal_embedding(t, hidden_dim, step_period) to each
            atom's element embedding (GemsDiff eq. 8). Off by default: CDVAE's score net is not conditioned on the
            level.
        step_period: the period base n of eq. 8 (0: num_steps, as GemsDiff's code; transformers use 10000).
        num_steps: T (set by the model); only read with ``step_embedding``.
        gemnet: other GemNetT arguments (emb_trip, emb_bilinear, emb_rbf, emb_cbf, num_spherical, num_radial,
            num_blocks, ...).
    """

    spec = DenoiserSpec(predicts={"frac_coords": frozenset({"score"}), "atom_types": frozenset({"logits"})},
                        reads=frozenset({"frac_coords", "atom_types"}),
                        conditions=frozenset({"lattice", "num_atoms", "z"}),
                        symmetries=frozenset({"permutation", "periodicity", "translation"}))

    @classmethod
    def declare(cls, args: Mapping[str, Any]) -> DenoiserSpec:
        """Without a latent code it needs no ``z``."""
        if args.get("latent_dim", 0):
            return cls.spec
        return replace(cls.spec, conditions=cls.spec.conditions - {"z"})

    def __init__(self, num_elements: int = 100, latent_dim: int = 0, hidden_dim: int = 128, cutoff: float = 7.0,
                 max_neighbors: int = 20, step_embedding: bool = False, step_period: float = 0.0, num_steps: int = 1000,
                 **gemnet: int) -> None:
        super().__init__()
        self.step_embedding = bool(step_embedding)
        self.step_period = float(step_period) if step_period > 0 else float(num_steps)
        self.cutoff = float(cutoff)
        self.max_neighbors = int(max_neighbors)
        self.latent_dim = int(latent_dim)
        self.atom_embedding = nn.Embedding(num_elements, hidden_dim)
        nn.init.uniform_(self.atom_embedding.weight, -math.sqrt(3), math.sqrt(3))  # unit variance, as GemNet's
        self.atom_latent = nn.Linear(hidden_dim + self.latent_dim, hidden_dim)
        self.gemnet = GemNetT(emb_atom=hidden_dim, emb_edge=hidden_dim, cutoff=cutoff, num_targets=1, readout=True,
                              **gemnet)
        self.fc_atom = nn.Linear(hidden_dim, num_elements)

    def forward(self, state: dict[str, Tensor], t: Tensor, condition: Condition) -> dict[str, Tensor]:
        frac_coords, atom_types = state["frac_coords"], state["atom_types"]
        num_atoms, lattice = condition.data["num_atoms"], condition.data["lattice"]
        graph = interaction_graph(frac_coords, lattice, num_atoms, self.cutoff, self.max_neighbors)
        h = self.atom_embedding(atom_types - 1)
        if self.step_embedding:
            per_atom_t = torch.repeat_interleave(t, num_atoms, dim=0, output_size=frac_coords.shape[0])
            h = h + sinusoidal_embedding(per_atom_t, h.shape[-1], self.step_period).to(h.dtype)
        if self.latent_dim:
            z_per_atom = torch.repeat_interleave(condition.data["z"], num_atoms, dim=0, output_size=frac_coords.shape[0])
            h = torch.cat([h, z_per_atom], dim=-1)
        h, vectors = self.gemnet(self.atom_latent(h), graph)
        return {"frac_coords": vectors.squeeze(1), "atom_types": self.fc_atom(h)}

    def set_scale_factors(self, values: Mapping[str, float]) -> None:
        self.gemnet.set_scale_factors(values)
