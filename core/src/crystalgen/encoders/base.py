"""Encoders: crystal -> the representation a model works on.

Two faces of the same component kind, both registered under ``crystalgen_encoders``:

* :class:`StructureTransform`, analytic and applied once at preprocessing time (SymmCD's asymmetric unit,
  StructRepDiff's descriptor inputs, plain full-cell tensors): a model's ``model.transform``. Its ``name`` and
  ``version`` key the on-disk cache, so bump ``version`` whenever the output changes. It must be picklable (it
  runs in worker processes).
* :class:`Encoder`, a learned ``nn.Module`` applied to batches (CDVAE's DimeNet++ encoder): ``model.encoder``.

Each declares in ``spec`` what it reads and provides (``Data`` fields, or named outputs of a learned encoder), so
that a model's assembly can check it against what the model and its other parts need.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

from pymatgen.core import Structure
from torch import nn
from torch_geometric.data import Batch, Data

from crystalgen.specs import EncoderSpec


class SkipCrystal(ValueError):
    """This crystal cannot be used by the model (too many atoms, disordered, ...): skipped with the reason."""


class StructureTransform(ABC):
    """Structure -> torch_geometric Data, deterministic and cacheable. ``spec.provides``: the Data fields written."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    spec: ClassVar[EncoderSpec]

    @classmethod
    def declare(cls, args: Mapping[str, Any]) -> EncoderSpec:
        """The spec of this transform built with constructor arguments ``args`` (override when options change it)."""
        return cls.spec

    def cache_key(self) -> dict[str, Any]:
        """Everything that changes the output; hashed into the cache key."""
        return {"name": self.name, "version": self.version, **self.options()}

    def options(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    @abstractmethod
    def __call__(self, structure: Structure) -> Data:
        """Transform one ordered structure; raise SkipCrystal for crystals the model cannot take."""


class Encoder(nn.Module, ABC):
    """A learned encoder: batch -> per-crystal representation. ``spec.reads``: Data fields of the batch it uses;
    ``spec.provides``: the named outputs its ``forward`` returns (e.g. ``gaussian_posterior``)."""

    spec: ClassVar[EncoderSpec]

    @classmethod
    def declare(cls, args: Mapping[str, Any]) -> EncoderSpec:
        """The spec of this encoder built with constructor arguments ``args`` (override when options change it)."""
        return cls.spec

    @abstractmethod
    def forward(self, batch: Batch) -> Any:
        ...
