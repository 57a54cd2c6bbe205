"""What a dataset split is after loading: the crystals that were read, and the ones that were not (and why).

Rows count from 0 after the CSV header (as pandas numbers them); for an extxyz file the row is the frame index;
for a folder of CIF files it is None (the file names the crystal).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pymatgen.core import Structure

#: How many (file, row, id) examples one summary line names before "... and N more".
SUMMARY_EXAMPLES = 5


@dataclass(frozen=True)
class CrystalRecord:
    """One ordered crystal of a dataset split (structure in Angstrom, fractional coordinates inside)."""

    id: str
    structure: Structure
    properties: dict[str, float]
    source: str
    row: int | None


@dataclass(frozen=True)
class Skipped:
    """A row that was left out, where it is, and why.

    ``reason`` reads ``"<kind>: <detail>"`` (e.g. ``"malformed CIF: missing field _cell_length_a"``); summaries
    group rows by kind.
    """

    source: str
    row: int | None
    id: str | None
    reason: str

    @property
    def kind(self) -> str:
        return self.reason.split(":", 1)[0].strip()

    def where(self) -> str:
        row = "" if self.row is None else f" row {self.row}"
        ident = f" (id {self.id})" if self.id is not None else ""
        return f"{self.source}{row}{ident}"

    def __str__(self) -> str:
        return f"{self.where()}: {self.reason}"


#: Longest reason kept in full; longer ones (a parser quoting a huge field) are cut, saying so.
MAX_REASON = 400


def one_line(text: str) -> str:
    """Multi-line parser messages as one summary-friendly line, cut at MAX_REASON characters."""
    line = "; ".join(part.strip() for part in text.splitlines() if part.strip())
    return line if len(line) <= MAX_REASON else f"{line[:MAX_REASON]}... ({len(line):,} characters)"


class DataError(ValueError):
    """A crystal that could not be used while ``strict`` was on; names its file, row and id."""

    def __init__(self, skipped: Skipped) -> None:
        self.skipped = skipped
        super().__init__(f"{skipped} (strict mode: fix or remove this row, or run without --strict to skip it)")


def summarize_skips(skipped: Sequence[Skipped]) -> list[str]:
    """One line per kind of reason: count, an example detail, and the first rows (file, row, id)."""
    groups: dict[str, list[Skipped]] = {}
    for s in skipped:
        groups.setdefault(s.kind, []).append(s)
    lines = []
    for kind, items in groups.items():
        detail = items[0].reason.split(":", 1)[1].strip() if ":" in items[0].reason else ""
        example = f" (e.g. {detail})" if detail else ""
        shown = "; ".join(s.where() for s in items[:SUMMARY_EXAMPLES])
        more = f"; ... and {len(items) - SUMMARY_EXAMPLES} more" if len(items) > SUMMARY_EXAMPLES else ""
        lines.append(f"  skipped {len(items)} x {kind}{example}: {shown}{more}")
    return lines


@dataclass
class LoadedSplit:
    """The readable crystals of one split of a dataset, the rows that were skipped, and notes on provenance.

    ``notes`` carry what a user must know before quoting any number computed from the split (a partial file, a
    missing property column, a ``max_rows`` cut).
    """

    name: str
    split: str
    records: list[CrystalRecord]
    skipped: list[Skipped]
    description: str
    notes: list[str] = field(default_factory=list)

    @property
    def rows_read(self) -> int:
        return len(self.records) + len(self.skipped)

    def summary(self) -> str:
        head = f"{self.name}/{self.split}: {self.rows_read} rows read, {len(self.records)} kept, {len(self.skipped)} skipped ({self.description})"
        return "\n".join([head, *(f"  note: {n}" for n in self.notes), *summarize_skips(self.skipped)])
