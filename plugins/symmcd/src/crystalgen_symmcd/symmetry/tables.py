"""Per-space-group Wyckoff tables in the form SymmCD needs, built once per process from pyxtal's tables.

For each of the 230 groups (pyxtal's default ITA setting, which is also the setting of the structures that
``pyxtal.from_seed`` returns) we keep the general-position operations and, for every Wyckoff position, the
affine map of each orbit member, ``x_k = A_k p + b_k`` with the free parameters p = (x, y, z), and the
*oriented* site-symmetry classes of each member (the stabiliser of a generic point of that member; members
of one orbit have conjugate stabilisers that may point along different directions).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np

from crystalgen_symmcd.symmetry.operations import CENTRING
from crystalgen_symmcd.symmetry.site_symmetry import site_symmetry_classes

#: A point in no special position of any space group (checked for all 230 in the tests).
GENERIC_PARAMETERS = np.array([0.1379, 0.2711, 0.4123])
_TOL = 1e-6


@dataclass(frozen=True)
class WyckoffPosition:
    """One Wyckoff position of a space group.

    Attributes:
        index: pyxtal's index (0 = general position).
        letter: Wyckoff letter.
        multiplicity: atoms per conventional cell.
        A: (m, 3, 3) linear part of each orbit member as a function of the free parameters.
        b: (m, 3) fractional offset of each orbit member.
        site_symmetry: (m, 15) oriented site-symmetry class indices of each member.
        dof: free parameters (rank of A).
    """

    index: int
    letter: str
    multiplicity: int
    A: np.ndarray
    b: np.ndarray
    site_symmetry: np.ndarray
    dof: int

    @property
    def label(self) -> str:
        return f"{self.multiplicity}{self.letter}"

    def orbit(self, params: np.ndarray) -> np.ndarray:
        """(m, 3) fractional coordinates in [0, 1) of the orbit with free parameters ``params``."""
        return np.mod(np.einsum("kij,j->ki", self.A, params) + self.b, 1.0)


@dataclass(frozen=True)
class SpaceGroupTable:
    """Symmetry data of one space group (conventional cell, pyxtal's setting)."""

    number: int
    symbol: str
    lattice_type: str
    rotations: np.ndarray  # (|G|, 3, 3) int, general position incl. centring copies
    translations: np.ndarray  # (|G|, 3)
    wyckoff: tuple[WyckoffPosition, ...]

    @property
    def bravais(self) -> str:
        return self.symbol[0]

    @property
    def hexagonal(self) -> bool:
        return 143 <= self.number <= 194

    def coset_representatives(self) -> tuple[np.ndarray, np.ndarray]:
        """Operations modulo the centring translations: the first operation listed for each rotation W."""
        keep, seen = [], set()
        for i, W in enumerate(self.rotations):
            key = W.tobytes()
            if key not in seen:
                seen.add(key)
                keep.append(i)
        return self.rotations[keep], self.translations[keep]

    def stabiliser(self, point: np.ndarray, tol: float = _TOL) -> np.ndarray:
        """Rotation parts of the operations g with g(point) = point modulo lattice translations."""
        images = np.einsum("gij,j->gi", self.rotations, point) + self.translations
        d = images - point
        fixed = np.all(np.abs(d - np.rint(d)) < tol, axis=1)
        return self.rotations[fixed]


@functools.cache
def space_group_operations(number: int) -> SpaceGroupTable:
    """The general-position operations of space group ``number`` only (``wyckoff`` left empty; fast)."""
    from pyxtal.symmetry import Group, get_wyckoffs

    if not 1 <= number <= 230:
        raise ValueError(f"space group number must be in 1..230, got {number}")
    group = Group(int(number), quick=True)
    general = get_wyckoffs(int(number))[0]
    rotations = np.stack([np.rint(op.rotation_matrix).astype(np.int64) for op in general])
    translations = np.stack([op.translation_vector for op in general]).astype(float)
    return SpaceGroupTable(int(number), group.symbol, group.lattice_type, rotations, translations, ())


@functools.cache
def space_group_table(number: int) -> SpaceGroupTable:
    """Operations and Wyckoff positions of space group ``number`` (1..230), cached per process."""
    from pyxtal.constants import letters
    from pyxtal.symmetry import get_wyckoffs

    base = space_group_operations(number)
    wyckoffs = get_wyckoffs(int(number))
    positions = tuple(
        _wyckoff_position(base, index, letters[len(wyckoffs) - 1 - index], ops) for index, ops in enumerate(wyckoffs)
    )
    return dataclasses.replace(base, wyckoff=positions)


def _wyckoff_position(group: SpaceGroupTable, index: int, letter: str, ops) -> WyckoffPosition:
    A = np.stack([op.rotation_matrix for op in ops]).astype(float)
    b = np.stack([op.translation_vector for op in ops]).astype(float)
    members = np.einsum("kij,j->ki", A, GENERIC_PARAMETERS) + b
    classes = []
    for x in members:
        stab = group.stabiliser(x)
        if len(group.rotations) != len(stab) * len(ops):
            raise RuntimeError(
                f"space group {group.number} Wyckoff {len(ops)}{letter}: |G|/|stabiliser| = "
                f"{len(group.rotations)}/{len(stab)} differs from the multiplicity {len(ops)}"
            )
        classes.append(site_symmetry_classes(stab))
    return WyckoffPosition(
        index=index, letter=letter, multiplicity=len(ops), A=A, b=b,
        site_symmetry=np.stack(classes), dof=int(np.linalg.matrix_rank(A[0])),
    )


def centring_vectors(bravais: str) -> np.ndarray:
    return np.array(CENTRING[bravais], dtype=float)


@functools.cache
def hall_number(number: int) -> int:
    """spglib's Hall number of the setting pyxtal's tables use for space group ``number`` (e.g. origin choice 2
    for Fd-3m): the one Hall setting whose operations equal our general position."""
    import spglib

    ops = space_group_operations(number)
    ours = _operation_keys(ops.rotations, ops.translations)
    for hall in _halls_of(number):
        db = spglib.get_symmetry_from_database(hall)
        if db is not None and _operation_keys(db["rotations"], db["translations"]) == ours:
            return hall
    raise RuntimeError(f"no spglib Hall setting of space group {number} matches pyxtal's operations")


def _operation_keys(rotations: np.ndarray, translations: np.ndarray) -> set:
    return {(tuple(np.rint(W).astype(int).reshape(-1)), tuple(np.round(np.mod(w, 1.0), 4) % 1.0)) for W, w in zip(rotations, translations)}


@functools.lru_cache(maxsize=1)
def _hall_table() -> dict[int, list[int]]:
    import spglib

    table: dict[int, list[int]] = {}
    for hall in range(1, 531):
        sg = spglib.get_spacegroup_type(hall)
        assert sg is not None  # every Hall number 1..530 is in spglib's table
        table.setdefault(sg.number, []).append(hall)
    return table


def _halls_of(number: int) -> list[int]:
    return _hall_table()[number]
