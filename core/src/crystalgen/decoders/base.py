"""Decoders: final sampling state -> pymatgen Structures (or a per-crystal failure reason)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from torch import Tensor

from crystalgen.models.base import Decoded
from crystalgen.specs import DecoderSpec
from crystalgen.state import Condition


class Decoder(ABC):
    """Turns the clean state into crystals; must never raise on a bad sample, only report it.

    The model hands it the clean state in the decoder's units (each decoder documents the keys of its ``spec``:
    e.g. the ``cell`` decoder reads a lattice matrix in Angstrom, not the model's standardised features) and the
    sampling condition. One :class:`~crystalgen.models.Decoded` per crystal, in order.
    """

    spec: ClassVar[DecoderSpec]

    @classmethod
    def declare(cls, args: Mapping[str, Any]) -> DecoderSpec:
        """The spec of this decoder built with constructor arguments ``args`` (override when options change it)."""
        return cls.spec

    @abstractmethod
    def __call__(self, state: Mapping[str, Tensor], condition: Condition) -> list[Decoded]:
        ...
