"""The sampler ``gemsdiff_code``: the reverse update of GemsDiff's official code (sampling loop at commit 89c0c6c),
offered so that its difference from the exact posterior (the ``ancestral`` sampler) can be measured.

From the clean estimate x0_hat of each continuous process, at each step t -> s:
    a_t = 1 (variance exploding, the torus):  x_s = x0_hat + sqrt(beta_s) z       (x_t is not mixed in)
    otherwise (variance preserving, gl(3)):   x_s = mu_t(x_t, x0_hat) + sqrt(beta_s) z
where mu_t is the mean of the posterior q(x_s | x_t, x0_hat) and beta_s = s_s^2 - (a_s / a_{s-1})^2 s_{s-1}^2 is the
variance of the chain's one step into level s: exactly the code's beta_{t-1} for a VP process, and
abar_{s-1} beta_s (within 10 % of beta_s) for the torus process of GemsDiff (s_t^2 = 1 - abar_t). The exact posterior
instead draws x_s with variance s_s^2 (s_t^2 - s_s^2) / s_t^2 around a mean that mixes x_t in.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import ClassVar

import torch
from torch import Tensor

from crystalgen import Capability, Condition, Marginal, ProgressCallback, Sampler, SamplingModel


def step_variance(proc: Marginal, s: int) -> float:
    """Variance of the chain's single step s - 1 -> s (0 at s = 0)."""
    if s == 0:
        return 0.0
    a_s, s_s = proc.scales(s)
    a_prev, s_prev = proc.scales(s - 1)
    return max(s_s**2 - (a_s / a_prev) ** 2 * s_prev**2, 0.0)


class GemsDiffCodeSampler(Sampler):
    """The official code's update over an evenly spaced grid (one model call per step).

    Options:
        steps: number of steps, 1..T (default: T, as the code).
    """

    name = "gemsdiff_code"
    requires: ClassVar[frozenset[Capability]] = frozenset({Marginal})

    def loop(self, model: SamplingModel, state: dict[str, Tensor], condition: Condition, *,
             generator: torch.Generator | None, progress: ProgressCallback | None) -> dict[str, Tensor]:
        grid = self.grid(model)
        for i, (t, s) in enumerate(pairwise(grid)):
            prediction = self.predict(model, state, t, condition)
            new = self.reverse_all(model, state, t, s, prediction, condition, generator, ("categorical", "rule"))
            for var, proc in self.continuous(model, Marginal).items():
                args = condition.args(var)
                x_t = state[var]
                a_t, s_t = proc.scales(t)
                a_s, s_s = proc.scales(s)
                x0 = proc.to_x0(prediction[var], x_t, t, **args)
                if a_t == 1.0:
                    mean = x0
                else:  # mu_t = a_s x0 + sqrt(s_s^2 - sigma^2) eps_hat at the posterior's sigma (DDIM eq. 12, eta = 1)
                    a_ts = a_t / a_s
                    var_ts = s_t**2 - a_ts**2 * s_s**2
                    posterior_var = var_ts * s_s**2 / s_t**2
                    eps = proc.to_eps(prediction[var], x_t, t, **args)
                    mean = a_s * x0 + math.sqrt(max(s_s**2 - posterior_var, 0.0)) * eps
                noise = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
                new[var] = condition.constrain(var, proc.finalize(mean + math.sqrt(step_variance(proc, s)) * noise))
            state = new
            if progress is not None:
                progress(i + 1, len(grid) - 1)
        return state
