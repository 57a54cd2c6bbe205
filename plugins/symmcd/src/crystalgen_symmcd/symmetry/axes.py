"""The 15 symmetry directions of SymmCD's site- and space-group encodings (paper section 4.2, appendix C).

Rows are in pyxtal's order (``pyxtal.constants.all_sym_directions``) for the 13 cubic/tetragonal/orthorhombic
directions. The last two rows hold the hexagonal tertiary directions, which the paper (appendix C) names
[210] and [120]; pyxtal labels those rows (2,-1,0) and (1,-2,0) and fills them through a Cartesian
conversion of the rotation axis. We index everything in the conventional *lattice* basis instead, where
a hexagonal group's seven symmetry directions are [001], [100], [010], [110], [1-10], [120] and [210]
(International Tables A, Table 2.1.3.1); see docs/symmcd.md for what that changes.
"""

from __future__ import annotations

NUM_AXES = 15

#: Row -> direction [uvw] in the lattice basis (for hexagonal groups rows 13, 14 are [120], [210]).
SYMMETRY_DIRECTIONS: tuple[tuple[int, int, int], ...] = (
    (1, 0, 0), (0, 1, 0), (0, 0, 1),
    (1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1),
    (1, -1, 0), (1, 1, 0), (0, 1, -1), (0, 1, 1), (-1, 0, 1), (1, 0, 1),
    (1, 2, 0), (2, 1, 0),
)


def _normalised(d: tuple[int, int, int]) -> tuple[int, int, int]:
    first = next(i for i in d if i != 0)
    return tuple(-i if first < 0 else i for i in d)  # type: ignore[return-value]


_ROW = {_normalised(d): i for i, d in enumerate(SYMMETRY_DIRECTIONS)}


def axis_row(axis: tuple[int, int, int]) -> int:
    """Row of the encoding holding a symmetry element along ``axis`` (either sign)."""
    try:
        return _ROW[_normalised(axis)]
    except KeyError:
        raise ValueError(f"[{' '.join(map(str, axis))}] is not one of the 15 crystallographic symmetry directions") from None
