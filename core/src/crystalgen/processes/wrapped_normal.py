"""Wrapped normal diffusion on the torus [0, 1)^d (variance exploding), for fractional coordinates.

DiffCSP (Jiao et al. 2023) and SymmCD: x_t = (x0 + sigma_t eps) mod 1 with geometric sigma_t. The density of a
displacement d is the image sum WN(d; sigma) = sum_n N(d + n; 0, sigma^2), and the score is

    grad log WN(d) = -sum_n w_n (d + n) / sigma^2,   w_n = softmax_n(-(d + n)^2 / (2 sigma^2)).

The sum is truncated to |n| <= N after wrapping d into [-1/2, 1/2). With that wrap, term n is at most
exp(-(n^2 - |n|) / (2 sigma^2)) times the n = 0 term, which gives the bound of :func:`truncation_bound`; N is
the smallest value that keeps it below ``score_atol`` at the largest sigma. The denoiser predicts the score
divided by sqrt(sigma_norm_t), sigma_norm_t = E[(d/dx log WN)^2] (the per-coordinate mean square of the target),
computed by quadrature (:func:`sigma_norm`) rather than DiffCSP's 10,000-sample Monte Carlo.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor

from crystalgen.capabilities import Capability, Marginal, Posterior, Score, VarianceExploding
from crystalgen.processes.base import ContinuousProcess, Noised, level
from crystalgen.processes.schedules import alpha_bars, geometric_sigmas, linear_betas


def wrap_displacement(d: Tensor) -> Tensor:
    """The representative of d modulo 1 in [-1/2, 1/2) (minimum image, fractional units)."""
    return torch.remainder(d + 0.5, 1.0) - 0.5


def _images(d: Tensor, var: Tensor, images: int) -> tuple[Tensor, Tensor]:
    """(d + n, w_n) for n = -N..N, with w_n = exp(-((d + n)^2 - d^2) / (2 sigma^2)): the image terms relative to
    n = 0. For d in [-1/2, 1/2) every w_n <= 1 = w_0, so no overflow and no log-sum-exp is needed."""
    n = torch.arange(-images, images + 1, dtype=d.dtype, device=d.device)
    y = d.unsqueeze(-1) + n
    return y, torch.exp(-(n * (n + 2 * d.unsqueeze(-1))) / (2 * var.unsqueeze(-1)))


def wrapped_normal_score(d: Tensor, sigma: Tensor | float, images: int) -> Tensor:
    """d/dd log WN(d; sigma) for displacements d (fractional), summing images |n| <= ``images`` (float64 inside)."""
    var = torch.as_tensor(sigma, dtype=torch.float64, device=d.device) ** 2
    y, w = _images(wrap_displacement(d.to(torch.float64)), var, images)
    return (-(w * y).sum(-1) / (w.sum(-1) * var)).to(d.dtype)


def truncation_bound(sigma: float, images: int) -> float:
    """Upper bound on |score(N images) - score(all images)| for any d (units 1/fractional).

    With |d| <= 1/2, the error is at most 2 sum_{k > N} f(k), f(k) = (k + N + 1) / sigma^2 exp(-k(k-1)/(2 sigma^2))
    (tail of the numerator plus the largest kept |d + n| times the tail of the denominator, both relative to
    the n = 0 term). Successive terms shrink at least by rho = (2N+3)/(2N+2) exp(-(N+1)/sigma^2), so the sum
    is at most f(N+1) / (1 - rho).
    """
    if images < 1:
        return math.inf
    k = images + 1
    rho = (2 * images + 3) / (2 * images + 2) * math.exp(-(images + 1) / sigma**2)
    if rho >= 1:
        return math.inf
    return 2 * (k + images + 1) / sigma**2 * math.exp(-k * (k - 1) / (2 * sigma**2)) / (1 - rho)


def images_for(sigma_max: float, atol: float) -> int:
    """Smallest image count N >= 1 whose truncation bound at ``sigma_max`` is below ``atol``.

    The bound grows with sigma for sigma^2 < N(N+1)/2, which the returned N satisfies, so sigma_max is the worst level.
    """
    images = 1
    while truncation_bound(sigma_max, images) > atol or sigma_max**2 >= images * (images + 1) / 2:
        images += 1
    return images


def sigma_norm(sigmas: Tensor, images: int) -> Tensor:
    """E[(d/dd log WN(d; sigma))^2] under d ~ WN(0, sigma^2), for each sigma > 0 (1 where sigma = 0).

    Trapezoid rule over one period of the smooth periodic integrand WN(d) score(d)^2: geometrically convergent
    (Trefethen & Weideman 2014): with a grid step h <= sigma/4 the error is of order exp(-2 pi^2 sigma^2 / h^2),
    far below float64 round-off.
    """
    out = torch.ones_like(sigmas, dtype=torch.float64)
    positive = sigmas > 0
    s = sigmas[positive].to(torch.float64)
    if s.numel() == 0:
        return out
    values = []
    for chunk in s.split(32):  # levels in chunks, each with a grid step of at most sigma/4
        points = max(64, math.ceil(4 / float(chunk.min())))
        d = (torch.arange(points, dtype=torch.float64) + 0.5) / points - 0.5
        var = (chunk**2)[:, None]
        y, w = _images(d.expand(len(chunk), points), var.expand(-1, points), images)
        density = torch.exp(-(d**2) / (2 * var)) * w.sum(-1) / torch.sqrt(2 * math.pi * var)
        score = -(w * y).sum(-1) / (w.sum(-1) * var)
        values.append((density * score**2).mean(-1))
    out[positive] = torch.cat(values)
    return out


class WrappedNormal(ContinuousProcess):
    """Variance-exploding wrapped normal on [0, 1)^d (fractional coordinates; values are kept in [0, 1)).

    Args:
        num_steps: T.
        sigma_begin, sigma_end: sigma_1 and sigma_T of the geometric schedule (DiffCSP/SymmCD: 0.005, 0.5).
        sigmas: optional explicit sigma_1 .. sigma_T (length T) instead of the geometric schedule.
        beta_start, beta_end: instead of the geometric schedule, sigma_t = sqrt(1 - abar_t) of a linear beta
            schedule (GemsDiff eq. 16: q(x_t | x0) = [N(x0, (1 - abar_t) I)] on the torus; its betas 1e-6 -> 2e-3).
        prediction: ``"score"`` or ``"x0"`` (below).
        score_atol: bound on the truncation error of the image sum, in score units (1/fractional).

    Prediction ``"score"``: grad log p_t / sqrt(sigma_norm_t). Note the sign: DiffCSP's network predicts the
    *negative* of this. Reverse step, DDIM and Langevin are the VE formulas of ContinuousProcess taken modulo 1,
    with eps_hat = -sigma_t * score. Their x0_hat = x_t + sigma_t^2 * score is Tweedie's formula for the lift of
    x0 nearest x_t: exact as the mean of the unwrapped displacement (because the torus score is the posterior
    average of the Gaussian image scores), but not the circular mean of x0, and, as in R^d, a point estimate
    of a possibly multimodal posterior. The prior is uniform on [0, 1)^d (WN with sigma_T = 0.5 is uniform to
    within 1 % in density).

    Prediction ``"x0"``: the lift of the clean coordinates nearest x_t, x_t + y with y the displacement the
    denoiser predicts; the training target is x_t + wrap(x0 - x_t), so the squared error is GemsDiff's shortest-path
    loss ||x0 - x_t - k* - y||^2 (eq. 20). The conversions of ContinuousProcess then hold as written (eps = -y / s_t).
    """

    capabilities: ClassVar[frozenset[Capability]] = frozenset({Posterior, Marginal, Score, VarianceExploding})
    space = "torus"
    predictions = ("score", "x0")

    sigma_norm: Tensor

    def __init__(self, num_steps: int = 1000, sigma_begin: float = 0.005, sigma_end: float = 0.5, *,
                 sigmas: Sequence[float] | Tensor | None = None, beta_start: float | None = None,
                 beta_end: float | None = None, prediction: str = "score", score_atol: float = 1e-8) -> None:
        if (beta_start is None) != (beta_end is None):
            raise ValueError(f"give both beta_start and beta_end (got {beta_start}, {beta_end})")
        if beta_start is not None and sigmas is not None:
            raise ValueError("give either sigmas or beta_start/beta_end, not both")
        if beta_start is not None:
            schedule = (1 - alpha_bars(linear_betas(num_steps, beta_start, beta_end))).sqrt()
        elif sigmas is None:
            schedule = geometric_sigmas(num_steps, sigma_begin, sigma_end)
        else:
            levels = torch.as_tensor(sigmas, dtype=torch.float64)
            if levels.shape != (num_steps,) or bool((levels <= 0).any()):
                raise ValueError(f"sigmas must be {num_steps} positive values (sigma_1..sigma_T), got shape {tuple(levels.shape)}")
            schedule = torch.cat([torch.zeros(1, dtype=torch.float64), levels])
        super().__init__(num_steps, torch.ones_like(schedule), schedule, prediction)
        self.score_atol = score_atol
        self.images = images_for(float(schedule.max()), score_atol)
        self.register_buffer("sigma_norm", sigma_norm(schedule, self.images))

    def sample_prior(self, shape: tuple[int, ...], *, device: torch.device | str = "cpu",
                     generator: torch.Generator | None = None, **kwargs) -> Tensor:
        return torch.rand(shape, generator=generator, device=device)

    def add_noise(self, x0: Tensor, t: Tensor, *, generator: torch.Generator | None = None, **kwargs) -> Noised:
        noised = super().add_noise(x0, t, generator=generator)
        if self.prediction == "x0":  # the lift of x0 nearest x_t: the shortest path on the torus
            noised.target = noised.x_t + wrap_displacement(x0 - noised.x_t)
        return noised

    def conditional_score(self, x_t: Tensor, x0: Tensor, t: int | Tensor) -> Tensor:
        return wrapped_normal_score(x_t - x0, level(self.sigmas, t, x_t), self.images)

    def score_norm(self, t: int | Tensor, like: Tensor) -> Tensor:
        return level(self.sigma_norm.sqrt(), t, like)

    def finalize(self, x: Tensor) -> Tensor:
        x = torch.remainder(x, 1.0)
        return x.masked_fill(x >= 1.0, 0.0)  # float round-off can give exactly 1 for tiny negative x

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, sigma_1={float(self.sigmas[1]):g}, sigma_T={float(self.sigmas[-1]):g}, images={self.images}"
