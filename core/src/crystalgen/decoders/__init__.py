"""Decoders: final state -> pymatgen Structures (see base.py)."""

from crystalgen.decoders.base import Decoder
from crystalgen.decoders.cell import decode_cells

__all__ = ["Decoder", "decode_cells"]
