"""DDIM (Song, Meng & Ermon 2021, eq. 12): deterministic (eta = 0) or partly stochastic steps that may skip levels.

Continuous processes take ``ddim_step``; categorical and rule processes take their ``reverse_step`` between the
same levels, which for the categorical posterior q(x_s | x_t, x0_hat) is exact for any s < t.
"""

from __future__ import annotations

from itertools import pairwise
from typing import ClassVar

import torch
from torch import Tensor

from crystalgen.capabilities import Capability, Marginal
from crystalgen.samplers.base import ProgressCallback, Sampler, SamplingModel
from crystalgen.state import Condition


class DDIMSampler(Sampler):
    """DDIM over an evenly spaced grid T = t_0 > ... > t_steps = 0 (one model call per step).

    Options:
        steps: number of steps, 1..T (default: T).
        eta: 0 for the deterministic DDIM update, 1 for the ancestral posterior (default 0).
    """

    name = "ddim"
    requires: ClassVar[frozenset[Capability]] = frozenset({Marginal})

    def __init__(self, steps: int | None = None, eta: float = 0.0) -> None:
        super().__init__(steps)
        if eta < 0:
            raise ValueError(f"eta must be >= 0, got {eta}")
        self.eta = float(eta)

    def loop(self, model: SamplingModel, state: dict[str, Tensor], condition: Condition, *,
             generator: torch.Generator | None, progress: ProgressCallback | None) -> dict[str, Tensor]:
        grid = self.grid(model)
        for i, (t, s) in enumerate(pairwise(grid)):
            prediction = self.predict(model, state, t, condition)
            new = self.reverse_all(model, state, t, s, prediction, condition, generator, ("categorical", "rule"))
            for var, proc in self.continuous(model, Marginal).items():
                x = proc.ddim_step(state[var], t, s, prediction[var], eta=self.eta, generator=generator,
                                  **self.step_args(model, var, state, condition))
                new[var] = condition.constrain(var, x)
            state = new
            if progress is not None:
                progress(i + 1, len(grid) - 1)
        return state
