"""Crystallographic symmetry for SymmCD: operation analysis, Wyckoff tables and the binary encodings."""

from crystalgen_symmcd.symmetry.axes import NUM_AXES, SYMMETRY_DIRECTIONS
from crystalgen_symmcd.symmetry.site_symmetry import NUM_SITE_CLASSES, SITE_CLASSES, site_symmetry_classes
from crystalgen_symmcd.symmetry.space_group import ENCODING_DIM, all_space_group_encodings, space_group_encoding
from crystalgen_symmcd.symmetry.tables import SpaceGroupTable, WyckoffPosition, space_group_table

__all__ = [
    "ENCODING_DIM", "NUM_AXES", "NUM_SITE_CLASSES", "SITE_CLASSES", "SYMMETRY_DIRECTIONS", "SpaceGroupTable",
    "WyckoffPosition", "all_space_group_encodings", "site_symmetry_classes", "space_group_encoding",
    "space_group_table",
]
