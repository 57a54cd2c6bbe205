"""The noise-process contract: one variable's forward corruption, prior, training target and reverse maths.

Time is discrete and shared by all processes of a model: ``t = 0`` is clean data, ``t = 1 .. num_steps`` are
increasingly noisy levels. During training ``t`` is a LongTensor with one entry per row (levels 1..T); while
sampling all crystals of a batch sit at the same level and ``t``/``s`` are Python ints with ``0 <= s < t``.

Samplers never look inside a process. They ask for *capabilities*, the protocols of
:mod:`crystalgen.capabilities` (:data:`CAPABILITIES`), and call only their methods:

* ``reverse_step(x_t, t, s, prediction)``: draw ``x_s ~ q(x_s | x_t, x0_hat)`` for any ``s < t``
  (:class:`Posterior`; for categorical processes this is the only update under any sampler);
* ``ddim_step(x_t, t, s, prediction, eta)`` and the conversions of the marginal (:class:`Marginal`);
* ``langevin_step(x, t, prediction, step_size)``, ``score(...)``, ``clean_estimate(...)`` (:class:`Score`);
* ``corrector_step(x, t, prediction)`` for processes that are updated by a rule at every model call
  (:class:`Rule`; e.g. CDVAE's argmax atom types).

Every method accepts the per-variable keyword arguments a model puts in ``Condition.process_args`` (e.g. a
per-row ``marginal=`` for a categorical process); processes ignore the ones they do not use. A process whose step
needs the *current* value of another variable (Cartesian positions under the lattice being sampled alongside them)
names it in ``reads``: every call while sampling then receives that value as the keyword argument of the same name
(``Sampler.step_args``).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from crystalgen.capabilities import CAPABILITY_NAMES, Capability, Marginal, Posterior, Score

#: What a process can do for a sampler (one protocol each, see crystalgen.capabilities).
CAPABILITIES: frozenset[Capability] = frozenset(CAPABILITY_NAMES)

Parameterisation = Literal["eps", "score", "x0", "logits"]


def level(values: Tensor, t: int | Tensor, like: Tensor) -> Tensor:
    """Schedule entry ``values[t]`` shaped to broadcast against ``like`` (rows first)."""
    if isinstance(t, int):
        return values[t].to(like.dtype)
    v = values[t.to(values.device)].to(like.dtype)
    return v.reshape(v.shape + (1,) * (like.dim() - v.dim()))


def per_row_mean(x: Tensor) -> Tensor:
    """Average over every dimension but the first (rows)."""
    return x.flatten(1).mean(1) if x.dim() > 1 else x


@dataclass
class Noised:
    """A training example at level t: the corrupted value and the denoiser's regression/classification target."""

    x_t: Tensor
    target: Tensor


