"""The sampler ``gemsdiff_code``: the reverse update of GemsDiff's official code (sampling loop at commit 89c0c6c),
offered so that its difference from the exact posterior (the ``ancestral`` sampler) can be measured.

From the clean estimate x0_hat of each continuous process, at each step t -> s:
    a_t = 1 (variance exploding, the torus):  x_s = x0_hat + sqrt(beta_s) z       (x_t is not mixed in)
    otherwise (variance preserving, gl(3)):   x_s = mu_t(x_t, x0_hat) + sqrt(beta_s) z
where mu_t is the mean of the posterior q(x_s | x_t, x0_hat) and beta_s = s_s^2 - (a_s / a_{s-1})^2 s_{s-1}^2 is the
variance of the chain's one step into level s: exactly the code's beta_{t-1} for a VP process, and
abar_{s-1} beta_s (within 10 % of beta_s) for the torus process of GemsDiff (s_t^2 = 1 - abar_t). The exact posterior
instead draws x_s with variance s_s^2 (s_t^2 - s_s^2) / s_t^2 around a mean that mixes x_t in.

The option ``code_for`` limits the code's update to some variables (the others take the exact posterior step), to
tell its two differences apart: the jump to x0_hat on the torus (``frac_coords``) and the step variance on gl(3)
(``lattice``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from typing import Any, ClassVar

import torch
from torch import Tensor

from crystalgen import (
    Capability,
    Condition,
    Marginal,
    Posterior,
    ProgressCallback,
    Sampler,
    SamplingModel,
    capable,
)


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
        code_for: the continuous variables that take the code's update, a list or one name (default: all); the
            others take the exact posterior step, as under ``ancestral``.
    """

    name = "gemsdiff_code"
    requires: ClassVar[frozenset[Capability]] = frozenset({Marginal, Posterior})

    def __init__(self, steps: int | None = None, code_for: Sequence[str] | str | None = None) -> None:
        super().__init__(steps)
        self.code_for = None if code_for is None else [code_for] if isinstance(code_for, str) else list(code_for)

    def loop(self, model: SamplingModel, state: dict[str, Tensor], condition: Condition, *,
             generator: torch.Generator | None, progress: ProgressCallback | None) -> dict[str, Tensor]:
        continuous = self.continuous(model, Marginal)
        unknown = set(self.code_for or ()) - set(continuous)
        if unknown:
            raise ValueError(f"gemsdiff_code: code_for={sorted(unknown)} are not continuous variables of this model "
                             f"({', '.join(continuous)})")
        grid = self.grid(model)
        for i, (t, s) in enumerate(pairwise(grid)):
            prediction = self.predict(model, state, t, condition)
            new = self.reverse_all(model, state, t, s, prediction, condition, generator, ("categorical", "rule"))
            for var, proc in continuous.items():
                args = self.step_args(model, var, state, condition)
                if self.code_for is None or var in self.code_for:
                    x_s = self.code_step(proc, state[var], t, s, prediction[var], args, generator)
                else:
                    exact = capable(model.processes[var], Posterior)
                    x_s = exact.reverse_step(state[var], t, s, prediction[var], generator=generator, **args)
                new[var] = condition.constrain(var, x_s)
            state = new
            if progress is not None:
                progress(i + 1, len(grid) - 1)
        return state

    @staticmethod
    def code_step(proc: Marginal, x_t: Tensor, t: int, s: int, prediction: Tensor, args: dict[str, Any],
                  generator: torch.Generator | None) -> Tensor:
        """The code's update t -> s of one variable (module docstring)."""
        a_t, s_t = proc.scales(t)
        a_s, s_s = proc.scales(s)
        x0 = proc.to_x0(prediction, x_t, t, **args)
        if a_t == 1.0:
            mean = x0
        else:  # mu_t = a_s x0 + sqrt(s_s^2 - sigma^2) eps_hat at the posterior's sigma (DDIM eq. 12, eta = 1)
            a_ts = a_t / a_s
            var_ts = s_t**2 - a_ts**2 * s_s**2
            posterior_var = var_ts * s_s**2 / s_t**2
            eps = proc.to_eps(prediction, x_t, t, **args)
            mean = a_s * x0 + math.sqrt(max(s_s**2 - posterior_var, 0.0)) * eps
        noise = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
        return proc.finalize(mean + math.sqrt(step_variance(proc, s)) * noise)
