"""Checks that a crystal read from a file can exist, made at read time so that an impossible one becomes a skipped
row with a reason instead of a crystal that is scored or trained on.

Why: pymatgen builds a lattice from any six numbers. A negative cell length flips an axis, an angle of 1e8 degrees
wraps around, three angles with no valid metric (alpha = beta = 170, gamma = 90) give another cell, and an element
symbol it does not know (``Uue``) is read as the longest known prefix (``U``). Each case is caught here from the
values as written and named with its kind (see ``KINDS``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pymatgen.core import Element, Structure

#: Reason kinds this module raises, as they appear in skipped rows ("<kind>: <detail>").
UNKNOWN_ELEMENT = "unknown element"
IMPOSSIBLE_CELL = "impossible cell"
NON_FINITE = "non-finite structure"

_SYMBOL = re.compile(r"([A-Za-z]+)(?:\d*[+-]?|[+-]\d*)?")
_ELEMENTS = frozenset(e.symbol for e in Element)


class PhysicalProblem(ValueError):
    """A crystal that cannot exist as written: ``kind`` (one of this module's kinds) and a one-line detail."""

    def __init__(self, kind: str, detail: str) -> None:
        self.kind, self.detail = kind, detail
        super().__init__(f"{kind}: {detail}")


def cut(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters, saying how long it was (a 100,000-digit number stays readable)."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _number(raw: Any) -> float:
    """A CIF number without its standard uncertainty (``5.43(2)``); NaN when it is not a number."""
    text = str(raw).strip()
    text = text.split("(", 1)[0]
    try:
        return float(text)
    except ValueError:
        return math.nan


def check_symbols(symbols: Sequence[str]) -> None:
    """Every ``_atom_site_type_symbol`` must name an element (an oxidation state may follow: ``Fe2+``, ``O2-``)."""
    for i, raw in enumerate(symbols):
        match = _SYMBOL.fullmatch(str(raw).strip())
        if not match or match.group(1).capitalize() not in _ELEMENTS:
            raise PhysicalProblem(UNKNOWN_ELEMENT, f"site {i} has type symbol {cut(str(raw), 20)!r}, which is not a "
                                                   "chemical element (unknown symbols are not mapped to elements)")


def check_cell_parameters(block: Mapping[str, Any]) -> None:
    """The six cell parameters as written: finite, lengths > 0, angles in (0, 180) and a positive definite metric."""
    lengths = {axis: block.get(f"_cell_length_{axis}") for axis in "abc"}
    angles = {name: block.get(f"_cell_angle_{name}") for name in ("alpha", "beta", "gamma")}
    for name, raw in {**lengths, **angles}.items():
        if raw is None:
            continue  # a missing field is the parser's "malformed CIF"
        value = _number(raw)
        if not math.isfinite(value):
            raise PhysicalProblem(NON_FINITE if str(raw).strip().lower().lstrip("+-") in ("nan", "inf", "infinity")
                                  else IMPOSSIBLE_CELL, f"cell {name} is {cut(str(raw))}")
        if name in lengths and value <= 0:
            raise PhysicalProblem(IMPOSSIBLE_CELL, f"cell length {name} = {cut(str(raw))} is not positive")
        if name in angles and not 0 < value < 180:
            raise PhysicalProblem(IMPOSSIBLE_CELL, f"cell angle {name} = {cut(str(raw))} degrees is outside (0, 180)")
    if all(v is not None for v in angles.values()):
        cosines = [math.cos(math.radians(_number(v))) for v in angles.values()]
        ca, cb, cg = cosines
        if 1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg <= 1e-12:
            shown = ", ".join(f"{k} = {cut(str(v), 20)}" for k, v in angles.items())
            raise PhysicalProblem(IMPOSSIBLE_CELL, f"cell angles {shown} do not form a cell (no valid metric: each "
                                                   "angle must be below the sum of the other two, and their sum below 360)")


def check_structure(structure: Structure) -> None:
    """Finite lattice and coordinates, and a cell with volume (what any reader, CIF or extxyz, must deliver)."""
    lattice = np.asarray(structure.lattice.matrix, dtype=float)
    if not np.isfinite(lattice).all():
        raise PhysicalProblem(NON_FINITE, "the lattice contains NaN or infinity")
    frac = np.asarray(structure.frac_coords, dtype=float).reshape(-1, 3)
    bad = np.flatnonzero(~np.isfinite(frac).all(axis=1))
    if bad.size:
        raise PhysicalProblem(NON_FINITE, f"site {int(bad[0])} has coordinates {frac[bad[0]].tolist()}")
    with np.errstate(over="ignore", invalid="ignore"):
        gram, volume = lattice @ lattice.T, abs(np.linalg.det(lattice))
    if not (np.isfinite(gram).all() and np.isfinite(volume)):
        raise PhysicalProblem(NON_FINITE, f"cell lengths {np.linalg.norm(lattice, axis=1).tolist()} A overflow "
                                          "floating point (distances cannot be computed)")
    if not volume > 0:
        raise PhysicalProblem(IMPOSSIBLE_CELL, "the cell has zero volume")
