"""Denoisers: noisy state + time (+ condition) -> one prediction per variable."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor, nn

from crystalgen.specs import DenoiserSpec
from crystalgen.state import Condition


class Denoiser(nn.Module, ABC):
    """Outputs each variable in the parameterisation its noise process declares (eps, score, x0 or logits).

    ``spec`` says which variables it reads and predicts (and in which parameterisations), and which keys of
    ``Condition.data`` it needs; the model's assembly checks it against the processes before anything runs.
    A model calls it the same way in training (with a Condition holding only ``data``) and in sampling.
    """

    spec: ClassVar[DenoiserSpec]

    @classmethod
    def declare(cls, args: Mapping[str, Any]) -> DenoiserSpec:
        """The spec of this denoiser built with constructor arguments ``args`` (override when options change it)."""
        return cls.spec

    @abstractmethod
    def forward(self, state: dict[str, Tensor], t: Tensor, condition: Condition) -> dict[str, Tensor]:
        """Predictions keyed by variable; ``t`` (B,) holds one level per crystal."""
