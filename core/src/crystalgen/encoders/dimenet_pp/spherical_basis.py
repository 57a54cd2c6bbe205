"""DimeNet's 2D spherical Fourier-Bessel basis (Gasteiger et al. 2020, eq. 6), evaluated numerically.

    a_SBF[l, n](d, theta) = u(d / c) * sqrt(2) / |j_{l+1}(z_ln)| * j_l(z_ln d / c) * Y_l^0(theta)

with j_l the spherical Bessel functions, z_ln the n-th positive zero of j_l, Y_l^0 = sqrt((2l+1)/(4 pi)) P_l(cos
theta) and u the envelope. PyG's SphericalBasisLayer builds the same functions symbolically with sympy, which takes
10-40 s per model on a CPU; here j_l comes from the upward recurrence in float64 (accurate for the arguments that
occur, z_ln d / c >= pi * 0.1) and P_l from Bonnet's recurrence. The zeros are rounded to float32 as PyG's
``Jn_zeros`` stores them, so the basis equals the one the CDVAE weights were trained with to float32 precision.
Output layout matches PyG: column l * num_radial + n.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn


def spherical_bessel_zeros(num_orders: int, num_zeros: int) -> np.ndarray:
    """(num_orders, num_zeros) first positive zeros of j_0 .. j_{num_orders-1}, found by bisection between the
    interlacing zeros of the previous order (the zeros of j_0 are n pi)."""
    from scipy.optimize import brentq
    from scipy.special import spherical_jn

    zeros = np.zeros((num_orders, num_zeros))
    previous = np.arange(1, num_zeros + num_orders) * np.pi
    zeros[0] = previous[:num_zeros]
    for order in range(1, num_orders):
        current = np.array([brentq(lambda r, order=order: spherical_jn(order, r), a, b) for a, b in zip(previous[:-1], previous[1:], strict=True)])
        zeros[order] = current[:num_zeros]
        previous = current
    return zeros.astype(np.float32).astype(np.float64)


def spherical_bessel(max_order: int, x: Tensor) -> Tensor:
    """j_0 .. j_max_order at x (any shape), stacked on a new last axis; float64 upward recurrence."""
    x = x.to(torch.float64)
    orders = [torch.sin(x) / x]
    if max_order >= 1:
        orders.append(torch.sin(x) / x**2 - torch.cos(x) / x)
    for order in range(1, max_order):
        orders.append((2 * order + 1) / x * orders[order] - orders[order - 1])
    return torch.stack(orders, dim=-1)


def legendre(max_degree: int, z: Tensor) -> Tensor:
    """P_0 .. P_max_degree at z, stacked on a new last axis (Bonnet's recurrence)."""
    values = [torch.ones_like(z), z]
    for degree in range(2, max_degree + 1):
        values.append(((2 * degree - 1) * z * values[degree - 1] - (degree - 1) * values[degree - 2]) / degree)
    return torch.stack(values[: max_degree + 1], dim=-1)


class SphericalBasis(nn.Module):
    """Drop-in for PyG's SphericalBasisLayer: ``forward(dist, angle, idx_kj) -> (T, num_spherical * num_radial)``.

    ``envelope`` is the radial envelope module applied to d / cutoff.
    """

    zeros: Tensor  # buffers, registered in __init__
    norm: Tensor
    prefactor: Tensor

    def __init__(self, num_spherical: int, num_radial: int, cutoff: float, envelope: nn.Module) -> None:
        super().__init__()
        self.num_spherical, self.num_radial, self.cutoff = num_spherical, num_radial, cutoff
        self.envelope = envelope
        zeros = spherical_bessel_zeros(num_spherical, num_radial)
        from scipy.special import spherical_jn

        norm = np.sqrt(2.0) / np.abs(spherical_jn(np.arange(1, num_spherical + 1)[:, None], zeros))
        prefactor = np.sqrt((2 * np.arange(num_spherical) + 1) / (4 * math.pi))
        self.register_buffer("zeros", torch.from_numpy(zeros), persistent=False)
        self.register_buffer("norm", torch.from_numpy(norm), persistent=False)
        self.register_buffer("prefactor", torch.from_numpy(prefactor), persistent=False)

    def forward(self, dist: Tensor, angle: Tensor, idx_kj: Tensor) -> Tensor:
        x = dist.to(torch.float64) / self.cutoff  # (E,)
        args = self.zeros * x[:, None, None]  # (E, L, K): z_ln * d / c
        bessel = spherical_bessel(self.num_spherical - 1, args)  # (E, L, K, L) all orders at every argument
        order = torch.arange(self.num_spherical, device=dist.device)
        radial = bessel[:, order, :, order].permute(1, 0, 2)  # (E, L, K): order l at its own zeros
        radial = self.envelope(x)[:, None, None] * self.norm * radial
        angular = self.prefactor * legendre(self.num_spherical - 1, torch.cos(angle.to(torch.float64)))  # (T, L)
        out = radial[idx_kj] * angular[:, :, None]
        return out.reshape(-1, self.num_spherical * self.num_radial).to(dist.dtype)
