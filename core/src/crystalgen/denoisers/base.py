"""Denoisers: noisy state + time (+ condition) -> one prediction per variable."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor, nn

from crystalgen.state import Condition


class Denoiser(nn.Module, ABC):
    """Outputs each variable in the parameterisation its noise process declares (eps, score, x0 or logits)."""

    @abstractmethod
    def forward(self, state: dict[str, Tensor], t: Tensor, condition: Condition) -> dict[str, Tensor]:
        ...
