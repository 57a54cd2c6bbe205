"""Variance-exploding Gaussian diffusion (NCSN; Song & Ermon 2019): x_t = x0 + sigma_t eps."""

from __future__ import annotations

from typing import ClassVar

import torch

from crystalgen.capabilities import Capability, Marginal, Posterior, Score, VarianceExploding
from crystalgen.processes.base import ContinuousProcess
from crystalgen.processes.schedules import geometric_sigmas


class VEGaussian(ContinuousProcess):
    """NCSN noise levels in R^d: sigma_1 .. sigma_T geometric from ``sigma_min`` to ``sigma_max``, sigma_0 = 0.

    Args:
        num_steps: T (the number of noise levels).
        sigma_min, sigma_max: smallest and largest noise std, in the variable's units (CDVAE: 0.01 and 10 Angstrom).
        prediction: ``"score"`` (default; the network outputs sigma_t * score, i.e. -eps, as in NCSN and CDVAE)
            or ``"eps"`` / ``"x0"``.

    The prior is N(0, sigma_max^2 I), which assumes sigma_max is much larger than the spread of the data.
    """

    capabilities: ClassVar[frozenset[Capability]] = frozenset({Posterior, Marginal, Score, VarianceExploding})

    def __init__(self, num_steps: int, sigma_min: float = 0.01, sigma_max: float = 10.0, prediction: str = "score") -> None:
        sigmas = geometric_sigmas(num_steps, sigma_min, sigma_max)
        super().__init__(num_steps, torch.ones_like(sigmas), sigmas, prediction)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, sigma_min={float(self.sigmas[1]):g}, sigma_max={float(self.sigmas[-1]):g}"
