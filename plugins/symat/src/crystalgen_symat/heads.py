"""SyMat's VAE decoders (section 3.3): the atom-type set c = {(e_1, n_1), ..., (e_k, n_k)} from z^A and the six
lattice parameters from z^L, their training targets and losses, and the rebuild of the atom multiset and lattice.

* MLP^k: k, the number of distinct elements, as a max_atoms-class classification (class c means k = c + 1);
* MLP^e: one logit per element (E binary tasks); the k elements of highest probability are taken;
* MLP^n: the count n_e of each chosen element from (z^A, an embedding of e), max_atoms classes (c means c + 1);
* MLP^L: the lengths and angles, standardised with the training set's mean and std (regression). With
  ``scale_lengths`` the lengths are divided by N^(1/3) first (official code), and multiplied back by the generated
  N at decoding.
A is rebuilt as e_1 repeated n_1 times, then e_2 ..., L from the six parameters (any orientation: the
coordinates are generated in it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.utils import scatter

from crystalgen import lattice_matrix_to_params, lattice_params_to_matrix


def mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    """Two linear layers with a ReLU between them (appendix D.1)."""
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, outputs))


@dataclass(frozen=True)
class Composition:
    """Atom-type sets of a batch: ``counts`` (B, E) atoms of each element (column e is atomic number e + 1)."""

    counts: Tensor

    @classmethod
    def of(cls, atom_types: Tensor, crystal: Tensor, num_crystals: int, num_elements: int) -> Composition:
        counts = torch.zeros(num_crystals, num_elements, dtype=torch.long, device=atom_types.device)
        counts.index_put_((crystal, atom_types - 1), torch.ones_like(atom_types), accumulate=True)
        return cls(counts)

    @property
    def present(self) -> Tensor:
        return self.counts > 0

    @property
    def k(self) -> Tensor:
        return self.present.sum(1)

    @property
    def num_atoms(self) -> Tensor:
        return self.counts.sum(1)

    def atom_types(self) -> Tensor:
        """A (rows,) atomic numbers, element by element within each crystal (section 3.3)."""
        elements = torch.arange(1, self.counts.shape[1] + 1, device=self.counts.device).expand_as(self.counts)
        return torch.repeat_interleave(elements.reshape(-1), self.counts.reshape(-1))


@dataclass(frozen=True)
class Decoded:
    """What the VAE decodes from z: composition, lattice (B, 3, 3) Angstrom (NaN where invalid), lengths and
    angles, and ``valid`` (B,) where the six parameters form a lattice."""

    composition: Composition
    lattice: Tensor
    lengths: Tensor
    angles: Tensor
    valid: Tensor


class CompositionLatticeHeads(nn.Module):
    """MLP^k, MLP^e, MLP^n, MLP^L and the lattice standardisation (buffers fitted on the training set)."""

    lattice_mean: Tensor
    lattice_std: Tensor
    max_k: Tensor
    max_count: Tensor

    def __init__(self, latent_dim: int, lattice_latent_dim: int, hidden_dim: int, max_atoms: int, num_elements: int,
                 scale_lengths: bool) -> None:
        super().__init__()
        self.max_atoms, self.num_elements, self.scale_lengths = int(max_atoms), int(num_elements), bool(scale_lengths)
        self.latent_dim = int(latent_dim)
        self.fc_k = mlp(latent_dim, hidden_dim, max_atoms)
        self.fc_elements = mlp(latent_dim, hidden_dim, num_elements)
        self.element_embedding = nn.Embedding(num_elements, latent_dim)
        self.fc_count = mlp(2 * latent_dim, hidden_dim, max_atoms)
        self.fc_lattice = mlp(lattice_latent_dim, hidden_dim, 6)
        self.register_buffer("lattice_mean", torch.zeros(6, dtype=torch.float64))
        self.register_buffer("lattice_std", torch.ones(6, dtype=torch.float64))
        # The largest k and per-element count in the training set: decoding takes the argmax over 1..these only.
        self.register_buffer("max_k", torch.tensor(max_atoms))
        self.register_buffer("max_count", torch.tensor(max_atoms))

    # -- lattice standardisation ------------------------------------------------------------------------
    def lattice_features(self, lattice: Tensor, num_atoms: Tensor) -> Tensor:
        """(B, 6) lengths (over N^(1/3) with scale_lengths) and angles in degrees, float64."""
        lengths, angles = lattice_matrix_to_params(lattice.double())
        if self.scale_lengths:
            lengths = lengths / num_atoms.double().unsqueeze(-1) ** (1 / 3)
        return torch.cat([lengths, angles], dim=-1)

    def fit(self, lattices: Tensor, num_atoms: Tensor, composition: Composition) -> None:
        self.max_k.fill_(int(composition.k.max()))
        self.max_count.fill_(int(composition.counts.max()))
        features = self.lattice_features(lattices, num_atoms)
        self.lattice_mean.copy_(features.mean(0))
        self.lattice_std.copy_(features.std(0, unbiased=False) + 1e-5)  # official: population std + 1e-5

    # -- training -----------------------------------------------------------------------------------------
    def count_logits(self, z_a: Tensor, crystal: Tensor, element: Tensor) -> Tensor:
        """MLP^n on (z^A of the crystal, embedding of element index e) for each pair, (pairs, max_atoms)."""
        return self.fc_count(torch.cat([z_a[crystal], self.element_embedding(element)], dim=-1))

    def losses(self, z_a: Tensor, z_l: Tensor, composition: Composition, lattice: Tensor) -> dict[str, Tensor]:
        """Cross entropy for k and the counts (averaged over a crystal's elements, then crystals), binary cross
        entropy for the element set (averaged over elements and crystals), MSE on the standardised lattice."""
        k = composition.k
        crystal, element = composition.present.nonzero(as_tuple=True)
        counts = composition.counts[crystal, element]
        count_ce = F.cross_entropy(self.count_logits(z_a, crystal, element), (counts - 1).clamp(max=self.max_atoms - 1), reduction="none")
        target = (self.lattice_features(lattice, composition.num_atoms) - self.lattice_mean) / self.lattice_std
        return {
            "k": F.cross_entropy(self.fc_k(z_a), (k - 1).clamp(max=self.max_atoms - 1)),
            "elements": F.binary_cross_entropy_with_logits(self.fc_elements(z_a), composition.present.to(z_a.dtype)),
            "counts": scatter(count_ce, crystal, dim=0, dim_size=z_a.shape[0], reduce="mean").mean(),
            "lattice": F.mse_loss(self.fc_lattice(z_l), target.to(z_l.dtype)),
        }

    # -- generation ---------------------------------------------------------------------------------------
    def composition(self, z_a: Tensor) -> Composition:
        """k = argmax + 1, the top-k elements, n_e = argmax + 1 of each (argmax over the values seen in training)."""
        k = _argmax_below(self.fc_k(z_a), int(self.max_k)) + 1
        ranked = self.fc_elements(z_a).argsort(dim=-1, descending=True)
        chosen = torch.arange(self.num_elements, device=z_a.device).unsqueeze(0) < k.unsqueeze(-1)
        crystal, rank = chosen.nonzero(as_tuple=True)
        element = ranked[crystal, rank]
        counts = torch.zeros(z_a.shape[0], self.num_elements, dtype=torch.long, device=z_a.device)
        counts[crystal, element] = _argmax_below(self.count_logits(z_a, crystal, element), int(self.max_count)) + 1
        return Composition(counts)

    def decode(self, z_a: Tensor, z_l: Tensor) -> Decoded:
        composition = self.composition(z_a)
        return self.lattice_from_features(self.fc_lattice(z_l), composition)

    def lattice_from_features(self, standardised: Tensor, composition: Composition) -> Decoded:
        """Standardised lattice features (B, 6) and the decoded composition -> lattice (appendix B)."""
        features = standardised.double() * self.lattice_std + self.lattice_mean
        lengths, angles = features[:, :3], features[:, 3:]
        if self.scale_lengths:
            lengths = lengths * composition.num_atoms.double().unsqueeze(-1) ** (1 / 3)
        lattice, valid = lattice_params_to_matrix(lengths, angles, strict=False)
        return Decoded(composition, lattice, lengths, angles, valid)


def _argmax_below(logits: Tensor, classes: int) -> Tensor:
    """Argmax over the first ``classes`` columns."""
    return logits[..., :classes].argmax(-1)
