"""Discrete diffusion with marginal-prior transitions (D3PM, Austin et al. 2021; DiGress, Vignac et al. 2023).

One step mixes a one-hot row with the marginal m:  Q_t = alpha_t I + (1 - alpha_t) 1 m^T.  The family is closed
under products because m^T 1 = 1, so for s < t

    Qbar_{t|s} = Q_{s+1} ... Q_t = (abar_t / abar_s) I + (1 - abar_t / abar_s) 1 m^T,   Qbar_t = Qbar_{t|0},

with abar_t = prod_{u <= t} alpha_u. Values are class indices (LongTensor of shape (rows, *axes)); each entry is
an independent categorical over K classes (SymmCD: 15 site-symmetry axes x 13 classes; atom types: K = 94).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from crystalgen.capabilities import Capability, Posterior
from crystalgen.processes.base import Noised, NoiseProcess, level, per_row_mean
from crystalgen.processes.schedules import alpha_bars, betas_by_name

#: tolerance on marginals summing to one (they are renormalised after the check)
MARGINAL_ATOL = 1e-4


class D3PMMarginal(NoiseProcess):
    """Categorical diffusion towards a marginal distribution m.

    Args:
        num_steps: T.
        num_classes: K.
        marginal: fixed m, shape (K,) or (*axes, K) (e.g. (15, 13)); uniform over K when omitted. Every call
            accepts ``marginal=`` (a tensor broadcastable to ``x.shape + (K,)``, e.g. (rows, 15, 13) for
            per-space-group marginals) that replaces it for that call; the same m must be used for training
            and sampling of a row.
        schedule, beta_start, beta_end, cosine_s: alpha_t = 1 - beta_t of the VP schedules (``schedules.py``;
            SymmCD uses the same cosine schedule for k and its categorical variables).

    Prediction: logits of x0 (``x.shape + (K,)``). Loss: cross-entropy against the clean labels.
    """

    capabilities: ClassVar[frozenset[Capability]] = frozenset({Posterior})
    discrete = True
    prediction = "logits"
    space = "classes"

    marginal: Tensor
    alpha_bars: Tensor

    def __init__(self, num_steps: int, num_classes: int, marginal: Tensor | None = None, schedule: str = "cosine", *,
                 beta_start: float | None = None, beta_end: float | None = None, cosine_s: float = 0.008) -> None:
        super().__init__(num_steps)
        self.num_classes = int(num_classes)
        m = torch.full((num_classes,), 1.0 / num_classes) if marginal is None else marginal
        self.register_buffer("marginal", self._validated(m, "marginal"))
        betas = betas_by_name(schedule, num_steps, beta_start=beta_start, beta_end=beta_end, cosine_s=cosine_s)
        self.schedule = schedule
        self.register_buffer("alpha_bars", alpha_bars(betas))

    def _validated(self, m: Tensor, where: str) -> Tensor:
        m = torch.as_tensor(m, dtype=torch.float64)
        if m.shape[-1:] != (self.num_classes,):
            raise ValueError(f"{where}: last dimension must be num_classes={self.num_classes}, got shape {tuple(m.shape)}")
        total = m.sum(-1)
        if bool((m < 0).any()) or not torch.allclose(total, torch.ones_like(total), atol=MARGINAL_ATOL):
            raise ValueError(f"{where}: every row must be a probability distribution (entries >= 0 summing to 1); "
                             f"row sums range over [{float(total.min()):.6g}, {float(total.max()):.6g}]")
        return m / total.unsqueeze(-1)

    def set_marginal(self, m: Tensor) -> None:
        """Replace the fixed marginal (e.g. from training-set frequencies in ``fit_statistics``); same shape."""
        m = self._validated(m, "set_marginal")
        if m.shape != self.marginal.shape:
            raise ValueError(f"set_marginal: expected shape {tuple(self.marginal.shape)}, got {tuple(m.shape)}")
        self.marginal.copy_(m)

    def marginal_for(self, shape: tuple[int, ...], marginal: Tensor | None = None) -> Tensor:
        """m broadcast to ``shape + (K,)`` (float64), from the call's ``marginal=`` or the fixed buffer."""
        m = self.marginal if marginal is None else self._validated(marginal, "marginal=").to(self.marginal.device)
        try:
            return m.expand(*shape, self.num_classes)
        except RuntimeError:
            raise ValueError(f"marginal of shape {tuple(m.shape)} does not broadcast to values of shape {shape} "
                             f"with K={self.num_classes} classes") from None

    # -- forward process ------------------------------------------------------------------------------
    def sample_prior(self, shape: tuple[int, ...], *, device: torch.device | str = "cpu",
                     generator: torch.Generator | None = None, marginal: Tensor | None = None, **kwargs) -> Tensor:
        """x_T ~ m (Qbar_T -> 1 m^T as abar_T -> 0)."""
        return _sample(self.marginal_for(tuple(shape), marginal), generator).to(device)

    def add_noise(self, x0: Tensor, t: Tensor, *, generator: torch.Generator | None = None,
                  marginal: Tensor | None = None, **kwargs) -> Noised:
        """x_t ~ x0 Qbar_t = abar_t onehot(x0) + (1 - abar_t) m; the target is x0 itself."""
        m = self.marginal_for(tuple(x0.shape), marginal)
        abar = level(self.alpha_bars, t, m)
        probs = abar * F.one_hot(x0, self.num_classes).to(m.dtype) + (1 - abar) * m
        return Noised(_sample(probs, generator).to(x0.device), x0)

    def loss(self, prediction: Tensor, noised: Noised, **kwargs) -> Tensor:
        """Cross-entropy of the predicted x0 distribution against the clean labels, averaged over axes."""
        ce = F.cross_entropy(prediction.reshape(-1, self.num_classes), noised.target.reshape(-1), reduction="none")
        return per_row_mean(ce.reshape(noised.target.shape))

    # -- reverse process ------------------------------------------------------------------------------
    def posterior(self, x_t: Tensor, t: int, s: int, x0_probs: Tensor, marginal: Tensor | None = None) -> Tensor:
        """p(x_s | x_t) = sum_{x0} p(x0) q(x_s | x_t, x0), float64 of shape ``x_t.shape + (K,)``, rows summing to 1.

        q(x_s = k | x_t = j, x0 = i) = [Qbar_{t|s}]_{kj} [Qbar_s]_{ik} / [Qbar_t]_{ij} (Bayes, DiGress eq. 4), and
        with r = abar_t / abar_s:  [Qbar_{t|s}]_{kj} = r d_kj + (1 - r) m_j,  [Qbar_s]_{ik} = abar_s d_ik + (1 - abar_s) m_k.
        Summing over i with w_i = p(x0 = i) / [Qbar_t]_{ij} gives
            p(x_s = k | x_t = j) ∝ (r d_kj + (1 - r) m_j) (abar_s w_k + (1 - abar_s) m_k sum_i w_i),
        O(K) per entry. Values x0 = i that cannot produce x_t ([Qbar_t]_{ij} = 0: m_j = 0 and i != j) carry no
        posterior and are dropped from p(x0); if they held all of its mass, p(x0) is replaced by the uniform
        distribution over the values that can produce x_t (always non-empty: x0 = x_t).
        """
        self.check_levels(t, s)
        m = self.marginal_for(tuple(x_t.shape), marginal).to(x_t.device)
        abar_t, abar_s = float(self.alpha_bars[t]), float(self.alpha_bars[s])
        r = abar_t / abar_s
        at_xt = F.one_hot(x_t, self.num_classes).to(m.dtype)
        m_j = (m * at_xt).sum(-1, keepdim=True)
        q_t = abar_t * at_xt + (1 - abar_t) * m_j  # [Qbar_t]_{i, x_t} over i
        possible = q_t > 0
        p0 = x0_probs.to(m.dtype) * possible
        stranded = p0.sum(-1, keepdim=True) <= 0
        p0 = torch.where(stranded, possible.to(m.dtype), p0)
        w = p0 / torch.where(possible, q_t, torch.ones_like(q_t))
        left = r * at_xt + (1 - r) * m_j
        probs = left * (abar_s * w + (1 - abar_s) * m * w.sum(-1, keepdim=True))
        return probs / probs.sum(-1, keepdim=True)

    def reverse_step(self, x_t: Tensor, t: int, s: int, prediction: Tensor, *, generator: torch.Generator | None = None,
                     marginal: Tensor | None = None, **kwargs) -> Tensor:
        """Draw x_s ~ sum_{x0} softmax(prediction)(x0) q(x_s | x_t, x0) for any s < t (s = 0 samples x0)."""
        x0_probs = torch.softmax(prediction.to(torch.float64), dim=-1)
        return _sample(self.posterior(x_t, t, s, x0_probs, marginal), generator).to(x_t.device)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_classes={self.num_classes}, schedule={self.schedule!r}, marginal_shape={tuple(self.marginal.shape)}"


def _sample(probs: Tensor, generator: torch.Generator | None) -> Tensor:
    """One class index per distribution in ``probs`` (..., K)."""
    flat = probs.reshape(-1, probs.shape[-1])
    if flat.shape[0] == 0:
        return torch.zeros(probs.shape[:-1], dtype=torch.long)
    return torch.multinomial(flat, 1, generator=generator).reshape(probs.shape[:-1])
