"""User data given as a path: a folder of CIFs, a CSV, an extxyz file, a folder of split CSVs; name lookup errors."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure

from crystalgen.data.io import structure_to_cif, write_extxyz
from crystalgen.data.registry import FileDataset, TableDataset, get_dataset
from crystalgen.registry import UnknownComponentError


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CRYSTALGEN_CACHE", str(tmp_path / "cache"))


def crystal(a: float, species=("Cs", "Cl")) -> Structure:
    return Structure(Lattice.cubic(a), list(species), [[0, 0, 0], [0.5, 0.5, 0.5]])


def test_folder_of_cifs(tmp_path):
    folder = tmp_path / "cifs"
    folder.mkdir()
    (folder / "b.cif").write_text(structure_to_cif(crystal(4.0)))
    (folder / "a.cif").write_text(structure_to_cif(crystal(4.2, ("Na", "Cl"))))
    half = crystal(4.1)
    half.replace(0, {"Cs": 0.5})
    (folder / "c_half.cif").write_text(structure_to_cif(half))
    (folder / "d_broken.cif").write_text("data_x\n_cell_length_a 4\n")
    (folder / "notes.txt").write_text("not a crystal")

    spec = get_dataset(folder)
    assert isinstance(spec, FileDataset) and spec.splits == ("train",)
    loaded = spec.load("train")
    assert [r.id for r in loaded.records] == ["a", "b"]  # sorted by file name, text file ignored
    assert loaded.records[0].structure.composition.reduced_formula == "NaCl"
    assert np.isclose(loaded.records[1].structure.lattice.a, 4.0)
    assert {(s.id, s.kind) for s in loaded.skipped} == {("c_half", "disordered structure"), ("d_broken", "malformed CIF")}
    assert all(s.row is None and s.source.endswith(".cif") for s in loaded.skipped)
    assert [r.id for r in spec.load("train", max_rows=1).records] == ["a"]


def test_csv_with_cif_column_and_property_columns(tmp_path):
    path = tmp_path / "mine.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["cif", "energy", "formula", "band_gap"])
        w.writerow([structure_to_cif(crystal(4.0)), "-1.5", "CsCl", "2"])
        w.writerow([structure_to_cif(crystal(4.3)), "-1.0", "CsCl", "3"])
    spec = get_dataset(str(path))
    assert isinstance(spec, TableDataset) and spec.splits == ("train",) and spec.row_count("train") == 2
    loaded = spec.load("train", progress=False)
    assert [r.id for r in loaded.records] == ["mine-0", "mine-1"]
    assert loaded.records[1].properties == {"energy": -1.0, "band_gap": 3.0}  # text column "formula" is not a property


def test_extxyz_with_ids_and_properties(tmp_path):
    path = tmp_path / "frames.extxyz"
    write_extxyz(path, [crystal(4.0), crystal(4.4, ("K", "Br")), crystal(4.1)],
                 [{"material_id": "x1", "energy": -2.0}, {"energy": -1.0}, {"material_id": "x3", "energy": float("nan")}])
    loaded = get_dataset(path).load("train")
    assert [(r.id, r.row) for r in loaded.records] == [("x1", 0), ("frames-1", 1)]
    assert loaded.records[0].properties == {"energy": -2.0}
    assert np.allclose(loaded.records[1].structure.lattice.matrix, np.eye(3) * 4.4)
    assert [(s.id, s.row, s.kind) for s in loaded.skipped] == [("x3", 2, "NaN property")]


def test_folder_with_split_tables(tmp_path):
    for split, a in (("train", 4.0), ("test", 4.5)):
        with open(tmp_path / f"{split}.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["material_id", "cif"])
            w.writerow([f"{split}-0", structure_to_cif(crystal(a))])
    spec = get_dataset(tmp_path)
    assert spec.splits == ("train", "test")
    assert spec.load("test", progress=False).records[0].id == "test-0"
    with pytest.raises(ValueError, match="splits are: train, test"):
        spec.load("val")


def test_unknown_names_and_missing_paths(tmp_path):
    with pytest.raises(UnknownComponentError, match=r"Unknown dataset 'mp20'.*Did you mean 'mp_20'.*give a path"):
        get_dataset("mp20")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        get_dataset(str(tmp_path / "nothing.csv"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no train/val/test CSV"):
        get_dataset(empty)
