"""Exact denoisers for known targets: check a sampler (or a process) against the truth, with no network.

For a target whose noised marginals are known in closed form, the ideal denoiser is computable: the score of a
Gaussian mixture convolved with the process noise, the score of a wrapped normal mixture on the torus, and the
posterior p(x0 | x_t) of a categorical target under the marginal D3PM. Plugging that denoiser into a sampler
isolates the sampler's maths: a correct sampler then reproduces the target up to its discretisation error.

    model = AnalyticModel({"x": VPGaussian(100)}, {"x": GaussianMixture(weights, means, stds)})
    state = DDIMSampler(steps=10).run(model, model.condition(4000), generator=torch.Generator().manual_seed(0))

Each row is one independent sample (one "crystal" per row). The code here is written independently of the
processes' own conversions where it can be (posterior means computed directly, long image sums), so that it
also tests them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

import torch
from torch import Tensor

from crystalgen.processes.base import ContinuousProcess, NoiseProcess
from crystalgen.processes.d3pm import D3PMMarginal
from crystalgen.state import Condition


class Target(Protocol):
    def shape(self, rows: int) -> tuple[int, ...]: ...

    def predict(self, process: Any, x_t: Tensor, t: int, **kwargs: Any) -> Tensor: ...


class GaussianMixture:
    """sum_k w_k N(mu_k, diag(std_k^2)) in R^d; means (K, d), stds (K, d) or (K,), weights (K,)."""

    def __init__(self, weights: Tensor, means: Tensor, stds: Tensor) -> None:
        self.weights = torch.as_tensor(weights, dtype=torch.float64) / torch.as_tensor(weights, dtype=torch.float64).sum()
        self.means = torch.as_tensor(means, dtype=torch.float64)
        stds = torch.as_tensor(stds, dtype=torch.float64)
        self.vars = (stds[:, None] if stds.dim() == 1 else stds).expand_as(self.means) ** 2

    def shape(self, rows: int) -> tuple[int, ...]:
        return (rows, self.means.shape[1])

    def mean(self) -> Tensor:
        return self.weights @ self.means

    def variance(self) -> Tensor:
        """Per-dimension variance of the mixture."""
        return self.weights @ (self.vars + self.means**2) - self.mean() ** 2

    def predict(self, process: ContinuousProcess, x_t: Tensor, t: int, **kwargs: Any) -> Tensor:
        """The exact prediction in the process's parameterisation: p_t = sum_k w_k N(a mu_k, a^2 var_k + s^2)."""
        a, s = process.scales(t)
        x = x_t.to(torch.float64)[:, None, :]  # (rows, 1, d)
        var_t = a**2 * self.vars + s**2  # (K, d)
        log_comp = -0.5 * (((x - a * self.means) ** 2) / var_t + torch.log(2 * math.pi * var_t)).sum(-1)
        resp = torch.softmax(torch.log(self.weights) + log_comp, dim=-1)[..., None]  # (rows, K, 1)
        if process.prediction == "x0":  # E[x0 | x_t]: per component mu + a var / var_t (x - a mu)
            out = (resp * (self.means + a * self.vars / var_t * (x - a * self.means))).sum(1)
        else:
            score = (resp * (-(x - a * self.means) / var_t)).sum(1)
            out = -s * score if process.prediction == "eps" else score / process.score_norm(t, score)
        return out.to(x_t.dtype)


