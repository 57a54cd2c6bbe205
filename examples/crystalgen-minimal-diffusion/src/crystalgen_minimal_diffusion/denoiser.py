"""``minimal_mlp``: a per-atom MLP with mean pooling over each crystal, the smallest network that sees the whole
cell. It is equivariant to the order of a crystal's atoms and periodic in their fractional coordinates, and says
so in its spec, so that crystalgen.testing.check_denoiser holds it to both."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.utils import scatter

from crystalgen import Condition, Denoiser, DenoiserSpec, PeriodicFourierFeatures, SinusoidalTimeEmbedding


class MinimalDenoiser(Denoiser):
    """Atoms (Fourier features of frac_coords, type embedding, lattice and time) -> MLP -> crystal mean -> MLP.

    Args:
        num_elements: K, classes of ``atom_types`` (set by the model).
        num_steps: T; time enters as t / T (set by the model).
        hidden: width of every layer.
        num_frequencies: Fourier frequencies per fractional coordinate.
    """

    spec = DenoiserSpec(
        predicts={"frac_coords": frozenset({"score", "eps"}), "lattice": frozenset({"eps", "x0"}),
                  "atom_types": frozenset({"logits"})},
        reads=frozenset({"frac_coords", "lattice", "atom_types"}),
        conditions=frozenset({"crystal"}),
        symmetries=frozenset({"permutation", "periodicity"}),
    )

    def __init__(self, num_elements: int, num_steps: int, hidden: int = 64, num_frequencies: int = 4) -> None:
        super().__init__()
        self.fourier = PeriodicFourierFeatures(num_frequencies)
        self.time = SinusoidalTimeEmbedding(hidden, scale=1000.0 / num_steps)  # its frequencies suit t in 0..1000
        self.types = nn.Embedding(num_elements, hidden)
        self.atom = nn.Sequential(nn.Linear(self.fourier.out_dim(3) + 2 * hidden + 6, hidden), nn.SiLU(),
                                  nn.Linear(hidden, hidden), nn.SiLU())
        self.mix = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.SiLU())
        self.frac_head = nn.Linear(hidden, 3)
        self.type_head = nn.Linear(hidden, num_elements)
        self.lattice_head = nn.Sequential(nn.Linear(2 * hidden + 6, hidden), nn.SiLU(), nn.Linear(hidden, 6))

    def forward(self, state: dict[str, Tensor], t: Tensor, condition: Condition) -> dict[str, Tensor]:
        crystal, num_crystals = condition.data["crystal"], condition.num_crystals
        lattice, time = state["lattice"].float(), self.time(t)
        h = self.atom(torch.cat([self.fourier(state["frac_coords"].float()), self.types(state["atom_types"]),
                                 lattice[crystal], time[crystal]], dim=-1))
        h = self.mix(torch.cat([h, scatter(h, crystal, dim=0, dim_size=num_crystals, reduce="mean")[crystal]], dim=-1))
        pooled = scatter(h, crystal, dim=0, dim_size=num_crystals, reduce="mean")
        return {"frac_coords": self.frac_head(h), "atom_types": self.type_head(h),
                "lattice": self.lattice_head(torch.cat([pooled, time, lattice], dim=-1))}
