"""Decoders: final state -> pymatgen Structures (see base.py)."""

from crystalgen.decoders.base import Decoder
from crystalgen.decoders.cell import CellDecoder, decode_cells

__all__ = ["CellDecoder", "Decoder", "decode_cells"]
