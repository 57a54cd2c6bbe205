"""User crystals in structure files: a folder of CIF (and extxyz) files, one CIF file, or one extxyz file.

Ids: a CIF file's stem (``<stem>:<data block>`` when the file holds several blocks); an extxyz frame's
``material_id`` (else ``<stem>-<frame>``). Properties: an extxyz frame's numeric info values (CIF files carry none).
Rows: None for a single-block CIF file, else the 0-based block or frame index.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from crystalgen.data.io import CIF_SUFFIXES, EXTXYZ_SUFFIXES, ReadResult, read_crystals
from crystalgen.data.records import CrystalRecord, DataError, LoadedSplit, Skipped, one_line
from crystalgen.data.user_files import RefusedFileError

CRYSTAL_SUFFIXES = CIF_SUFFIXES + EXTXYZ_SUFFIXES


#: Skip kinds of a file that is not read at all (crystalgen.data.user_files).
REFUSED_KINDS = {"not_regular_file": "not a regular file", "too_large": "file too large"}


def crystal_files(folder: Path) -> list[Path]:
    """The entries named ``*.cif`` / ``*.extxyz`` / ``*.xyz`` directly inside ``folder`` (sub-folders aside), sorted by
    name. FIFOs, devices and links to them are listed too, so that loading reports them instead of hiding them."""
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in CRYSTAL_SUFFIXES and not p.is_dir())


def _entries(path: Path, result: ReadResult) -> list[CrystalRecord | Skipped]:
    """Records and skipped entries of one file, in file order."""
    source = str(path)
    several = len(result.records) + len(result.errors) > 1
    entries: list[tuple[int, CrystalRecord | Skipped]] = []
    for error in result.errors:
        reason = one_line(error.reason)
        entries.append((error.index or 0, Skipped(source, error.index if several else None, path.stem, reason)))
    for rec in result.records:
        row = rec.index if several else None
        if path.suffix.lower() in CIF_SUFFIXES:
            ident = f"{path.stem}:{rec.info.get('name', rec.index)}" if several else path.stem
            properties: dict[str, float] = {}
        else:
            ident = str(rec.info.get("material_id") or f"{path.stem}-{rec.index}")
            properties = {k: float(v) for k, v in rec.info.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        bad = next((k for k, v in properties.items() if not math.isfinite(v)), None)
        if bad is not None:
            kind = "NaN property" if math.isnan(properties[bad]) else "infinite property"
            entries.append((rec.index, Skipped(source, row, ident, f"{kind}: {bad} is {properties[bad]}")))
        else:
            entries.append((rec.index, CrystalRecord(ident, rec.structure, properties, source, row)))
    return [entry for _, entry in sorted(entries, key=lambda e: e[0])]


def load_files(paths: Sequence[Path], *, name: str, split: str, description: str, strict: bool = False,
               max_rows: int | None = None) -> LoadedSplit:
    """Read every crystal of ``paths`` (CIF or extxyz, by suffix), skipping bad entries with their reasons;
    ``max_rows`` keeps the first entries in file order."""
    entries: list[CrystalRecord | Skipped] = []
    for path in paths:
        if max_rows is not None and len(entries) >= max_rows:
            break
        try:
            result = read_crystals(path)
        except RefusedFileError as exc:
            entries.append(Skipped(str(path), None, path.stem, f"{REFUSED_KINDS[exc.kind]}: {exc.cause}"))
            continue
        entries += _entries(path, result)
    entries = entries[:max_rows]
    records = [e for e in entries if isinstance(e, CrystalRecord)]
    skipped = [e for e in entries if isinstance(e, Skipped)]
    if strict and skipped:
        raise DataError(skipped[0])
    return LoadedSplit(name, split, records, skipped, description)
