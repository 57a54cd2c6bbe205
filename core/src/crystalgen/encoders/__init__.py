"""Encoders (analytic transforms and learned encoders); see base.py."""

from crystalgen.encoders.base import Encoder, SkipCrystal, StructureTransform
from crystalgen.encoders.full_cell import FullCellTransform

__all__ = ["Encoder", "FullCellTransform", "SkipCrystal", "StructureTransform"]
