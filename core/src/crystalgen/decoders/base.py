"""Decoders: final sampling state -> pymatgen Structures (or a per-crystal failure reason)."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor

from crystalgen.models.base import Decoded
from crystalgen.state import Condition


class Decoder(ABC):
    """Turns the state at t = 0 into crystals; must never raise on a bad sample, only report it."""

    @abstractmethod
    def __call__(self, state: dict[str, Tensor], condition: Condition) -> list[Decoded]:
        ...
