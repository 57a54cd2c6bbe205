"""Site-symmetry encoding: a 15 x 13 one-hot, one symmetry class per symmetry direction (paper section 4.2).

The classes are pyxtal 1.1.5's (``site_symmetry.to_one_hot``), in its order. A row holds the highest
symmetry along that direction: the set of rotations, mirrors (normal along the direction) and rotoinversions
about it, plus the inversion, which pyxtal marks on every row.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from crystalgen_symmcd.symmetry.axes import NUM_AXES, axis_row
from crystalgen_symmcd.symmetry.operations import point_operation

#: The 13 per-direction classes (pyxtal 1.1.5 order; pyxtal 0.6.7, used by the official code, orders them
#: 1, -1, 2, m, 3, 2/m, 4, -4, -3, 6, -6, 4/m, 6/m: a permutation that a model cannot notice).
SITE_CLASSES: tuple[str, ...] = ("1", "-1", "2", "m", "3", "4", "-4", "2/m", "-3", "6", "-6", "4/m", "6/m")
NUM_SITE_CLASSES = len(SITE_CLASSES)


def axis_class(elements: set[str], inversion: bool) -> str:
    """The class of one direction given the point elements along it ('2','3','4','6','m','-3','-4','-6')."""
    mirror = "m" in elements
    if "6" in elements:
        return "6/m" if inversion or mirror else "6"
    if "4" in elements:
        return "4/m" if inversion or mirror else "4"
    if "-6" in elements:
        return "-6"
    if "-4" in elements:
        return "-4"
    if "3" in elements or "-3" in elements:
        return "-3" if inversion else "3"
    if "2" in elements:
        return "2/m" if mirror else "2"
    if mirror:
        return "m"
    return "-1" if inversion else "1"


def site_symmetry_classes(rotations: Iterable[np.ndarray]) -> np.ndarray:
    """(15,) class indices of the point group given by its rotation matrices W (lattice basis)."""
    elements: list[set[str]] = [set() for _ in range(NUM_AXES)]
    inversion = False
    for W in rotations:
        op = point_operation(W)
        if op.symbol == "-1":
            inversion = True
        elif op.axis is not None:
            elements[axis_row(op.axis)].add(op.symbol)
    return np.array([SITE_CLASSES.index(axis_class(e, inversion)) for e in elements], dtype=np.int64)


def one_hot(classes: np.ndarray) -> np.ndarray:
    """(..., 15) class indices -> (..., 15, 13) one-hot."""
    return np.eye(NUM_SITE_CLASSES, dtype=np.int64)[classes]
