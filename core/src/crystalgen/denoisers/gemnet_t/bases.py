"""Radial and angular bases of GemNet-T: Gaussian radial basis under a polynomial envelope, and the m = 0 real
spherical harmonics of the bond angle (GemNet section 3 with OCP's "gaussian" rbf, as CDVAE's decoder uses).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


class PolynomialEnvelope(nn.Module):
    """u(x) = 1 + a x^p + b x^(p+1) + c x^(p+2) for x < 1, else 0: smooth (C^2) cut-off at x = 1 (GemNet eq. 11)."""

    def __init__(self, exponent: int = 5) -> None:
        super().__init__()
        if exponent < 1:
            raise ValueError(f"envelope exponent must be >= 1, got {exponent}")
        p = exponent
        self.p = p
        self.a = -(p + 1) * (p + 2) / 2
        self.b = p * (p + 2)
        self.c = -p * (p + 1) / 2

    def forward(self, x: Tensor) -> Tensor:
        xp = x.pow(self.p)
        u = 1 + self.a * xp + self.b * xp * x + self.c * xp * x * x
        return torch.where(x < 1, u, torch.zeros_like(u))


class GaussianRadialBasis(nn.Module):
    """``num_radial`` Gaussians evenly spaced on the scaled distance d / cutoff in [0, 1], width = spacing,
    times the envelope: (E,) distances in Angstrom -> (E, num_radial)."""

    offsets: Tensor

    def __init__(self, num_radial: int, cutoff: float, envelope_exponent: int = 5) -> None:
        super().__init__()
        if num_radial < 2:
            raise ValueError(f"num_radial must be >= 2, got {num_radial}")
        self.cutoff = float(cutoff)
        self.register_buffer("offsets", torch.linspace(0.0, 1.0, num_radial))
        self.coeff = -0.5 / float(self.offsets[1] - self.offsets[0]) ** 2
        self.envelope = PolynomialEnvelope(envelope_exponent)

    def forward(self, distance: Tensor) -> Tensor:
        x = distance / self.cutoff
        gauss = torch.exp(self.coeff * (x.unsqueeze(-1) - self.offsets.to(x.dtype)) ** 2)
        return self.envelope(x).unsqueeze(-1) * gauss


def zonal_spherical_harmonics(cos_angle: Tensor, num_spherical: int) -> Tensor:
    """Y_l^0(angle) = sqrt((2l + 1) / 4 pi) P_l(cos angle) for l = 0 .. num_spherical - 1: (T,) -> (T, num_spherical).

    Legendre polynomials by Bonnet's recursion (l + 1) P_{l+1} = (2l + 1) x P_l - l P_{l-1}.
    """
    legendre = [torch.ones_like(cos_angle), cos_angle]
    for degree in range(1, num_spherical - 1):
        legendre.append(((2 * degree + 1) * cos_angle * legendre[degree] - degree * legendre[degree - 1]) / (degree + 1))
    norms = [math.sqrt((2 * degree + 1) / (4 * math.pi)) for degree in range(num_spherical)]
    return torch.stack([n * p for n, p in zip(norms, legendre[:num_spherical], strict=True)], dim=-1)
