"""Crystal records as plain tensors and back, and a checksum of a list of records.

Loading a split from the parse cache and parsing it afresh both build their records through :func:`from_item`,
so the two paths give identical structures (float64 lattice rows in Angstrom, float64 fractional coordinates,
species as elements).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from pymatgen.core import Lattice, Structure

from crystalgen.data.records import CrystalRecord, Skipped


def structure_arrays(structure: Structure) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lattice (3, 3) rows = vectors in Angstrom, atomic numbers (N,), fractional coordinates (N, 3))."""
    lattice = np.array(structure.lattice.matrix, dtype=np.float64)  # copies: pymatgen's arrays are read-only
    numbers = np.array([site.specie.Z for site in structure], dtype=np.int64)
    frac = np.array(structure.frac_coords, dtype=np.float64).reshape(-1, 3)
    return lattice, numbers, frac


def to_item(record: CrystalRecord) -> dict[str, Any]:
    lattice, numbers, frac = structure_arrays(record.structure)
    return {
        "id": record.id,
        "source": record.source,
        "row": -1 if record.row is None else record.row,
        "lattice": torch.from_numpy(lattice).unsqueeze(0),
        "atom_types": torch.from_numpy(numbers),
        "frac_coords": torch.from_numpy(frac),
        "properties": {k: float(v) for k, v in record.properties.items()},
    }


def from_item(item: dict[str, Any]) -> CrystalRecord:
    structure = Structure(
        Lattice(item["lattice"].reshape(3, 3).numpy()), item["atom_types"].tolist(), item["frac_coords"].numpy(), coords_are_cartesian=False
    )
    row = int(item["row"])
    return CrystalRecord(str(item["id"]), structure, dict(item["properties"]), str(item["source"]), None if row < 0 else row)


def skipped_to_item(s: Skipped) -> dict[str, Any]:
    return {"source": s.source, "row": s.row, "id": s.id, "reason": s.reason}


def skipped_from_item(item: dict[str, Any]) -> Skipped:
    return Skipped(item["source"], item["row"], item["id"], item["reason"])


def records_checksum(records: Iterable[CrystalRecord]) -> str:
    """SHA-256 over ids, rows, properties, lattices, species and coordinates (not the file names: moving a dataset
    to another folder keeps its preprocessing cache)."""
    h = hashlib.sha256()
    for r in records:
        lattice, numbers, frac = structure_arrays(r.structure)
        h.update(r.id.encode() + b"\0" + struct.pack("<q", -1 if r.row is None else r.row))
        for name in sorted(r.properties):
            h.update(name.encode() + b"\0" + struct.pack("<d", float(r.properties[name])))
        h.update(struct.pack("<q", len(numbers)))
        h.update(lattice.tobytes() + numbers.tobytes() + frac.tobytes())
    return h.hexdigest()
