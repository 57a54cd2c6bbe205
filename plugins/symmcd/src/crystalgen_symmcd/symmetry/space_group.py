"""Space-group encoding: 7-way Bravais one-hot + 15 x 26 multi-hot of symmetry elements (paper appendix C).

For each of the 15 symmetry directions we mark every symmetry element of the group along it: rotations,
screws, mirrors and glides (normal along the direction), rotoinversions; the inversion is marked on every
row and the identity always. As in pyxtal 0.6.7 (which the official code used), only the operations modulo
the lattice centring are read, so the centring itself lives in the Bravais one-hot.

pyxtal >= 1.0.9 no longer offers this 26-column matrix (``Group.get_spg_representation`` returns a lattice
id in 0..13 and a 15 x 48 one-hot of combined classes instead), so it is derived here from the group's
operations (see docs/symmcd.md for the comparison with pyxtal 0.6.7).
"""

from __future__ import annotations

import functools

import numpy as np

from crystalgen_symmcd.symmetry.axes import NUM_AXES, axis_row
from crystalgen_symmcd.symmetry.operations import element_symbol
from crystalgen_symmcd.symmetry.tables import space_group_operations

#: Column order of the official encoding (pyxtal 0.6.7 ``site_symmetry`` with ``parse_trans=True``).
#: The paper's appendix C also lists the double glide 'e'; it never appears once the centring is factored out.
SPACE_GROUP_SYMBOLS: tuple[str, ...] = (
    "1", "-1", "2", "2_1", "m", "a", "b", "c", "n", "d",
    "3", "3_1", "3_2", "4", "-4", "4_1", "4_2", "4_3",
    "-3", "6", "6_1", "6_2", "6_3", "6_4", "6_5", "-6",
)
#: Bravais one-hot order of the official code (first letter of the HM symbol).
BRAVAIS = ("P", "I", "F", "A", "B", "C", "R")
ENCODING_DIM = len(BRAVAIS) + NUM_AXES * len(SPACE_GROUP_SYMBOLS)  # 397


def symmetry_element_matrix(number: int) -> np.ndarray:
    """(15, 26) multi-hot of the symmetry elements of space group ``number`` along each direction."""
    table = space_group_operations(number)
    matrix = np.zeros((NUM_AXES, len(SPACE_GROUP_SYMBOLS)), dtype=np.int64)
    matrix[:, 0] = 1
    for W, w in zip(*table.coset_representatives()):
        op = element_symbol(W, w, table.bravais)
        if op.symbol == "-1":
            matrix[:, 1] = 1
        elif op.axis is not None:
            matrix[axis_row(op.axis), SPACE_GROUP_SYMBOLS.index(op.symbol)] = 1
    return matrix


@functools.cache
def space_group_encoding(number: int) -> np.ndarray:
    """(397,) binary vector: Bravais one-hot (7) followed by the flattened 15 x 26 element matrix."""
    table = space_group_operations(number)
    bravais = np.zeros(len(BRAVAIS), dtype=np.int64)
    bravais[BRAVAIS.index(table.bravais)] = 1
    vec = np.concatenate([bravais, symmetry_element_matrix(number).reshape(-1)])
    vec.setflags(write=False)
    return vec


def all_space_group_encodings() -> np.ndarray:
    """(231, 397) table indexed by space-group number (row 0 is zeros)."""
    out = np.zeros((231, ENCODING_DIM), dtype=np.int64)
    for n in range(1, 231):
        out[n] = space_group_encoding(n)
    return out
