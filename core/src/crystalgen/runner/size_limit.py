"""The size limit of a model's crystals (atoms per cell): what training keeps, and what sampling may ask for.

Why: a preset without an atom limit used to train on any crystal the data held (a 320-atom cell among 20-atom ones
makes every batch it lands in costly, and the model then claims sizes it saw once). Training keeps the crystals
up to ``data.max_atoms`` (a stated cap, on by default in runner.yaml; a preset or the user may change it, null
removes it), leaves the larger ones out as ``too many atoms`` rows with their count, and records in the run
configuration (``data.size_limit``, saved with every checkpoint) the largest crystal it kept: the size the model
was trained for. A sampling request above that size is refused before any model is built.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig

from crystalgen.data.records import LoadedSplit, Skipped

if TYPE_CHECKING:
    from crystalgen.runner.conditions import ConditionSpec

log = logging.getLogger("crystalgen.data")

#: Kind of the reason of a crystal left out by ``data.max_atoms`` (docs/data.md).
TOO_MANY_ATOMS = "too many atoms"


@dataclass
class SplitSizes:
    """What the cap did to one split: crystals left out above it, and the atoms of the largest crystal kept."""

    excluded: int = 0
    largest: int = 0


class SizeLimitError(ValueError):
    """A sampling request for crystals larger than the model was trained on."""


def cap_atoms(loaded: LoadedSplit, max_atoms: int | None) -> int:
    """Move the records of ``loaded`` with more than ``max_atoms`` atoms to its skipped rows; returns how many."""
    if max_atoms is None:
        return 0
    kept, over = [], []
    for record in loaded.records:
        n = len(record.structure)
        if n > max_atoms:
            over.append(Skipped(record.source, record.row, record.id,
                                f"{TOO_MANY_ATOMS}: {n} atoms in the cell, above data.max_atoms={max_atoms}"))
        else:
            kept.append(record)
    loaded.records = kept
    loaded.skipped.extend(over)
    return len(over)


def largest_crystal(loaded: LoadedSplit, indices: Sequence[int]) -> int:
    """Atoms of the largest of ``loaded``'s records at ``indices`` (0 for none)."""
    return max((len(loaded.records[i].structure) for i in indices), default=0)


def record_limit(cfg: DictConfig, largest: int, excluded: dict[str, int]) -> dict[str, Any]:
    """Write ``data.size_limit`` into the run configuration: the largest training crystal kept (``max_atoms``), the
    stated cap and the crystals each split lost to it; log one line saying so."""
    cap = cfg.data.get("max_atoms")
    limit = {"max_atoms": largest, "cap": cap, "excluded": dict(excluded)}
    cfg.data.size_limit = limit
    left_out = ", ".join(f"{n} {split}" for split, n in excluded.items() if n) or "none"
    log.info("size limit: crystals of up to %d atoms (the largest training crystal kept; data.max_atoms=%s); left out "
             "above the cap: %s", largest, cap, left_out)
    return limit


def trained_max_atoms(cfg: DictConfig) -> int | None:
    """The largest crystal (atoms) the configuration's model was trained on, or None (trained before the limit)."""
    limit = cfg.get("data", {}).get("size_limit") or {}
    value = limit.get("max_atoms")
    return int(value) if value else None


def check_condition_sizes(cfg: DictConfig, conditions: ConditionSpec | None, source: str) -> None:
    """Refuse a composition or atom count (as the user gave them: ``--composition``, ``--num-atoms`` or
    ``sample.condition``) with more atoms than the model of ``cfg`` (from checkpoint ``source``) was trained on,
    before anything is built. Crystals taken from a split (``from``) are packed by the memory budget instead."""
    limit = trained_max_atoms(cfg)
    if limit is None or conditions is None:
        return
    from pymatgen.core import Composition

    def listed(value: Any) -> list[Any]:
        return [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]

    advice = (f"above the {limit} atoms of the largest crystal the model of {source} was trained on "
              f"(data.size_limit); ask for at most {limit} atoms, or train with a larger data.max_atoms")
    for formula in listed(conditions.composition):  # as written, or already parsed into a Composition
        try:
            composition = formula if isinstance(formula, Composition) else Composition(str(formula))
        except (ValueError, KeyError) as exc:
            raise SizeLimitError(f"--composition {formula!r}: not a chemical formula ({exc})") from None
        if composition.num_atoms > limit:
            shown = formula if isinstance(formula, str) else composition.formula.replace(" ", "")
            raise SizeLimitError(f"--composition {shown}: {composition.num_atoms:g} atoms per cell, {advice}")
    for count in listed(conditions.num_atoms):
        if int(count) > limit:
            raise SizeLimitError(f"--num-atoms {count}: {advice}")
