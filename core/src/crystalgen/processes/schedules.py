"""Noise schedules as float64 tensors indexed 0..T (index t is level t; index 0 is clean data).

Kept apart from the processes so that VP Gaussian and D3PM share one definition of the cosine schedule (SymmCD
drives k and its categorical variables with the same one; SymmCD's official code).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

#: clipping of the cosine betas used by DiffCSP/SymmCD (the lower bound also lifts the first, tiny betas)
COSINE_BETA_RANGE = (1e-4, 0.9999)


def linear_betas(num_steps: int, beta_start: float | None = None, beta_end: float | None = None) -> Tensor:
    """DDPM betas (Ho et al. 2020, sec. 4), linear in t, with beta_0 = 0 prepended.

    Unset endpoints default to DDPM's 1e-4 -> 0.02 for T = 1000, scaled by 1000 / T (Nichol & Dhariwal 2021,
    sec. 3.4) so that a shorter chain still ends at (nearly) pure noise.
    """
    scale = 1000.0 / num_steps
    start = 1e-4 * scale if beta_start is None else beta_start
    end = 0.02 * scale if beta_end is None else beta_end
    if not 0.0 < start <= end < 1.0:
        raise ValueError(f"linear schedule needs 0 < beta_start <= beta_end < 1, got {start}, {end} (T={num_steps})")
    return torch.cat([torch.zeros(1, dtype=torch.float64), torch.linspace(start, end, num_steps, dtype=torch.float64)])


def cosine_betas(num_steps: int, s: float = 0.008) -> Tensor:
    """Cosine schedule (Nichol & Dhariwal 2021, eq. 17): abar(t) = f(t)/f(0), f(t) = cos^2((t/T + s)/(1 + s) pi/2);
    beta_t = 1 - abar(t)/abar(t-1) clipped to COSINE_BETA_RANGE, with beta_0 = 0 prepended."""
    x = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    f = torch.cos((x + s) / (1 + s) * math.pi / 2) ** 2
    abar = f / f[0]
    betas = (1 - abar[1:] / abar[:-1]).clamp(*COSINE_BETA_RANGE)
    return torch.cat([torch.zeros(1, dtype=torch.float64), betas])


def betas_by_name(name: str, num_steps: int, **options: float | None) -> Tensor:
    if name == "linear":
        return linear_betas(num_steps, options.get("beta_start"), options.get("beta_end"))
    if name == "cosine":
        return cosine_betas(num_steps, options.get("cosine_s") or 0.008)
    raise ValueError(f"unknown beta schedule {name!r}; choose 'linear' or 'cosine'")


def alpha_bars(betas: Tensor) -> Tensor:
    """abar_t = prod_{u <= t} (1 - beta_u): the signal fraction of the Markov chain, so that every marginal
    a_t = sqrt(abar_t) is consistent with the one-step transitions even after clipping."""
    return torch.cumprod(1 - betas, dim=0)


def geometric_sigmas(num_steps: int, sigma_first: float, sigma_last: float) -> Tensor:
    """sigma_1 .. sigma_T geometric from ``sigma_first`` to ``sigma_last`` (NCSN, Song & Ermon 2019), sigma_0 = 0."""
    if not 0.0 < sigma_first < sigma_last:
        raise ValueError(f"geometric sigmas need 0 < sigma_first < sigma_last, got {sigma_first}, {sigma_last}")
    levels = torch.logspace(math.log10(sigma_first), math.log10(sigma_last), num_steps, dtype=torch.float64)
    if num_steps == 1:
        levels = torch.tensor([sigma_last], dtype=torch.float64)
    return torch.cat([torch.zeros(1, dtype=torch.float64), levels])
