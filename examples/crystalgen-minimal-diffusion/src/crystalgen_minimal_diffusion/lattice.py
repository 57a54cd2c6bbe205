"""The lattice as six real numbers a Gaussian process can diffuse, and back to a cell whatever they are."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from crystalgen import lattice_matrix_to_params, lattice_params_to_matrix

#: cosines of the angles are clamped here when decoding, so that any six numbers make a cell (60..120 degrees apart
#: from the extreme shear no training crystal has)
MAX_COSINE = 0.5


def lattice_features(lattice: Tensor, num_atoms: Tensor) -> Tensor:
    """(B, 3, 3) Angstrom -> (B, 6): log of the lengths per N^(1/3) (size-free) and cosines of the angles."""
    lengths, angles = lattice_matrix_to_params(lattice)
    scale = num_atoms.to(lengths.dtype).unsqueeze(-1) ** (1 / 3)
    return torch.cat([torch.log(lengths / scale), torch.cos(torch.deg2rad(angles))], dim=-1)


def features_to_lattice(features: Tensor, num_atoms: Tensor) -> Tensor:
    """(B, 6) -> (B, 3, 3) Angstrom; NaN rows give NaN cells, which the ``cell`` decoder reports per crystal."""
    scale = num_atoms.to(features.dtype).unsqueeze(-1) ** (1 / 3)
    lengths = torch.exp(features[:, :3].clamp(max=math.log(100.0))) * scale
    angles = torch.rad2deg(torch.arccos(features[:, 3:].clamp(-MAX_COSINE, MAX_COSINE)))
    matrix, _ = lattice_params_to_matrix(lengths, angles, strict=False)
    return matrix
