"""MLP_AGG (CDVAE appendix D.2, F.1): the aggregate properties predicted from z, and the optional property head.

* number of atoms: classification over 1 .. max_atoms;
* lattice: the 6 parameters of the Niggli cell, lengths divided by N^(1/3), standardised with the training
  set's mean and (population) standard deviation, regressed with an L2 loss;
* composition: a distribution over the element classes (Z = 1 .. num_elements);
* property (G.3): one standardised scalar, trained jointly, used for latent optimisation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from crystalgen import lattice_matrix_to_params, scale_lengths, unscale_lengths

#: CDVAE's StandardScalerTorch adds this to the standard deviation.
SCALER_EPS = 1e-5


def mlp(in_dim: int, hidden_dim: int, num_layers: int, out_dim: int) -> nn.Sequential:
    """CDVAE's ``build_mlp``: num_layers hidden Linear+ReLU layers, then a linear output."""
    layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim), nn.ReLU()]
    for _ in range(num_layers - 1):
        layers += [nn.Linear(hidden_dim, hidden_dim), nn.ReLU()]
    layers.append(nn.Linear(hidden_dim, out_dim))
    return nn.Sequential(*layers)


class StandardScaler(nn.Module):
    """Per-column standardisation fitted on the training set; mean and std are buffers (saved with the model)."""

    mean: Tensor
    std: Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, values: Tensor) -> None:
        values = values.double()
        self.mean.copy_(values.mean(0))
        self.std.copy_(values.std(0, unbiased=False) + SCALER_EPS)

    def transform(self, values: Tensor) -> Tensor:
        return (values - self.mean.to(values.dtype)) / self.std.to(values.dtype)

    def inverse(self, values: Tensor) -> Tensor:
        return values * self.std.to(values.dtype) + self.mean.to(values.dtype)


def scaled_lattice_params(lattice: Tensor, num_atoms: Tensor) -> Tensor:
    """(B, 3, 3) lattice rows in Angstrom -> (B, 6): a, b, c / N^(1/3) in Angstrom and alpha, beta, gamma in degrees."""
    lengths, angles = lattice_matrix_to_params(lattice)
    return torch.cat([scale_lengths(lengths, num_atoms), angles], dim=-1)


class AggregatePredictors(nn.Module):
    """Three (four with a property) separate MLPs on z (B, latent_dim)."""

    def __init__(self, latent_dim: int, hidden_dim: int, num_layers: int, max_atoms: int, num_elements: int,
                 predict_property: bool) -> None:
        super().__init__()
        self.max_atoms = max_atoms
        self.fc_num_atoms = mlp(latent_dim, hidden_dim, num_layers, max_atoms)
        self.fc_lattice = mlp(latent_dim, hidden_dim, num_layers, 6)
        self.fc_composition = mlp(latent_dim, hidden_dim, num_layers, num_elements)
        self.fc_property = mlp(latent_dim, hidden_dim, num_layers, 1) if predict_property else None
        self.lattice_scaler = StandardScaler(6)
        self.property_scaler = StandardScaler(1) if predict_property else None

    def fit(self, lattices: Sequence[Tensor], num_atoms: Sequence[Tensor], properties: Tensor | None) -> None:
        """Fit the scalers on the training set: lattices (1, 3, 3) and num_atoms (1,) per crystal, properties (B,)."""
        self.lattice_scaler.fit(scaled_lattice_params(torch.cat(list(lattices)).double(), torch.cat(list(num_atoms))))
        if self.property_scaler is not None:
            if properties is None:
                raise ValueError("the property head needs property values to fit its scaler")
            self.property_scaler.fit(properties.reshape(-1, 1))

    def num_atoms_logits(self, z: Tensor) -> Tensor:
        """(B, max_atoms): class k is N = k + 1."""
        return self.fc_num_atoms(z)

    def predict_num_atoms(self, z: Tensor) -> Tensor:
        return self.num_atoms_logits(z).argmax(dim=-1) + 1

    def standardised_lattice(self, z: Tensor) -> Tensor:
        return self.fc_lattice(z)

    def lattice_params(self, standardised: Tensor, num_atoms: Tensor) -> tuple[Tensor, Tensor]:
        """(lengths in Angstrom, angles in degrees) from standardised predictions and N (CDVAE scale_length)."""
        params = self.lattice_scaler.inverse(standardised)
        return unscale_lengths(params[:, :3], num_atoms), params[:, 3:]

    def composition_logits(self, z: Tensor) -> Tensor:
        """(B, num_elements): class k is Z = k + 1."""
        return self.fc_composition(z)

    def standardised_property(self, z: Tensor) -> Tensor:
        if self.fc_property is None:
            raise ValueError("this model has no property head (train it with model.property set)")
        return self.fc_property(z).squeeze(-1)

    def standardise_property(self, values: Tensor) -> Tensor:
        """Property values (B,) in the data's units, standardised as the head predicts them (its training target)."""
        if self.property_scaler is None:
            raise ValueError("this model has no property head (train it with model.property set)")
        return self.property_scaler.transform(values.reshape(-1, 1)).squeeze(-1)

    def property_value(self, z: Tensor) -> Tensor:
        """The property in the data's units (B,)."""
        assert self.property_scaler is not None
        return self.property_scaler.inverse(self.standardised_property(z).unsqueeze(-1)).squeeze(-1)