class NoiseProcess(nn.Module, ABC):
    """Base class of every noise process. Schedules are float64 buffers, so ``.to(device)`` moves them."""

    #: capabilities this process offers (protocols of crystalgen.capabilities)
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Posterior})
    #: True for categorical variables (values are class indices)
    discrete: ClassVar[bool] = False
    #: what the denoiser must output for this variable
    prediction: Parameterisation = "eps"
    #: where the variable's values live (crystalgen.specs): "real", "torus", "classes", "atomic_numbers"
    space: ClassVar[str] = "real"
    #: keyword arguments every call requires (from Condition.process_args while sampling), e.g. "lattice"
    needs: ClassVar[frozenset[str]] = frozenset()
    #: other variables of the sampling state whose current values every call receives, as keyword arguments of the
    #: same name, in the form the model's ``current_values`` gives (e.g. "lattice" as (B, 3, 3) Angstrom); a name in
    #: ``needs`` that is also read is then not the model's to pass
    reads: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, num_steps: int) -> None:
        super().__init__()
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        self.num_steps = int(num_steps)

    def check_levels(self, t: int, s: int) -> None:
        if not 0 <= s < t <= self.num_steps:
            raise ValueError(f"{type(self).__name__}: a reverse step needs 0 <= s < t <= {self.num_steps}, got t={t}, s={s}")

    @abstractmethod
    def sample_prior(self, shape: tuple[int, ...], *, device: torch.device | str = "cpu",
                     generator: torch.Generator | None = None, **kwargs: Any) -> Tensor:
        """Draw x_T (the start of sampling)."""

    @abstractmethod
    def add_noise(self, x0: Tensor, t: Tensor, *, generator: torch.Generator | None = None, **kwargs: Any) -> Noised:
        """Corrupt clean rows ``x0`` to their levels ``t`` (LongTensor, one per row, 1..T) and return the target."""

    @abstractmethod
    def loss(self, prediction: Tensor, noised: Noised, **kwargs: Any) -> Tensor:
        """Per-row training loss (unreduced over rows, averaged over the variable's own dimensions)."""

    @abstractmethod
    def reverse_step(self, x_t: Tensor, t: int, s: int, prediction: Tensor, *,
                     generator: torch.Generator | None = None, **kwargs: Any) -> Tensor:
        """Draw x_s from the reverse process given x_t and the denoiser's prediction (s < t; s = 0 ends)."""

    def corrector_step(self, x: Tensor, t: int, prediction: Tensor, *,
                       generator: torch.Generator | None = None, **kwargs: Any) -> Tensor:
        """Update applied at every corrector call; identity unless the process is a rule."""
        return x

    def extra_repr(self) -> str:
        return f"num_steps={self.num_steps}, prediction={self.prediction!r}"


