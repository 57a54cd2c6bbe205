"""Sampling conditions: what a user may fix for each generated crystal, parsed and checked before any model runs.

Three kinds, the vocabulary of ``GenerativeModel.conditions``:

- ``composition``: the atoms of the whole cell, a pymatgen Composition with whole amounts ("SrTiO3" is a cell of
  5 atoms, "Sr2Ti2O6" one of 10), as crystal structure prediction gives it;
- ``spacegroup``: an international space-group number 1..230;
- ``num_atoms``: the number of atoms in the cell.

A model receives them in its :class:`~crystalgen.state.SampleRequest` as one value per crystal of the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pymatgen.core import Composition

#: Every condition kind a model may declare in ``GenerativeModel.conditions``.
CONDITION_KINDS = ("composition", "spacegroup", "num_atoms")
NUM_SPACE_GROUPS = 230


class ConditionError(ValueError):
    """A condition value that no model could use (an unknown element, a space group outside 1..230, ...)."""


def parse_composition(value: Any, where: str = "composition") -> Composition:
    """A formula (``"SrTiO3"``) or Composition as a Composition of real elements with whole positive amounts."""
    from pymatgen.core import Composition, Element

    if isinstance(value, Composition):
        composition = value
    elif isinstance(value, str) and value.strip():
        try:
            composition = Composition(value.strip())
        except (ValueError, KeyError) as exc:
            raise ConditionError(f"{where}: {value!r} is not a chemical formula ({exc})") from None
    else:
        raise ConditionError(f"{where}: expected a chemical formula such as 'SrTiO3', got {value!r}")
    for element, amount in composition.items():
        if not isinstance(element, Element):
            raise ConditionError(f"{where}: {value!r} names {getattr(element, 'symbol', element)}, which is not an element of "
                                  "the periodic table")
        if amount <= 0 or abs(amount - round(amount)) > 1e-8:
            raise ConditionError(f"{where}: {value!r} gives {element} {amount:g} atoms; a cell's composition needs whole "
                                 f"numbers of atoms (write e.g. 'Sr2Ti2O6' for a cell of 10 atoms)")
    if not composition:
        raise ConditionError(f"{where}: {value!r} has no atoms")
    return Composition({element: round(amount) for element, amount in composition.items()})


def parse_spacegroup(value: Any, where: str = "spacegroup") -> int:
    """An international space-group number 1..230."""
    if isinstance(value, bool) or not isinstance(value, int) and not (isinstance(value, str) and value.strip().isdigit()):
        raise ConditionError(f"{where}: expected a space-group number 1..{NUM_SPACE_GROUPS}, got {value!r}")
    number = int(value)
    if not 1 <= number <= NUM_SPACE_GROUPS:
        raise ConditionError(f"{where}: space-group numbers run from 1 to {NUM_SPACE_GROUPS}, got {number}")
    return number


def parse_num_atoms(value: Any, where: str = "num_atoms") -> int:
    """A positive whole number of atoms per cell."""
    if isinstance(value, bool) or not isinstance(value, int) and not (isinstance(value, str) and value.strip().isdigit()):
        raise ConditionError(f"{where}: expected a whole number of atoms, got {value!r}")
    if int(value) < 1:
        raise ConditionError(f"{where}: a cell needs at least one atom, got {value}")
    return int(value)


PARSERS = {"composition": parse_composition, "spacegroup": parse_spacegroup, "num_atoms": parse_num_atoms}


def per_crystal(kind: str, value: Any, count: int, where: str | None = None) -> list[Any] | None:
    """``value`` (one for all crystals, or a sequence of exactly ``count``) as ``count`` parsed values, or None."""
    if value is None:
        return None
    where = where or kind
    parse = PARSERS[kind]
    if isinstance(value, Sequence) and not isinstance(value, str):
        values = list(value)
        if len(values) == 1:
            values = values * count
        if len(values) != count:
            raise ConditionError(f"{where}: give one value for all {count} crystals or exactly {count} (one per "
                                 f"crystal), got {len(values)}")
        return [parse(v, f"{where}[{i}]") for i, v in enumerate(values)]
    return [parse(value, where)] * count


def describe_value(kind: str, value: Any) -> str:
    """One condition value as a person reads it (a composition as its formula without spaces: ``Sr1Ti1O3``)."""
    if kind == "composition":
        return str(value.formula).replace(" ", "")
    return str(value)
