"""The noise-process contract: one variable's forward corruption, prior, training target and reverse maths.

Time is discrete and shared by all processes of a model: ``t = 0`` is clean data, ``t = 1 .. num_steps`` are
increasingly noisy levels. During training ``t`` is a LongTensor with one entry per row; while sampling all
crystals of a batch sit at the same level and ``t``/``s`` are Python ints with ``s < t``.

Samplers never look inside a process. They ask for *capabilities* (see :data:`CAPABILITIES`) and call:

* ``reverse_step(x_t, t, s, prediction)``: draw ``x_s ~ q(x_s | x_t, x0_hat)`` for any ``s < t``
  (every process; for categorical ones this is the only update under any sampler);
* ``ddim_step(x_t, t, s, prediction, eta)`` (capability ``"marginal"``);
* ``langevin_step(x, t, prediction, step_size)`` and ``score(...)`` (capability ``"score"``);
* ``corrector_step(x, t, prediction)`` for processes that are updated by a rule at every model call
  (capability ``"rule"``; e.g. CDVAE's argmax atom types).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor, nn

#: What a process can do for a sampler.
#:   posterior  - reverse_step from any t to any s < t
#:   marginal   - a continuous marginal x_t = a_t x0 + s_t eps with eps/score/x0 conversions (DDIM)
#:   score      - the score of p_t can be formed from the prediction (Langevin, predictor-corrector)
#:   variance_exploding - a_t = 1 for all t, so annealed Langevin can move between levels without rescaling
#:   rule       - updated deterministically from each prediction (corrector_step), not by diffusion
CAPABILITIES = frozenset({"posterior", "marginal", "score", "variance_exploding", "rule"})

Parameterisation = Literal["eps", "score", "x0", "logits"]


def level(values: Tensor, t: int | Tensor, like: Tensor) -> Tensor:
    """Schedule entry ``values[t]`` shaped to broadcast against ``like`` (rows first)."""
    if isinstance(t, int):
        return values[t].to(like.dtype)
    v = values[t.to(values.device)].to(like.dtype)
    return v.reshape(v.shape + (1,) * (like.dim() - v.dim()))


@dataclass
class Noised:
    """A training example at level t: the corrupted value and the denoiser's regression/classification target."""

    x_t: Tensor
    target: Tensor


class NoiseProcess(nn.Module, ABC):
    """Base class of every noise process. Schedules are buffers, so ``.to(device)`` moves them."""

    #: capabilities this process offers (subset of CAPABILITIES)
    capabilities: ClassVar[frozenset[str]] = frozenset({"posterior"})
    #: True for categorical variables (values are class indices)
    discrete: ClassVar[bool] = False
    #: what the denoiser must output for this variable
    prediction: Parameterisation = "eps"

    def __init__(self, num_steps: int) -> None:
        super().__init__()
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        self.num_steps = int(num_steps)

    @abstractmethod
    def sample_prior(self, shape: tuple[int, ...], *, device: torch.device | str = "cpu",
                     generator: torch.Generator | None = None, **kwargs) -> Tensor:
        """Draw x_T (the start of sampling)."""

    @abstractmethod
    def add_noise(self, x0: Tensor, t: Tensor, *, generator: torch.Generator | None = None, **kwargs) -> Noised:
        """Corrupt clean rows ``x0`` to their levels ``t`` (one per row) and return the training target."""

    @abstractmethod
    def loss(self, prediction: Tensor, noised: Noised, **kwargs) -> Tensor:
        """Per-row training loss (unreduced over rows, reduced over the variable's own dimensions)."""

    @abstractmethod
    def reverse_step(self, x_t: Tensor, t: int, s: int, prediction: Tensor, *,
                     generator: torch.Generator | None = None, **kwargs) -> Tensor:
        """Draw x_s from the reverse process given x_t and the denoiser's prediction (s < t; s = 0 ends)."""

    def corrector_step(self, x: Tensor, t: int, prediction: Tensor, **kwargs) -> Tensor:
        """Update applied at every corrector call; identity unless the process is a rule."""
        return x

    def extra_repr(self) -> str:
        return f"num_steps={self.num_steps}, prediction={self.prediction!r}"


class ContinuousProcess(NoiseProcess):
    """A Gaussian-type process with marginal ``x_t = a_t x0 + s_t eps`` (wrapped on the torus where stated).

    Subclasses provide the schedule tensors ``alphas`` (a_t) and ``sigmas`` (s_t), indexed 0..T, and the
    conversions below are defined once here from them; the torus overrides what the image sum changes.
    """

    capabilities = frozenset({"posterior", "marginal", "score"})

    def marginal(self, t: int | Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        """(a_t, s_t) broadcastable against ``like``."""
        return level(self.alphas, t, like), level(self.sigmas, t, like)

    # -- conversions between parameterisations (the one place they live) --------------------------
    def to_eps(self, prediction: Tensor, x_t: Tensor, t: int | Tensor) -> Tensor:
        a, s = self.marginal(t, x_t)
        if self.prediction == "eps":
            return prediction
        if self.prediction == "score":
            return -s * prediction
        if self.prediction == "x0":
            return (x_t - a * prediction) / s
        raise ValueError(f"unknown parameterisation {self.prediction!r}")

    def to_x0(self, prediction: Tensor, x_t: Tensor, t: int | Tensor) -> Tensor:
        a, s = self.marginal(t, x_t)
        if self.prediction == "x0":
            return prediction
        return (x_t - s * self.to_eps(prediction, x_t, t)) / a

    def score(self, prediction: Tensor, x_t: Tensor, t: int | Tensor) -> Tensor:
        """grad log p_t(x_t) estimated from the prediction."""
        _, s = self.marginal(t, x_t)
        if self.prediction == "score":
            return prediction
        return -self.to_eps(prediction, x_t, t) / s

    def ddim_step(self, x_t: Tensor, t: int, s: int, prediction: Tensor, *, eta: float = 0.0,
                  generator: torch.Generator | None = None) -> Tensor:
        """DDIM update (Song et al. 2021, eq. 12) from level t to s < t; eta=1 is ancestral-like."""
        a_t, s_t = self.marginal(t, x_t)
        a_s, s_s = self.marginal(s, x_t)
        x0 = self.to_x0(prediction, x_t, t)
        eps = self.to_eps(prediction, x_t, t)
        if s == 0:
            return self.finalize(x0)
        # stochasticity sigma_{t->s} of DDIM, written for general (a, s) marginals
        var_ts = s_s**2 * (1 - (a_t * s_s) ** 2 / (a_s * s_t) ** 2).clamp(min=0) if eta > 0 else torch.zeros_like(s_s)
        noise_std = eta * var_ts.sqrt()
        direction = (s_s**2 - noise_std**2).clamp(min=0).sqrt() * eps
        x_s = a_s * x0 + direction
        if eta > 0:
            x_s = x_s + noise_std * torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
        return self.finalize(x_s)

    def langevin_step(self, x: Tensor, t: int, prediction: Tensor, step_size: float | Tensor, *,
                      generator: torch.Generator | None = None) -> Tensor:
        """One unadjusted Langevin step on p_t: x + h * score + sqrt(2h) z."""
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return self.finalize(x + step_size * self.score(prediction, x, t) + (2 * step_size) ** 0.5 * z)

    def finalize(self, x: Tensor) -> Tensor:
        """Map a raw update back onto the variable's domain (identity in R^d, mod 1 on the torus)."""
        return x
