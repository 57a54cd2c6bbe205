"""Annealed Langevin dynamics (NCSN, Song & Ermon 2019, Algorithm 1; CDVAE's sampler).

At each noise level t (largest first) run ``n_steps_each`` unadjusted Langevin steps on p_t,
x <- x + h_t score + sqrt(2 h_t) z with h_t = step_lr (sigma_t / sigma_min)^2, sigma_min being the process's
noise std at the smallest level of the grid. Continuous processes must be variance exploding (the same x is
carried from level to level without rescaling) and expose a score. Rule processes follow their rule after every
model call; categorical processes take their posterior step t -> s when the level changes, with the level's last
prediction.
"""

from __future__ import annotations

from itertools import pairwise
from typing import ClassVar

import torch
from torch import Tensor

from crystalgen.capabilities import Capability, Score, VarianceExploding
from crystalgen.samplers.base import ProgressCallback, Sampler, SamplingModel
from crystalgen.state import Condition


class AnnealedLangevinSampler(Sampler):
    """Options:
        steps: number of noise levels visited (evenly spaced, default all T).
        n_steps_each: Langevin steps per level (CDVAE: 100).
        step_lr: step size at the smallest level (CDVAE: 1e-4 for sigma_min = 0.01 Angstrom).
        final_denoise: after the last level, replace continuous variables by x0_hat (Tweedie; off by default,
            as in CDVAE).
    """

    name = "langevin"
    requires: ClassVar[frozenset[Capability]] = frozenset({Score, VarianceExploding})

    def __init__(self, steps: int | None = None, n_steps_each: int = 100, step_lr: float = 1e-4,
                 final_denoise: bool = False) -> None:
        super().__init__(steps)
        if n_steps_each < 1 or step_lr <= 0:
            raise ValueError(f"n_steps_each must be >= 1 and step_lr > 0, got {n_steps_each}, {step_lr}")
        self.n_steps_each = int(n_steps_each)
        self.step_lr = float(step_lr)
        self.final_denoise = bool(final_denoise)

    def loop(self, model: SamplingModel, state: dict[str, Tensor], condition: Condition, *,
             generator: torch.Generator | None, progress: ProgressCallback | None) -> dict[str, Tensor]:
        grid = self.grid(model)
        t_min = grid[-2]
        continuous = self.continuous(model, VarianceExploding)
        total, done = (len(grid) - 1) * self.n_steps_each + int(self.final_denoise), 0
        for t, s in pairwise(grid):
            for _ in range(self.n_steps_each):
                prediction = self.predict(model, state, t, condition)
                new = self.correct_rules(model, state, t, prediction, condition, generator)
                for var, proc in continuous.items():
                    h = self.step_lr * (proc.scales(t)[1] / proc.scales(t_min)[1]) ** 2
                    x = proc.langevin_step(state[var], t, prediction[var], h, generator=generator,
                                            **self.step_args(model, var, state, condition))
                    new[var] = condition.constrain(var, x)
                state, done = new, done + 1
                if progress is not None:
                    progress(done, total)
            if s == 0 and self.final_denoise:
                prediction = self.predict(model, state, t, condition)
                new = self.correct_rules(model, state, t, prediction, condition, generator)
                for var, proc in continuous.items():
                    x0 = proc.clean_estimate(prediction[var], state[var], t, **self.step_args(model, var, state, condition))
                    new[var] = condition.constrain(var, x0)
                state, done = new, done + 1
                if progress is not None:
                    progress(done, total)
            state = self.reverse_all(model, state, t, s, prediction, condition, generator, ("categorical",))
        return state
