"""Atom types mixed with a predicted composition (CDVAE, Xie et al. 2022, appendix D.3), updated by a rule.

A~ ~ (p_A + sigma_A p_c) / (1 + sigma_A) in training; while sampling the types start from the composition and every
model call replaces them by the argmax of the predicted types. Every call needs ``composition`` (B, K)
probabilities over the classes and ``num_atoms`` (B,) as keyword arguments (``Condition.process_args``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from crystalgen.capabilities import Posterior, Rule
from crystalgen.geometry.neighbors import crystal_index
from crystalgen.processes.base import Noised, NoiseProcess, level
from crystalgen.processes.schedules import geometric_sigmas


@dataclass
class TypeNoised(Noised):
    """Noised types plus the per-row type noise level sigma_A, which weights the loss (eq. 2)."""

    sigma: Tensor


class CompositionMixing(NoiseProcess):
    """Atom types (atomic numbers 1 .. num_classes) perturbed towards the predicted composition (appendix D.3).

    Training: A~ ~ Categorical((onehot(A) + sigma_A p_c) / (1 + sigma_A)) with sigma_A geometric from
    ``sigma_min`` to ``sigma_max`` (CDVAE: 0.01 and 5). The denoiser predicts logits over the true type; the loss is
    cross-entropy / sigma_A. Sampling: the prior draws the types from the composition (``sample_prior``), and
    every model call replaces them by the argmax of the predicted logits (Algorithm 1, line 13), both between
    levels (``reverse_step``) and at corrector calls (``corrector_step``).

    Keyword arguments: ``composition`` (B, K) probabilities over the classes, ``num_atoms`` (B,).
    """

    capabilities = frozenset({Rule, Posterior})
    discrete = True
    prediction = "logits"
    space = "atomic_numbers"
    needs = frozenset({"composition", "num_atoms"})

    sigmas: Tensor

    def __init__(self, num_steps: int = 50, sigma_min: float = 0.01, sigma_max: float = 5.0, num_classes: int = 100) -> None:
        super().__init__(num_steps)
        self.num_classes = int(num_classes)
        self.register_buffer("sigmas", geometric_sigmas(num_steps, sigma_min, sigma_max))

    def sample_prior(self, shape: tuple[int, ...], *, device: torch.device | str = "cpu",
                     generator: torch.Generator | None = None, composition: Tensor | None = None,
                     num_atoms: Tensor | None = None, **kwargs: Any) -> Tensor:
        """Types drawn from the composition (Algorithm 1, line 4; CDVAE's ``sample_composition``)."""
        composition, num_atoms = _composition_args(composition, num_atoms)
        types = composition_types(composition, num_atoms, generator)
        if types.shape != tuple(shape):
            raise ValueError(f"composition and num_atoms give {tuple(types.shape)} types, the state expects {tuple(shape)}")
        return types.to(device)

    def add_noise(self, x0: Tensor, t: Tensor, *, generator: torch.Generator | None = None,
                  composition: Tensor | None = None, num_atoms: Tensor | None = None, **kwargs: Any) -> TypeNoised:
        composition, num_atoms = _composition_args(composition, num_atoms)
        sigma = level(self.sigmas, t, x0.float())
        rows = composition.to(sigma.dtype)[crystal_index(num_atoms.to(x0.device), x0.shape[0])]
        probs = F.one_hot(x0 - 1, self.num_classes).to(sigma.dtype) + sigma.unsqueeze(-1) * rows
        x_t = torch.multinomial(probs, 1, generator=generator).squeeze(-1) + 1  # multinomial normalises: / (1 + sigma)
        return TypeNoised(x_t, x0, sigma)

    def loss(self, prediction: Tensor, noised: Noised, **kwargs: Any) -> Tensor:
        """Cross-entropy of the true type under the predicted logits, divided by sigma_A (eq. 2)."""
        if not isinstance(noised, TypeNoised):
            raise TypeError("CompositionMixing.loss needs the TypeNoised returned by its add_noise")
        return F.cross_entropy(prediction, noised.target - 1, reduction="none") / noised.sigma

    def reverse_step(self, x_t: Tensor, t: int, s: int, prediction: Tensor, *, generator: torch.Generator | None = None,
                     **kwargs: Any) -> Tensor:
        self.check_levels(t, s)
        return prediction.argmax(dim=-1) + 1

    def corrector_step(self, x: Tensor, t: int, prediction: Tensor, *, generator: torch.Generator | None = None,
                       **kwargs: Any) -> Tensor:
        return prediction.argmax(dim=-1) + 1

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, sigma_1={float(self.sigmas[1]):g}, sigma_T={float(self.sigmas[-1]):g}, classes={self.num_classes}"


def _composition_args(composition: Tensor | None, num_atoms: Tensor | None) -> tuple[Tensor, Tensor]:
    """The call's ``composition`` and ``num_atoms``: optional in the signatures (the base contract takes any keyword
    arguments), required by the prior and the training corruption."""
    if composition is None or num_atoms is None:
        missing = [name for name, value in (("composition", composition), ("num_atoms", num_atoms)) if value is None]
        raise TypeError(f"CompositionMixing needs the keyword arguments composition= (B, K) and num_atoms= (B,); "
                        f"missing {', '.join(missing)} (pass them in Condition.process_args while sampling)")
    return composition, num_atoms


def composition_types(composition: Tensor, num_atoms: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """N_b atom types per crystal that follow its composition p_b (B, K) (CDVAE's ``sample_composition``).

    Each class gets round(p_k N) atoms; if that is short of N, the rest are drawn (with replacement) from the
    residual max(p - counts / N, 0); the list is shuffled and cut to N. Returns atomic numbers (class + 1),
    crystals concatenated. The per-crystal loop runs on the CPU (a few small operations per crystal), the result
    goes to ``num_atoms``' device.
    """
    out = []
    for p, n in zip(composition.double().cpu(), num_atoms.tolist(), strict=True):
        counts = torch.round(p * n).long()
        missing = n - int(counts.sum())
        if missing > 0:
            residual = (p - counts.double() / n).clamp(min=0)
            weights = residual if float(residual.sum()) > 0 else p
            extra = torch.multinomial(weights, missing, replacement=True, generator=_cpu(generator))
            counts += torch.bincount(extra, minlength=p.numel())
        types = torch.repeat_interleave(torch.arange(p.numel(), device=p.device), counts)
        types = types[torch.randperm(types.numel(), generator=_cpu(generator), device=p.device)][:n]
        out.append(types + 1)
    return torch.cat(out).to(num_atoms.device) if out else torch.empty(0, dtype=torch.long, device=num_atoms.device)


def _cpu(generator: torch.Generator | None) -> torch.Generator | None:
    """The sampler's generator when it lives on the CPU (composition sampling runs there), else None."""
    return generator if generator is not None and generator.device.type == "cpu" else None
