"""read_samples: every SAMPLES form, with bad entries counted rather than raised."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from ase import Atoms
from ase.io import write as ase_write
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

from crystalgen.metrics import read_samples


def nacl() -> Structure:
    return Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])


def cif_text(structure: Structure) -> str:
    return str(CifWriter(structure))


def test_sample_directory_keeps_failed_decodes_in_order(tmp_path):
    (tmp_path / "cif").mkdir()
    (tmp_path / "cif" / "000000.cif").write_text(cif_text(nacl()))
    (tmp_path / "cif" / "000002.cif").write_text("")
    rows = [
        {"index": 0, "ok": True, "reason": None, "cif": "cif/000000.cif", "spacegroup": 225},
        {"index": 1, "ok": False, "reason": "Wyckoff projection failed", "cif": None},
        {"index": 2, "ok": True, "reason": None, "cif": "cif/000002.cif"},
        {"index": 3, "ok": True, "reason": None, "cif": "cif/missing.cif"},
    ]
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + "not json\n")
    structures, failures, ids = read_samples(tmp_path, workers=1, progress=False)
    assert ids == ["0", "1", "2", "3", "line5"]
    assert structures[0].composition.reduced_formula == "NaCl" and failures[0] is None
    assert structures[1] is None and failures[1] == "decode_failed: Wyckoff projection failed"
    assert failures[2].startswith("empty_file:")
    assert failures[3].startswith("unreadable:") and "missing.cif" in failures[3]
    assert failures[4].startswith("unreadable:") and "line 5" in failures[4]


def test_cif_folder_with_bad_files(tmp_path):
    (tmp_path / "a.cif").write_text(cif_text(nacl()))
    (tmp_path / "b.cif").write_text("")
    (tmp_path / "c.cif").write_text("this is not a CIF")
    (tmp_path / "d.cif").write_text(cif_text(nacl()).replace("Cl", "Xx"))
    (tmp_path / "e.cif").write_text(cif_text(nacl()).replace("_cell_length_a   5.64000000", "_cell_length_a   nan"))
    structures, failures, ids = read_samples(tmp_path, workers=1, progress=False)
    assert ids == ["a", "b", "c", "d", "e"]
    assert failures[0] is None
    assert failures[1].startswith("empty_file:")
    assert failures[2].startswith("unreadable:")
    assert failures[3].startswith("unknown_element:")
    assert failures[4] == "non_finite: cell a is nan" and structures[4] is None  # refused at read time


def test_coinciding_atoms_are_read_as_written_and_judged_overlapping(tmp_path):
    """A generated P1 crystal with two atoms on one spot: pymatgen's parser merges or refuses such sites; the
    crystal must come back with all its atoms so that validity calls it overlapping, not unreadable."""
    from crystalgen.metrics import evaluate

    crowded = Structure(Lattice.orthorhombic(4.5, 4.5, 4.4), ["Si", "Rb", "O", "F", "Zn"],
                        [[0.5, 0, 0], [0.5, 0, 0], [0.5, 0.5, 0.5], [0, 0.5, 0.5], [0, 0.5, 0.5]])
    (tmp_path / "crowded.cif").write_text(cif_text(crowded))
    (tmp_path / "fine.cif").write_text(cif_text(nacl()))
    structures, failures, _ = read_samples(tmp_path, workers=1, progress=False)
    assert failures == [None, None] and len(structures[0]) == 5
    assert sorted(structures[0].atomic_numbers) == sorted(crowded.atomic_numbers)
    out = evaluate(structures, [], metrics=["validity"], failures=failures, workers=1, progress=False)
    assert out["n_invalid_overlapping_atoms"] == 1 and out["struct_valid"] == 0.5


def test_multi_block_cif_file(tmp_path):
    path = tmp_path / "two.cif"
    path.write_text(cif_text(nacl()) + cif_text(Structure(Lattice.cubic(3.0), ["Fe"], [[0, 0, 0]])))
    structures, failures, ids = read_samples(path, workers=1, progress=False)
    assert [s.composition.reduced_formula for s in structures] == ["NaCl", "Fe"]
    assert ids == ["two:0", "two:1"]


def test_extxyz_frames_with_a_nan_lattice(tmp_path):
    path = tmp_path / "gen.extxyz"
    good = Atoms("NaCl", scaled_positions=[[0, 0, 0], [0.5, 0.5, 0.5]], cell=np.eye(3) * 5.64, pbc=True)
    nan = Atoms("NaCl", positions=[[0, 0, 0], [1, 1, 1]], cell=np.eye(3) * 5.64, pbc=True)
    ase_write(path, [good, nan], format="extxyz")
    text = path.read_text().splitlines()
    text[len(good) + 3] = text[len(good) + 3].replace("5.64", "nan", 1)  # second frame's comment line
    path.write_text("\n".join(text) + "\n3\ntruncated frame\nNa 0 0 0\n")
    structures, failures, ids = read_samples(path, workers=1, progress=False)
    assert len(structures) == 3
    assert structures[0].composition.reduced_formula == "NaCl"
    assert failures[1] == "non_finite: the lattice contains NaN or infinity" and structures[1] is None  # at read time
    assert structures[2] is None and "truncated" in failures[2]


def test_csv_with_cif_column(tmp_path):
    path = tmp_path / "gen.csv"
    pd.DataFrame({"material_id": ["m1", "m2"], "cif": [cif_text(nacl()), ""]}).to_csv(path, index=False)
    structures, failures, ids = read_samples(path, workers=1, progress=False)
    assert ids == ["m1", "m2"] and failures[0] is None and failures[1].startswith("empty_file:")
    pd.DataFrame({"structure": ["x"]}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(ValueError, match="no 'cif' column"):
        read_samples(tmp_path / "bad.csv")


def test_unknown_forms_are_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_samples(tmp_path / "nope")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="unsupported"):
        read_samples(tmp_path / "x.json")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no samples.jsonl"):
        read_samples(tmp_path / "empty")
