"""Crystal tables: a CSV with one CIF text per row (the CDVAE benchmark layout, or a user's file).

Columns: ``cif`` (required), ``material_id`` (optional; default ``<file stem>-<row>``), and property columns
(numbers). A CDVAE file's unnamed first column (the pandas index) is ignored. Each row is parsed on its own: a
malformed CIF, a disordered or partially occupied structure, or a NaN / non-numeric property skips that row
with the reason and keeps the rest. Parsing is the slow part (about 2 ms per CIF with pymatgen), so a full read
is cached on disk (keyed by the file's bytes and the parse version) and parsed in worker processes.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crystalgen.data import cache
from crystalgen.data.io import CrystalReadError, structure_from_cif
from crystalgen.data.parallel import ordered_map
from crystalgen.data.physical import cut
from crystalgen.data.record_store import from_item, skipped_from_item, skipped_to_item, to_item
from crystalgen.data.records import CrystalRecord, DataError, LoadedSplit, Skipped, one_line
from crystalgen.data.user_files import check_file, open_checked

CIF_COLUMN = "cif"
ID_COLUMN = "material_id"
#: Bump when the parsing rules change (invalidates the parse cache).
PARSE_VERSION = "2"
#: Columns of the CDVAE files that are text, never properties.
TEXT_COLUMNS = frozenset({"", CIF_COLUMN, ID_COLUMN, "formula", "pretty_formula", "elements"})


def _allow_large_fields() -> None:
    # A CIF of a big cell exceeds the csv module's default 128 KiB field limit.
    csv.field_size_limit(max(csv.field_size_limit(), min(sys.maxsize, 2**31 - 1)))


def header(path: Path) -> list[str]:
    return _columns_and_first_row(path)[0]


def count_rows(path: Path) -> int:
    """Data rows of a CSV (quoted multi-line CIF fields count once), without parsing any CIF."""
    _allow_large_fields()
    with open_checked(path, newline="") as fh:
        return max(0, sum(1 for _ in csv.reader(fh)) - 1)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open_checked(path, text=False) as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def numeric_columns(columns: Sequence[str], first_row: dict[str, str]) -> tuple[str, ...]:
    """Property columns of a user table: every non-text column whose first value reads as a number."""
    found = []
    for col in columns:
        if col in TEXT_COLUMNS or col.startswith("Unnamed"):
            continue
        try:
            float(first_row.get(col) or "x")
        except ValueError:
            continue
        found.append(col)
    return tuple(found)


def _parse_property(name: str, raw: str | None) -> float:
    """The value of one property cell; ValueError with a '<kind>: detail' reason otherwise (long values cut)."""
    if raw is None or not raw.strip():
        raise ValueError(f"NaN property: {name} is empty")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"bad property value: {name}={cut(raw)!r} is not a number") from None
    if math.isnan(value):
        raise ValueError(f"NaN property: {name} is {cut(raw)}")
    if math.isinf(value):
        written = "infinite" if raw.strip().lower().lstrip("+-") in ("inf", "infinity") else "beyond the float range"
        raise ValueError(f"infinite property: {name}={cut(raw)} is {written}")
    return value


def parse_row(label: str, row: int, ident: str, cif_text: str, raw_properties: dict[str, str]) -> dict[str, Any]:
    """One table row -> a record item (:mod:`crystalgen.data.record_store`) or a skipped item (with ``reason``)."""
    where = f"{label} row {row} (id {ident})"
    try:
        structure = structure_from_cif(cif_text, source=where)
        if len(structure) == 0:
            raise ValueError("empty structure: the CIF lists no atom sites")
        properties = {name: _parse_property(name, raw) for name, raw in raw_properties.items()}
    except CrystalReadError as exc:
        return skipped_to_item(Skipped(label, row, ident, one_line(exc.reason)))
    except ValueError as exc:
        return skipped_to_item(Skipped(label, row, ident, one_line(str(exc))))
    return to_item(CrystalRecord(ident, structure, properties, label, row))


def _parse_chunk(tasks: Sequence[tuple[str, int, str, str, dict[str, str]]]) -> list[dict[str, Any]]:
    return [parse_row(*task) for task in tasks]


def _is_skipped(item: dict[str, Any]) -> bool:
    return "reason" in item


def load_csv(
    path: Path,
    *,
    name: str,
    split: str,
    label: str | None = None,
    property_columns: Sequence[str] | None = None,
    strict: bool = False,
    max_rows: int | None = None,
    workers: int | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> LoadedSplit:
    """Read the crystals of one CSV file.

    Args:
        path: the CSV file.
        name, split: dataset and split names (for messages and the cache file name).
        label: how rows are named in messages (default: the path).
        property_columns: columns to read as properties (those absent from the file are ignored); None: every
            column whose first value is a number (see :func:`numeric_columns`).
        strict: raise :class:`DataError` naming the first bad row instead of skipping it.
        max_rows: read only the first rows (not cached).
        workers: parsing processes (None: min(cores, 8); 0 or 1: in this process).
        cache_dir: cache folder (default :func:`crystalgen.data.cache.cache_root`).
    """
    path = check_file(path)
    label = label or str(path)
    columns, first_row = _columns_and_first_row(path)
    if not columns:
        raise ValueError(f"{label}: the file is empty; a crystal table needs a header row with a '{CIF_COLUMN}' column "
                         "and one row per crystal")
    if CIF_COLUMN not in columns:
        raise ValueError(f"{label}: no '{CIF_COLUMN}' column (columns: {cut(', '.join(columns), 200)}); "
                         f"a crystal table needs one CIF text per row in a column named '{CIF_COLUMN}'")
    if not first_row:
        raise ValueError(f"{label}: the file has a header but no rows; a crystal table needs one row per crystal")
    props = tuple(c for c in property_columns if c in columns) if property_columns is not None else numeric_columns(columns, first_row)

    key = cache.digest("parsed", PARSE_VERSION, file_sha256(path), label, props)
    cache_file = Path(cache_dir or cache.cache_root()) / "parsed" / f"{cache.safe_name(name)}-{split}-{key[:16]}.pt"
    hit = cache.read_items(cache_file, key) if max_rows is None else None
    if hit is not None:
        items, meta = hit
        skipped = [skipped_from_item(it) for it in meta["skipped"]]
    else:
        tasks = [
            (label, i, (row.get(ID_COLUMN) or "").strip() or f"{path.stem}-{i}", row.get(CIF_COLUMN) or "", {c: row.get(c) for c in props})
            for i, row in enumerate(_rows(path, max_rows))
        ]
        parsed = ordered_map(_parse_chunk, tasks, workers=workers, desc=f"reading {label}", progress=progress)
        items = [it for it in parsed if not _is_skipped(it)]
        skipped = [skipped_from_item(it) for it in parsed if _is_skipped(it)]
        if max_rows is None:
            cache.write_items(cache_file, key, items, {"skipped": [skipped_to_item(s) for s in skipped]})
    if strict and skipped:
        raise DataError(skipped[0])
    records = [from_item(it) for it in items]
    return LoadedSplit(name, split, records, skipped, f"{label}, properties: {', '.join(props) or 'none'}")


def _columns_and_first_row(path: Path) -> tuple[list[str], dict[str, str]]:
    _allow_large_fields()
    with open_checked(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), next(reader, {})


def _rows(path: Path, max_rows: int | None) -> list[dict[str, str]]:
    _allow_large_fields()
    with open_checked(path, newline="") as fh:
        return list(itertools.islice(csv.DictReader(fh), max_rows))
