"""Embeddings shared by denoisers: sinusoidal embeddings of the diffusion time and periodic Fourier features.

Both are parameter-free ``nn.Module`` s (so they show up in a model's repr and move with it) around plain
functions that tests and other modules can call directly.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sinusoidal_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Transformer sinusoid (Vaswani et al. 2017, section 3.5) of scalars t (...,) -> (..., dim).

    Channels are ``[sin(t w_0) .. sin(t w_{h-1}), cos(t w_0) .. cos(t w_{h-1})]`` with h = dim // 2 and
    w_j = max_period^(-j / h); an odd ``dim`` gets one trailing zero channel. t may be an integer step
    (DiffCSP/SymmCD feed 1..T unscaled) or a continuous level.
    """
    if dim < 1:
        raise ValueError(f"embedding dim must be >= 1, got {dim}")
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / max(half, 1))
    angle = t.to(torch.float32).unsqueeze(-1) * freqs
    out = torch.cat([angle.sin(), angle.cos()], dim=-1)
    if dim % 2:
        out = torch.cat([out, torch.zeros_like(out[..., :1])], dim=-1)
    return out


class SinusoidalTimeEmbedding(nn.Module):
    """``sinusoidal_embedding`` of the time step, optionally rescaled first (t * scale)."""

    def __init__(self, dim: int, max_period: float = 10000.0, scale: float = 1.0) -> None:
        super().__init__()
        self.dim, self.max_period, self.scale = int(dim), float(max_period), float(scale)

    def forward(self, t: Tensor) -> Tensor:
        return sinusoidal_embedding(t.to(torch.float32) * self.scale, self.dim, self.max_period)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, max_period={self.max_period:g}, scale={self.scale:g}"


def periodic_fourier_features(x: Tensor, num_frequencies: int, first_frequency: int = 1) -> Tensor:
    """Fourier features of fractional coordinates x (..., d) -> (..., d * 2 * F).

    ``[sin(2 pi n x), cos(2 pi n x)]`` for the integer frequencies n = first .. first + F - 1, per coordinate
    (layout: for each coordinate, F sines then F cosines). Integer frequencies make the features invariant under
    x -> x + integer, so differences x_i - x_j need no wrapping (periodicity of the unit cell).
    """
    if num_frequencies < 1:
        raise ValueError(f"num_frequencies must be >= 1, got {num_frequencies}")
    n = torch.arange(first_frequency, first_frequency + num_frequencies, device=x.device, dtype=x.dtype)
    angle = 2 * math.pi * x.unsqueeze(-1) * n  # (..., d, F)
    return torch.cat([angle.sin(), angle.cos()], dim=-1).flatten(-2)


class PeriodicFourierFeatures(nn.Module):
    """``periodic_fourier_features`` as a module; ``out_dim(d)`` gives the feature size for d coordinates."""

    def __init__(self, num_frequencies: int, first_frequency: int = 1) -> None:
        super().__init__()
        self.num_frequencies, self.first_frequency = int(num_frequencies), int(first_frequency)

    def out_dim(self, coords: int = 3) -> int:
        return coords * 2 * self.num_frequencies

    def forward(self, x: Tensor) -> Tensor:
        return periodic_fourier_features(x, self.num_frequencies, self.first_frequency)

    def extra_repr(self) -> str:
        return f"num_frequencies={self.num_frequencies}, first_frequency={self.first_frequency}"