class WrappedNormalMixture:
    """sum_k w_k prod_d WN(x_d; mu_kd, std_k^2) on [0, 1)^d (fractional); for variance-exploding processes."""

    def __init__(self, weights: Tensor, means: Tensor, stds: Tensor, images: int = 3) -> None:
        self.weights = torch.as_tensor(weights, dtype=torch.float64) / torch.as_tensor(weights, dtype=torch.float64).sum()
        self.means = torch.as_tensor(means, dtype=torch.float64)
        self.vars = torch.as_tensor(stds, dtype=torch.float64)[:, None].expand_as(self.means) ** 2
        self.images = images

    def shape(self, rows: int) -> tuple[int, ...]:
        return (rows, self.means.shape[1])

    def trig_moment(self, k: int) -> Tensor:
        """E[exp(2 pi i k x)] per dimension (complex): sum_j w_j exp(2 pi i k mu_j) exp(-2 pi^2 k^2 var_j)."""
        phase = torch.exp(2j * math.pi * k * self.means.to(torch.complex128))
        return (self.weights[:, None] * phase * torch.exp(-2 * math.pi**2 * k**2 * self.vars)).sum(0)

    def predict(self, process: ContinuousProcess, x_t: Tensor, t: int, **kwargs: Any) -> Tensor:
        """Normalised score of p_t = sum_k w_k prod_d WN(mu_kd, var_k + s_t^2).

        Image sums over |n| <= ``images`` around the nearest image, evaluated term by term in float64: the
        omitted terms are below exp(-(images + 1/2)^2 / (2 var)) relative to the nearest one (the default 3 gives
        6e-11 for total stds up to 0.51).
        """
        a, s = process.scales(t)
        if a != 1.0:
            raise ValueError("WrappedNormalMixture needs a variance-exploding process (a_t = 1)")
        var_t = (self.vars + s**2)[None, :, :, None]  # (1, K, d, 1)
        n = torch.arange(-self.images, self.images + 1, dtype=torch.float64)
        d = x_t.to(torch.float64)[:, None, :, None] - self.means[None, :, :, None]
        y = d - torch.round(d) + n  # (rows, K, d, images)
        terms = torch.exp(-(y**2) / (2 * var_t))
        density = terms.sum(-1) / torch.sqrt(2 * math.pi * var_t[..., 0])  # WN per component and dimension
        dim_score = (terms * (-y / var_t)).sum(-1) / terms.sum(-1)
        joint = self.weights * density.prod(-1)  # (rows, K)
        score = ((joint / joint.sum(-1, keepdim=True))[..., None] * dim_score).sum(1)
        return (score / process.score_norm(t, score)).to(x_t.dtype)


class Categorical:
    """Independent categoricals with probabilities ``probs`` (*axes, K), the same for every row."""

    def __init__(self, probs: Tensor) -> None:
        self.probs = torch.as_tensor(probs, dtype=torch.float64)

    def shape(self, rows: int) -> tuple[int, ...]:
        return (rows, *self.probs.shape[:-1])

    def predict(self, process: D3PMMarginal, x_t: Tensor, t: int, marginal: Tensor | None = None, **kwargs: Any) -> Tensor:
        """Logits of p(x0 | x_t) ∝ p(x0) [Qbar_t]_{x0, x_t}, Qbar_t = abar_t I + (1 - abar_t) 1 m^T built explicitly."""
        K = process.num_classes
        m = process.marginal_for(tuple(x_t.shape), marginal)
        abar = float(process.alpha_bars[t])
        qbar = abar * torch.eye(K, dtype=torch.float64) + (1 - abar) * m.unsqueeze(-2)  # (..., K_x0, K_xt)
        column = torch.gather(qbar, -1, x_t[..., None, None].expand(*x_t.shape, K, 1)).squeeze(-1)
        joint = self.probs.expand(*x_t.shape, K) * column
        return torch.log(joint / joint.sum(-1, keepdim=True)).clamp(min=-1e4).to(torch.float32)


class AnalyticModel:
    """A sampling model whose denoiser is exact for one known target per variable."""

    def __init__(self, processes: Mapping[str, NoiseProcess], targets: Mapping[str, Target]) -> None:
        if set(processes) != set(targets):
            raise ValueError(f"one target per process needed: processes {sorted(processes)}, targets {sorted(targets)}")
        self.processes = dict(processes)
        self.targets = dict(targets)

    def condition(self, rows: int, **kwargs: Any) -> Condition:
        """A condition with ``rows`` independent samples (each row its own crystal); kwargs go to Condition."""
        shapes = {var: target.shape(rows) for var, target in self.targets.items()}
        return Condition(num_crystals=rows, shapes=shapes, **kwargs)

    def denoise(self, state: dict[str, Tensor], t: Tensor, condition: Condition) -> dict[str, Tensor]:
        level = int(t[0])
        return {var: self.targets[var].predict(proc, state[var], level, **condition.args(var)) for var, proc in self.processes.items()}