class ContinuousProcess(NoiseProcess):
    """A Gaussian-type process with marginal ``x_t = a_t x0 + s_t eps`` (wrapped on the torus where stated).

    Subclasses pass the schedule tensors ``alphas`` (a_t) and ``sigmas`` (s_t), indexed 0..T with a_0 = 1 and
    s_0 = 0. Everything else (targets, conversions between eps, score and x0, the posterior for any s < t, DDIM,
    Langevin) is defined once here from them; the torus overrides only what the image sum changes
    (``finalize``, ``conditional_score``, ``score_norm``, ``sample_prior``).

    Parameterisations (``prediction``):
        eps   - the noise eps of the marginal;
        x0    - the clean value;
        score - the *normalised* score, grad log p_t(x_t) / score_norm_t, where score_norm_t is the root mean
                square of the conditional score (exactly 1/s_t in R^d, so the target is -eps as in NCSN/CDVAE;
                sqrt(sigma_norm_t) on the torus as in DiffCSP).
    """

    capabilities: ClassVar[frozenset[Capability]] = frozenset({Posterior, Marginal, Score})
    #: parameterisations this process supports
    predictions: ClassVar[tuple[str, ...]] = ("eps", "x0", "score")

    alphas: Tensor
    sigmas: Tensor

    def __init__(self, num_steps: int, alphas: Tensor, sigmas: Tensor, prediction: str) -> None:
        super().__init__(num_steps)
        if prediction not in self.predictions:
            raise ValueError(f"{type(self).__name__} supports prediction in {self.predictions}, got {prediction!r}")
        if alphas.shape != (num_steps + 1,) or sigmas.shape != (num_steps + 1,):
            raise ValueError(f"schedules must have T + 1 = {num_steps + 1} entries, got {tuple(alphas.shape)}, {tuple(sigmas.shape)}")
        self.prediction = prediction  # type: ignore[assignment]
        self.register_buffer("alphas", alphas.to(torch.float64))
        self.register_buffer("sigmas", sigmas.to(torch.float64))

    def marginal(self, t: int | Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
        """(a_t, s_t) broadcastable against ``like``."""
        return level(self.alphas, t, like), level(self.sigmas, t, like)

    def scales(self, t: int) -> tuple[float, float]:
        """(a_t, s_t) as Python floats."""
        return float(self.alphas[t]), float(self.sigmas[t])

    # -- forward process and training target ------------------------------------------------------
    def sample_prior(self, shape: tuple[int, ...], *, device: torch.device | str = "cpu",
                     generator: torch.Generator | None = None, **kwargs: Any) -> Tensor:
        """x_T ~ N(0, s_T^2 I): the marginal at T once a_T x0 is negligible (N(0, I) for VP)."""
        _, s_T = self.scales(self.num_steps)
        return s_T * torch.randn(shape, generator=generator, device=device)

    def add_noise(self, x0: Tensor, t: Tensor, *, generator: torch.Generator | None = None, **kwargs: Any) -> Noised:
        a, s = self.marginal(t, x0)
        eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_t = self.finalize(a * x0 + s * eps)
        if self.prediction == "eps":
            target = eps
        elif self.prediction == "x0":
            target = x0
        else:  # denoising score matching (Vincent 2011): E[grad log q(x_t|x0) | x_t] = grad log p_t(x_t)
            target = self.conditional_score(x_t, x0, t) / self.score_norm(t, x0)
        return Noised(x_t, target)

    def loss(self, prediction: Tensor, noised: Noised, **kwargs: Any) -> Tensor:
        """Mean squared error on the declared target."""
        return per_row_mean((prediction - noised.target) ** 2)

    def conditional_score(self, x_t: Tensor, x0: Tensor, t: int | Tensor) -> Tensor:
        """grad_{x_t} log q(x_t | x0) = -(x_t - a_t x0) / s_t^2."""
        a, s = self.marginal(t, x_t)
        return -(x_t - a * x0) / s**2

    def score_norm(self, t: int | Tensor, like: Tensor) -> Tensor:
        """Root mean square of one coordinate of the conditional score at level t: 1/s_t in R^d."""
        return 1 / level(self.sigmas, t, like)

    # -- conversions between parameterisations (the one place they live) --------------------------
    def to_eps(self, prediction: Tensor, x_t: Tensor, t: int | Tensor, **kwargs: Any) -> Tensor:
        a, s = self.marginal(t, x_t)
        if self.prediction == "eps":
            return prediction
        if self.prediction == "score":
            return -s * self.score(prediction, x_t, t, **kwargs)
        return (x_t - a * prediction) / s

    def to_x0(self, prediction: Tensor, x_t: Tensor, t: int | Tensor, **kwargs: Any) -> Tensor:
        """E[x0 | x_t] (Tweedie); on the torus an unwrapped lift near x_t (see WrappedNormal)."""
        if self.prediction == "x0":
            return prediction
        a, s = self.marginal(t, x_t)
        return (x_t - s * self.to_eps(prediction, x_t, t, **kwargs)) / a

    def from_x0(self, x0: Tensor, x_t: Tensor, t: int | Tensor) -> Tensor:
        """The prediction, in this process's parameterisation, whose clean estimate is ``x0`` (inverse of to_x0)."""
        if self.prediction == "x0":
            return x0
        a, s = self.marginal(t, x_t)
        eps = (x_t - a * x0) / s
        return eps if self.prediction == "eps" else -eps / s / self.score_norm(t, x_t)

    def clip_x0(self, prediction: Tensor, x_t: Tensor, t: int | Tensor, low: Tensor, high: Tensor) -> Tensor:
        """``prediction`` with its clean estimate clamped to [low, high] (the data's range), as DDPM code clamps
        x0_hat to [-1, 1] ("clip_denoised"). At high noise x0_hat = (x_t - s_t eps_hat) / a_t multiplies any error of
        eps_hat by 1 / a_t (thousands near t = T), and a strided sampler carries that into x_s; the clamp bounds it.
        Meant for processes in R^d (not on the torus)."""
        x0 = self.to_x0(prediction, x_t, t)
        return self.from_x0(torch.maximum(torch.minimum(x0, high), low), x_t, t)

    def score(self, prediction: Tensor, x_t: Tensor, t: int | Tensor, **kwargs: Any) -> Tensor:
        """grad log p_t(x_t) estimated from the prediction (score = -eps / s_t)."""
        if self.prediction == "score":
            return prediction * self.score_norm(t, x_t)
        _, s = self.marginal(t, x_t)
        return -self.to_eps(prediction, x_t, t, **kwargs) / s

    # -- reverse updates ----------------------------------------------------------------------------
    def transition(self, t: int, s: int) -> tuple[float, float]:
        """(a_{t|s}, s_{t|s}^2) of the Markov chain q(x_t | x_s) = N(a_{t|s} x_s, s_{t|s}^2 I) implied by the
        marginals: a_{t|s} = a_t / a_s, s_{t|s}^2 = s_t^2 - a_{t|s}^2 s_s^2 (Kingma et al. 2021, eq. 6)."""
        a_t, s_t = self.scales(t)
        a_s, s_s = self.scales(s)
        a_ts = a_t / a_s
        return a_ts, max(s_t**2 - a_ts**2 * s_s**2, 0.0)

    def reverse_step(self, x_t: Tensor, t: int, s: int, prediction: Tensor, *,
                     generator: torch.Generator | None = None, **kwargs: Any) -> Tensor:
        """Draw x_s ~ q(x_s | x_t, x0_hat), the Gaussian posterior of the chain for any s < t:
        mean = (x_t - s_{t|s}^2 / s_t * eps_hat) / a_{t|s} and variance s_{t|s}^2 s_s^2 / s_t^2
        (DDPM eq. 7/11 with one step replaced by t -> s; mean written in eps so a_t is never divided by)."""
        self.check_levels(t, s)
        a_ts, var_ts = self.transition(t, s)
        _, s_t = self.scales(t)
        _, s_s = self.scales(s)
        eps = self.to_eps(prediction, x_t, t, **kwargs)
        mean = (x_t - (var_ts / s_t) * eps) / a_ts
        std = math.sqrt(var_ts) * s_s / s_t
        return self.finalize(mean + std * self._noise(x_t, generator))

    def ddim_step(self, x_t: Tensor, t: int, s: int, prediction: Tensor, *, eta: float = 0.0,
                  generator: torch.Generator | None = None, **kwargs: Any) -> Tensor:
        """DDIM update (Song, Meng & Ermon 2021, eq. 12) from t to s < t for general (a, s) marginals:
        x_s = a_s x0_hat + sqrt(s_s^2 - sigma^2) eps_hat + sigma z, sigma = eta * posterior std (eta = 1 is
        the ancestral posterior step, eta = 0 deterministic)."""
        self.check_levels(t, s)
        a_ts, var_ts = self.transition(t, s)
        _, s_t = self.scales(t)
        _, s_s = self.scales(s)
        eps = self.to_eps(prediction, x_t, t, **kwargs)
        noise_std = eta * math.sqrt(var_ts) * s_s / s_t
        x_s = (x_t - s_t * eps) / a_ts + math.sqrt(max(s_s**2 - noise_std**2, 0.0)) * eps  # a_s x0_hat = (x_t - s_t eps) / a_{t|s}
        if noise_std > 0:
            x_s = x_s + noise_std * self._noise(x_t, generator)
        return self.finalize(x_s)

    def langevin_step(self, x: Tensor, t: int, prediction: Tensor, step_size: float | Tensor, *,
                      generator: torch.Generator | None = None, noise: Tensor | None = None, **kwargs: Any) -> Tensor:
        """One unadjusted Langevin step on p_t: x + h * score + sqrt(2h) z (``noise`` supplies z if given)."""
        z = self._noise(x, generator) if noise is None else noise
        return self.finalize(x + step_size * self.score(prediction, x, t, **kwargs) + (2 * step_size) ** 0.5 * z)

    def clean_estimate(self, prediction: Tensor, x_t: Tensor, t: int, **kwargs: Any) -> Tensor:
        """Tweedie's x0_hat mapped onto the variable's domain (e.g. annealed Langevin's final denoising)."""
        return self.finalize(self.to_x0(prediction, x_t, t, **kwargs))

    def finalize(self, x: Tensor) -> Tensor:
        """Map a raw update back onto the variable's domain (identity in R^d, mod 1 on the torus)."""
        return x

    @staticmethod
    def _noise(like: Tensor, generator: torch.Generator | None) -> Tensor:
        return torch.randn(like.shape, generator=generator, device=like.device, dtype=like.dtype)
