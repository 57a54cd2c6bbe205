"""Encoders: crystal -> the representation a model works on.

Two faces of the same component kind:

* :class:`StructureTransform`, analytic and applied once at preprocessing time (SymmCD's asymmetric unit,
  StructRepDiff's descriptor inputs, plain full-cell tensors). Its ``name`` and ``version`` key the on-disk cache,
  so bump ``version`` whenever the output changes. It must be picklable (it runs in worker processes).
* :class:`Encoder`, a learned ``nn.Module`` applied to batches (CDVAE's DimeNet++ encoder).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

from pymatgen.core import Structure
from torch import nn
from torch_geometric.data import Batch, Data


class SkipCrystal(ValueError):
    """This crystal cannot be used by the model (too many atoms, disordered, ...): skipped with the reason."""


class StructureTransform(ABC):
    """Structure -> torch_geometric Data, deterministic and cacheable."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"

    def cache_key(self) -> dict[str, Any]:
        """Everything that changes the output; hashed into the cache key."""
        return {"name": self.name, "version": self.version, **self.options()}

    def options(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    @abstractmethod
    def __call__(self, structure: Structure) -> Data:
        """Transform one ordered structure; raise SkipCrystal for crystals the model cannot take."""


class Encoder(nn.Module, ABC):
    """A learned encoder: batch -> per-crystal representation."""

    @abstractmethod
    def forward(self, batch: Batch) -> Any:
        ...
