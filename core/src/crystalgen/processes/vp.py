"""Variance-preserving Gaussian diffusion (DDPM; Ho et al. 2020): x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps."""

from __future__ import annotations

from crystalgen.processes.base import ContinuousProcess
from crystalgen.processes.schedules import alpha_bars, betas_by_name


class VPGaussian(ContinuousProcess):
    """DDPM forward process in R^d with a linear or cosine beta schedule.

    Args:
        num_steps: T.
        schedule: ``"cosine"`` (Nichol & Dhariwal, s = 0.008, betas clipped to [1e-4, 0.9999] as in
            DiffCSP/SymmCD) or ``"linear"`` (DDPM, 1e-4 -> 0.02 at T = 1000, scaled by 1000/T when unset).
        prediction: ``"eps"`` (default, DDPM), ``"x0"`` or ``"score"`` (see ContinuousProcess).
        beta_start, beta_end: endpoints of the linear schedule.
        cosine_s: offset s of the cosine schedule.

    The prior is N(0, I) (up to the factor sqrt(1 - abar_T), which is 1 to within 1e-4).
    """

    def __init__(self, num_steps: int, schedule: str = "cosine", prediction: str = "eps", *,
                 beta_start: float | None = None, beta_end: float | None = None, cosine_s: float = 0.008) -> None:
        betas = betas_by_name(schedule, num_steps, beta_start=beta_start, beta_end=beta_end, cosine_s=cosine_s)
        abar = alpha_bars(betas)
        super().__init__(num_steps, abar.sqrt(), (1 - abar).sqrt(), prediction)
        self.schedule = schedule
        self.register_buffer("betas", betas)
        self.register_buffer("alpha_bars", abar)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, schedule={self.schedule!r}"
