"""Every CIF crystalgen writes reads back with pymatgen's Structure.from_file, invalid crystals included; a crystal
whose CIF would not (atoms on one spot) is kept in samples.extxyz and still evaluated as what it is."""

from __future__ import annotations

import json

from pymatgen.core import Lattice, Structure

from crystalgen.metrics import evaluate
from crystalgen.metrics.samples import read_samples
from crystalgen.models.base import Decoded
from crystalgen.runner.sample_dir import write_sample_dir

CUBE = Lattice.cubic(5.0)
DECODED = [
    Decoded(Structure(CUBE, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])),  # valid
    Decoded(Structure(CUBE, ["Na", "Na", "Cl"], [[0, 0, 0], [0, 0, 0], [0.5, 0.5, 0.5]])),  # same species, one spot
    Decoded(Structure(CUBE, ["Na", "Cl"], [[0.2, 0.2, 0.2], [0.2, 0.2, 0.2]])),  # two species, one spot
    Decoded(Structure(CUBE, ["Na", "Cl"], [[0, 0, 0], [0.002, 0, 0]])),  # 0.01 A apart
    Decoded(Structure(Lattice.cubic(0.3), ["Na"], [[0, 0, 0]])),  # tiny cell
    Decoded(None, "degenerate cell (volume 1e-9 A^3)"),
]


def test_every_written_cif_reads_back_and_unreadable_ones_are_kept_in_extxyz(tmp_path):
    counts = write_sample_dir(tmp_path, DECODED, {"model": "test"})
    assert counts["ok"] == 5
    rows = [json.loads(line) for line in (tmp_path / "samples.jsonl").read_text().splitlines()]
    written = sorted((tmp_path / "cif").glob("*.cif"))
    assert [p.name for p in written] == ["000000.cif", "000003.cif", "000004.cif"]
    for path in written:
        row = rows[int(path.stem)]
        assert len(Structure.from_file(path)) == row["num_atoms"]
    assert [bool(r.get("cif_omitted")) for r in rows] == [False, True, True, False, False, False]
    assert "sites" in rows[1]["cif_omitted"] or "cannot read" in rows[1]["cif_omitted"]

    structures, failures, _ = read_samples(tmp_path, workers=0, progress=False)
    assert [len(s) if s is not None else None for s in structures] == [2, 3, 2, 2, 1, None]
    result = evaluate(structures, [], metrics=["validity"], failures=failures, workers=1, progress=False)
    assert result["n_invalid_overlapping_atoms"] == 3 and result["n_invalid_small_volume"] == 1
    assert result["n_invalid_decode_failed"] == 1
