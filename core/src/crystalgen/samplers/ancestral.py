"""Ancestral sampling (DDPM, Ho et al. 2020, Algorithm 2): x_s ~ q(x_s | x_t, x0_hat) for every variable.

With ``steps`` < T the same posterior is taken between the levels of an evenly spaced grid (any s < t), which
for Gaussian processes is DDIM with eta = 1.
"""

from __future__ import annotations

from itertools import pairwise
from typing import ClassVar

import torch
from torch import Tensor

from crystalgen.capabilities import Capability, Posterior
from crystalgen.samplers.base import ProgressCallback, Sampler, SamplingModel
from crystalgen.state import Condition


class AncestralSampler(Sampler):
    """Each process's ``reverse_step`` over the grid T = t_0 > ... > t_steps = 0 (one model call per step).

    Options:
        steps: number of reverse steps (default: all T levels).
    """

    name = "ancestral"
    requires: ClassVar[frozenset[Capability]] = frozenset({Posterior})

    def loop(self, model: SamplingModel, state: dict[str, Tensor], condition: Condition, *,
             generator: torch.Generator | None, progress: ProgressCallback | None) -> dict[str, Tensor]:
        grid = self.grid(model)
        for i, (t, s) in enumerate(pairwise(grid)):
            prediction = self.predict(model, state, t, condition)
            state = self.reverse_all(model, state, t, s, prediction, condition, generator, ("continuous", "categorical", "rule"))
            if progress is not None:
                progress(i + 1, len(grid) - 1)
        return state
