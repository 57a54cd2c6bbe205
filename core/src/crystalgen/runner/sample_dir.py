"""The sample directory: what ``crystalgen sample`` writes and ``crystalgen evaluate`` reads.

    samples.jsonl       one JSON object per requested crystal, in order:
                          index (int), ok (bool), reason (str | null: why it failed),
                          cif (path relative to the folder | null), formula (str | null),
                          cif_omitted (str, only when a decoded crystal has no CIF: why),
                          num_atoms (int | null), volume (A^3 | null), density (g/cm^3 | null),
                          plus the model's Decoded.info (e.g. spacegroup)
    cif/<index:06d>.cif one CIF per decoded crystal that pymatgen's reader gives back with all its sites
    samples.extxyz      all decoded crystals (ASE extended XYZ, `index` in each frame's info), the only copy of
                        those whose CIF would not read back (atoms on one spot: pymatgen merges them or refuses the
                        file, "Occupancy 2.0 exceeded tolerance")
    sampling.json       model, checkpoint, sampler config, seed, timings, counts (by failure reason)
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pymatgen.core import Structure

from crystalgen.models.base import Decoded
from crystalgen.runner.line_files import complete_text

JSONL = "samples.jsonl"
EXTXYZ = "samples.extxyz"
SUMMARY = "sampling.json"
CIF_DIR = "cif"


def failure_kind(reason: str) -> str:
    """The reason without its numbers in parentheses, for counting (``degenerate cell (volume 1e-5 A^3)``
    -> ``degenerate cell``)."""
    return re.split(r" \(|: ", reason, maxsplit=1)[0].strip()


def jsonable(value: Any) -> Any:
    """Tensors, numpy values and tuples as plain JSON values (non-finite floats become null)."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        value = value.item() if value.numel() == 1 else value.tolist()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def readable_cif(structure: Structure) -> tuple[str | None, str | None]:
    """(CIF text, None) when ``Structure.from_str`` gives the crystal back with all its sites; else (None, why), so
    that no CIF file crystalgen writes fails in another tool."""
    from pymatgen.io.cif import CifWriter

    text = str(CifWriter(structure))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            back = Structure.from_str(text, fmt="cif")
    except Exception as exc:  # noqa: BLE001 - pymatgen raises many types; each means "not readable"
        return None, f"pymatgen cannot read its CIF back ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})"
    if len(back) != len(structure):
        return None, f"pymatgen reads its CIF back with {len(back)} of its {len(structure)} sites (atoms on one spot)"
    return text, None


def write_sample_dir(out: str | Path, decoded: Sequence[Decoded], meta: Mapping[str, Any],
                     extra_rows: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Write the sample directory ``out`` and return the counts that went into sampling.json.

    ``extra_rows`` (one mapping per crystal) adds fields to samples.jsonl, e.g. the input id of a reconstruction.
    """
    from ase.io import write as ase_write
    from pymatgen.io.ase import AseAtomsAdaptor

    out = Path(out)
    (out / CIF_DIR).mkdir(parents=True, exist_ok=True)
    frames = []
    failures: Counter[str] = Counter()
    with (out / JSONL).open("w") as jsonl:
        for index, item in enumerate(decoded):
            row: dict[str, Any] = {"index": index, "ok": item.ok, "reason": item.reason, "cif": None,
                                   "formula": None, "num_atoms": None, "volume": None, "density": None}
            if item.ok:
                s = item.structure
                assert s is not None  # an ok item holds its crystal
                text, omitted = readable_cif(s)
                if text is not None:
                    row["cif"] = f"{CIF_DIR}/{index:06d}.cif"
                    (out / row["cif"]).write_text(text)
                else:
                    row["cif_omitted"] = omitted
                row.update(formula=s.composition.formula.replace(" ", ""), num_atoms=len(s),
                           volume=float(s.volume), density=float(s.density))
                atoms = AseAtomsAdaptor.get_atoms(s)
                atoms.info = {"index": index, "formula": row["formula"]}
                frames.append(atoms)
            else:
                failures[failure_kind(item.reason or "unknown")] += 1
            for extra in (item.info, (extra_rows[index] if extra_rows else {})):
                for key, value in extra.items():
                    row.setdefault(key, jsonable(value))
            jsonl.write(json.dumps(row) + "\n")
    if frames:
        ase_write(out / EXTXYZ, frames, format="extxyz")
    else:
        (out / EXTXYZ).write_text("")
    counts = {"requested": len(decoded), "ok": len(decoded) - sum(failures.values()), "failed": sum(failures.values()),
              "failed_by_reason": dict(failures.most_common())}
    (out / SUMMARY).write_text(json.dumps(jsonable({**meta, "counts": counts}), indent=2) + "\n")
    return counts


def read_rows(folder: str | Path) -> list[dict[str, Any]]:
    """The rows of ``samples.jsonl`` (for reports; the metrics read the structures themselves); a torn last line
    (an interrupted write) is left out."""
    path = Path(folder) / JSONL
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {folder} is not a crystalgen sample directory")
    rows = []
    for lineno, line in enumerate(complete_text(path).splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}, line {lineno}: not valid JSON ({exc})") from None
    return rows
